"""Lesson 01 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import torch
import torch.nn.functional as F

from companion import autoencoders as ae
from companion.exercises import lesson01 as check
from companion.exercises.testing import verify_checker


def test_autoencoder_loss_checker():
    def reference(encoder, decoder, x):
        x_hat = decoder(encoder(x))
        return x_hat, ((x_hat - x) ** 2).mean()

    def summed_per_image(encoder, decoder, x):
        x_hat = decoder(encoder(x))
        return x_hat, ((x_hat - x) ** 2).flatten(1).sum(1).mean()

    def l1(encoder, decoder, x):
        x_hat = decoder(encoder(x))
        return x_hat, (x_hat - x).abs().mean()

    def rmse(encoder, decoder, x):
        x_hat = decoder(encoder(x))
        return x_hat, ((x_hat - x) ** 2).mean().sqrt()

    def detached(encoder, decoder, x):
        x_hat = decoder(encoder(x))
        return x_hat, ((x_hat - x) ** 2).mean().detach()

    verify_checker(check.autoencoder_loss, reference, wrong={
        "mean over the pixels too": summed_per_image, "absolute error": l1,
        "no square root": rmse, "no .detach()": detached})


def test_gaussian_corruption_checker():
    def reference(x, sigma, generator):
        return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    def no_clip(x, sigma, generator):
        return x + sigma * torch.randn(x.shape, generator=generator)

    def variance(x, sigma, generator):
        return (x + sigma**2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    def in_place(x, sigma, generator):
        return x.add_(sigma * torch.randn(x.shape, generator=generator)).clamp_(0, 1)

    def noise_only(x, sigma, generator):
        return (sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    verify_checker(check.gaussian_corruption, reference, wrong={
        "clip": no_clip, "not sigma^2": variance, "return the corrupted image": noise_only})
    # The checker calls the function on copies, so an in-place version is still correct.
    assert check.gaussian_corruption(in_place, quiet=True).passed


def test_masking_corruption_checker():
    def reference(x, p, generator):
        return x * (torch.rand(x.shape, generator=generator) >= p)

    def keep_probability(x, p, generator):
        return x * (torch.rand(x.shape, generator=generator) < p)

    def mask_only(x, p, generator):
        return (torch.rand(x.shape, generator=generator) >= p).float()

    def dropout(x, p, generator):
        return x * (torch.rand(x.shape, generator=generator) >= p) / (1 - p)

    def other_draw(x, p, generator):
        return x * (torch.rand(x.shape[0], 1, 28, 28, generator=generator).flip(0) >= p)

    verify_checker(check.masking_corruption, reference, wrong={
        "dropping": keep_probability, "multiply x by the mask": mask_only,
        "dropout": dropout, "one torch.rand": other_draw})


def test_perceptual_loss_checker():
    def reference(phi, y_hat, y):
        return ((phi(y_hat) - phi(y).detach()) ** 2).mean()

    def pixels(phi, y_hat, y):
        return F.mse_loss(y_hat, y)

    def summed(phi, y_hat, y):
        return ((phi(y_hat) - phi(y)) ** 2).sum()

    def no_grad(phi, y_hat, y):
        with torch.no_grad():
            return ((phi(y_hat) - phi(y)) ** 2).mean()

    def norm(phi, y_hat, y):
        return ((phi(y_hat) - phi(y)) ** 2).mean().sqrt()

    verify_checker(check.perceptual_loss, reference, wrong={
        "not the pixels": pixels, "mean, not the sum": summed, "do not detach": no_grad,
        "no square root": norm})


def test_sr_forward_checker():
    def reference(net, low, residual):
        u = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
        return u + net(u) if residual else torch.sigmoid(net(u))

    def never_residual(net, low, residual):
        return torch.sigmoid(net(ae.upsample(low)))

    def always_residual(net, low, residual):
        u = ae.upsample(low)
        return u + net(u)

    def nearest(net, low, residual):
        u = F.interpolate(low, scale_factor=2, mode="nearest")
        return u + net(u) if residual else torch.sigmoid(net(u))

    def no_sigmoid(net, low, residual):
        u = ae.upsample(low)
        return u + net(u) if residual else net(u)

    verify_checker(check.sr_forward, reference, wrong={
        "adds the upsampled input": never_residual, "no u added": always_residual,
        "nearest": nearest, "sigmoid": no_sigmoid})


def test_linear_probe_step_checker():
    def reference(encoder, head, optimizer, x, y):
        with torch.no_grad():
            features = encoder(x)
        loss = F.cross_entropy(head(features), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    def unfrozen(encoder, head, optimizer, x, y):
        loss = F.cross_entropy(head(encoder(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    def no_zero_grad(encoder, head, optimizer, x, y):
        with torch.no_grad():
            features = encoder(x)
        loss = F.cross_entropy(head(features), y)
        loss.backward()
        optimizer.step()
        return loss

    def no_step(encoder, head, optimizer, x, y):
        with torch.no_grad():
            features = encoder(x)
        loss = F.cross_entropy(head(features), y)
        optimizer.zero_grad()
        loss.backward()
        return loss

    def nll_on_logits(encoder, head, optimizer, x, y):
        with torch.no_grad():
            features = encoder(x)
        loss = F.nll_loss(head(features), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    verify_checker(check.linear_probe_step, reference, wrong={
        "torch.no_grad": unfrozen, "zero_grad": no_zero_grad, "optimizer.step()": no_step,
        "includes the softmax": nll_on_logits})
