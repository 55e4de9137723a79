"""Checkers for lesson 01 (autoencoders)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from companion import autoencoders as ae
from companion.exercises import checker


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(seed: int, n: int = 8, size: int = 28) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=_gen(seed))


def _tiny_autoencoder(seed: int, code: int = 5):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, code))
    decoder = nn.Sequential(nn.Linear(code, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    return encoder, decoder


@checker("autoencoder_loss")
def autoencoder_loss(t, fn):
    for seed in (0, 1):
        encoder, decoder = _tiny_autoencoder(seed)
        x = _images(seed)
        out = t.call(fn, encoder, decoder, x)
        if not t.expect(isinstance(out, tuple) and len(out) == 2,
                        "returns a pair (x_hat, loss)", "return x_hat, loss"):
            return
        x_hat, loss = out
        ref_hat, ref_loss = ae.autoencoder_loss(encoder, decoder, x)
        if not t.tensor(x_hat, "x_hat is a tensor shaped like x", shape=x.shape):
            return
        t.close(x_hat, ref_hat, f"x_hat = decoder(encoder(x)) (seed {seed})",
                "pass x through the encoder, then the decoder")
        if not t.tensor(loss, "loss is a scalar tensor", shape=()):
            return
        err = (ref_hat - x).detach()
        t.close(loss, ref_loss, f"loss is the per-pixel mean squared error (seed {seed})",
                "mean over the batch and the pixels of (x_hat - x)^2",
                diagnose={
                    "take the mean over the pixels too, not the sum per image":
                        err.pow(2).flatten(1).sum(1).mean(),
                    "the mean over every pixel, not the sum": err.pow(2).sum(),
                    "square the error: this is the absolute error (L1)": err.abs().mean(),
                    "no square root: the loss is the mean squared error, not its root":
                        err.pow(2).mean().sqrt(),
                    "compare the reconstruction with the input x, not with the code or zeros":
                        ref_hat.detach().pow(2).mean(),
                })
        t.expect(loss.requires_grad, "the loss is differentiable (gradients reach the weights)",
                 "build the loss from torch operations on x_hat (no .item(), no .detach())")


@checker("gaussian_corruption")
def gaussian_corruption(t, fn):
    x = _images(2, n=16)
    for sigma in (0.1, 0.5):
        got = t.call(fn, x, sigma, _gen(7))
        if not t.tensor(got, f"returns a tensor shaped like x (sigma={sigma})", shape=x.shape,
                        dtype_float=True):
            return
        eps = torch.randn(x.shape, generator=_gen(7))
        t.close(got, ae.gaussian_corruption(x, sigma, _gen(7)),
                f"clip(x + sigma * eps, 0, 1) with eps = torch.randn(x.shape, generator=g) "
                f"(sigma={sigma})",
                "draw eps with one torch.randn(x.shape, generator=generator) call",
                diagnose={
                    "clip the noisy image to [0, 1] with .clamp(0, 1)": x + sigma * eps,
                    "scale the noise by sigma, not sigma^2": (x + sigma**2 * eps).clamp(0, 1),
                    "the noise is added to x, not multiplied": (x * sigma * eps).clamp(0, 1),
                    "return the corrupted image, not the noise": (sigma * eps).clamp(0, 1),
                })
    got = t.call(fn, x, 0.0, _gen(3))
    t.close(got, x, "sigma = 0 leaves the image unchanged", "the noise must scale with sigma")


@checker("masking_corruption")
def masking_corruption(t, fn):
    x = _images(4, n=16) * 0.9 + 0.1  # no zero pixels, so a dropped pixel is visible
    for p in (0.25, 0.7):
        got = t.call(fn, x, p, _gen(9))
        if not t.tensor(got, f"returns a tensor shaped like x (p={p})", shape=x.shape,
                        dtype_float=True):
            return
        u = torch.rand(x.shape, generator=_gen(9))
        dropped = float((got == 0).float().mean())
        t.close(got, ae.masking_corruption(x, p, _gen(9)),
                f"pixels with u < p set to 0, u = torch.rand(x.shape, generator=g) (p={p})",
                "draw u with one torch.rand(x.shape, generator=generator) call and zero the "
                "pixels where u < p",
                diagnose={
                    "p is the probability of *dropping* a pixel, not of keeping it":
                        x * (u < p),
                    "keep the kept pixels' values: multiply x by the mask, do not replace them "
                    "by 1": (u >= p).float(),
                    "masked pixels become 0, not 1 - x or noise": torch.where(u < p, 1 - x, x),
                    "do not rescale the kept pixels by 1/(1 - p) (that is dropout, not masking "
                    "noise)": x * (u >= p) / (1 - p),
                })
        t.expect(abs(dropped - p) < 0.05, f"about a share p of the pixels is 0 "
                 f"(got {dropped:.3f}, p={p})", "drop each pixel with probability p")
    got = t.call(fn, x, 0.0, _gen(1))
    t.close(got, x, "p = 0 leaves the image unchanged", "compare u < p, so p = 0 drops nothing")


class _Phi(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(x))


@checker("perceptual_loss")
def perceptual_loss(t, fn):
    phi = _Phi().requires_grad_(False)
    y = _images(5, n=4)
    y_hat = (y + 0.2 * torch.randn(y.shape, generator=_gen(6))).clamp(0, 1).requires_grad_(True)
    got = t.call(fn, phi, y_hat, y, copy=False)
    if not t.tensor(got, "returns a scalar tensor", shape=()):
        return
    diff = (phi(y_hat) - phi(y)).detach()
    t.close(got, ae.perceptual_loss(phi, y_hat, y),
            "1/(C H W) ||phi(y_hat) - phi(y)||^2, averaged over the batch",
            "compare feature maps: the mean of (phi(y_hat) - phi(y))^2",
            diagnose={
                "compare the features phi(y_hat) and phi(y), not the pixels":
                    F.mse_loss(y_hat, y).detach(),
                "divide by C_j H_j W_j: take the mean, not the sum": diff.pow(2).sum(),
                "square the differences (this is the L1 distance)": diff.abs().mean(),
                "the loss is the squared norm: no square root": diff.pow(2).mean().sqrt(),
                "average over the batch too (the sum over images is N times too large)":
                    diff.pow(2).flatten(1).mean(1).sum(),
            })
    if not t.expect(got.requires_grad, "gradients flow back to y_hat",
                    "do not detach phi(y_hat): the generator learns through phi"):
        return
    (grad,) = torch.autograd.grad(got, y_hat)
    (ref_grad,) = torch.autograd.grad(ae.perceptual_loss(phi, y_hat, y), y_hat)
    t.close(grad, ref_grad, "the gradient with respect to y_hat matches",
            "only y_hat's features should carry a gradient; phi(y) is a fixed target", atol=1e-6)


def _sr_mistakes(net, low, up, residual):
    nearest = F.interpolate(low, scale_factor=2, mode="nearest")
    bicubic_after = F.interpolate(net(low), scale_factor=2, mode="bicubic", align_corners=False)
    if residual:
        return {
            "residual=True adds the upsampled input: u + net(u)": net(up),
            "residual=True adds the upsampled input: u + net(u), with no sigmoid":
                torch.sigmoid(net(up)),
            "upsample with ae.upsample (bicubic), not nearest-neighbour": nearest + net(nearest),
            "apply the network to the upsampled image u, then add u": up + bicubic_after,
        }
    return {
        "direct prediction (residual=False) is sigmoid(net(u)), with no u added": up + net(up),
        "the direct prediction ends in a sigmoid": net(up),
        "upsample with ae.upsample (bicubic), not nearest-neighbour": torch.sigmoid(net(nearest)),
    }


@checker("sr_forward")
def sr_forward(t, fn):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    low = _images(8, n=3, size=14)
    up = ae.upsample(low)
    with torch.no_grad():
        for residual in (True, False):
            got = t.call(fn, net, low, residual)
            what = "residual" if residual else "direct"
            if not t.tensor(got, f"returns a [N, 1, 28, 28] tensor ({what})", shape=(3, 1, 28, 28)):
                return
            t.close(got, ae.sr_forward(net, low, residual), f"{what} prediction matches",
                    "u = upsample(low) (bicubic); residual: u + net(u); direct: sigmoid(net(u))",
                    diagnose=_sr_mistakes(net, low, up, residual))


@checker("linear_probe_step")
def linear_probe_step(t, fn):
    torch.manual_seed(5)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 6), nn.ReLU())
    x = _images(10, n=12)
    y = torch.randint(0, 3, (12,), generator=_gen(10))

    def fresh():
        torch.manual_seed(6)
        head = nn.Linear(6, 3)
        return head, torch.optim.SGD(head.parameters(), lr=0.5)

    ref_head, ref_opt = fresh()
    ref_loss = ae.linear_probe_step(encoder, ref_head, ref_opt, x, y)
    ref_loss2 = ae.linear_probe_step(encoder, ref_head, ref_opt, x, y)
    enc_before = [p.detach().clone() for p in encoder.parameters()]
    for p in encoder.parameters():
        p.grad = None
    head, opt = fresh()
    start = head.weight.detach().clone()
    loss = t.call(fn, encoder, head, opt, x, y, copy=False)
    with torch.no_grad():
        before = fresh()[0](encoder(x))
    t.close(loss, ref_loss, "returns the cross-entropy of the head on the frozen features",
            "loss = F.cross_entropy(head(features), y)",
            diagnose={
                "use the cross-entropy F.cross_entropy(logits, y) (it includes the softmax)":
                    F.nll_loss(before, y),
                "the loss is the cross-entropy, not the squared error to one-hot labels":
                    F.mse_loss(torch.softmax(before, 1), F.one_hot(y, 3).float()),
            })
    t.expect(not torch.equal(head.weight.detach(), start),
             "the head's weights changed", "call optimizer.step() after loss.backward()")
    t.expect(all(p.grad is None for p in encoder.parameters()),
             "no gradient reaches the frozen encoder",
             "compute the features under torch.no_grad() (or detach them): the encoder is frozen")
    t.expect(all(torch.equal(a, b.detach()) for a, b in zip(enc_before, encoder.parameters(), strict=False)),
             "the encoder's weights are unchanged", "only the head may learn in a linear probe")
    # A second step must not reuse the first step's gradients.
    loss2 = t.call(fn, encoder, head, opt, x, y, copy=False)
    t.close(loss2, ref_loss2, "a second step continues from the first (loss after one update)",
            "zero the gradients (optimizer.zero_grad()) before loss.backward(): they accumulate",
            atol=1e-5)
    t.close(head.weight.detach(), ref_head.weight.detach(),
            "after two steps the head matches the reference",
            "zero the gradients (optimizer.zero_grad()) before loss.backward(): they accumulate")
