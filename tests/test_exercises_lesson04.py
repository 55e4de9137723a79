"""Lesson 04 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import torch
import torch.nn.functional as F

from companion import gan
from companion.exercises import lesson04 as check
from companion.exercises.testing import verify_checker


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def test_discriminator_loss_checker():
    verify_checker(check.discriminator_loss, gan.discriminator_loss, wrong={
        "never log(sigmoid(l))": lambda r, f: (-torch.log(torch.sigmoid(r)).mean()
                                               - torch.log(1 - torch.sigmoid(f)).mean()),
        "targets are swapped": lambda r, f: _bce(r, 0.0) + _bce(f, 1.0),
        "flip the sign": lambda r, f: -gan.discriminator_loss(r, f),
        "add the fake term": lambda r, f: _bce(r, 1.0),
        "do not sum": lambda r, f: F.softplus(-r).sum() + F.softplus(f).sum(),
        "torch operations": lambda r, f: torch.tensor(gan.discriminator_loss(r, f).item()),
    })


def test_non_saturating_loss_checker():
    verify_checker(check.non_saturating_loss, gan.non_saturating_generator_loss, wrong={
        "minimax (saturating) loss": gan.minimax_generator_loss,
        "sign is flipped": lambda f: -F.softplus(-f).mean(),
        "do not sum": lambda f: F.softplus(-f).sum(),
        "use target 1": lambda f: F.softplus(f).mean(),
        "never log(sigmoid(l))": lambda f: -torch.log(torch.sigmoid(f)).mean(),
    })


def _stale_step(G, D, opt_g, opt_d, real, z):
    fake_logits = D(G(z))                       # computed before D's step, reused after it
    opt_d.zero_grad()
    d_loss = gan.discriminator_loss(D(real), D(G(z).detach()))
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = gan.non_saturating_generator_loss(fake_logits)
    g_loss.backward()
    opt_g.step()
    return d_loss, g_loss


def test_gan_step_checker():
    ref = check.reference_step
    verify_checker(check.gan_step, ref, wrong={
        "update the discriminator first": lambda *a: ref(*a, order="gd"),
        "not log(1 - d(g(z)))": lambda *a: ref(*a, loss="minimax"),
        "zero each optimiser's gradients": lambda *a: ref(*a, zero=False),
        "recompute d(g(z)) after opt_d.step()": _stale_step,
        "return the two losses as a tuple": lambda *a: ref(*a)[0],
    })


def test_gan_step_checker_names_a_stale_discriminator_without_an_error():
    # A stale opponent computed from a copy of D (no in-place error) is recognised by its result.
    verify_checker(check.gan_step, check.reference_step, wrong={
        "recompute d(g(z)) after the discriminator step":
            lambda *a: check.reference_step(*a, stale=True),
        "update the discriminator first":
            lambda *a: check.reference_step(*a, order="gd"),
        "non-saturating": lambda *a: check.reference_step(*a, loss="minimax"),
    })


def _slerp_no_fallback(z0, z1, t):
    omega = torch.acos(F.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1))[..., None]
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def test_slerp_checker():
    def unnormalised(z0, z1, t):
        w = torch.acos((z0 * z1).sum(-1).clamp(-1, 1))[..., None]
        return (torch.sin((1 - t) * w) * z0 + torch.sin(t * w) * z1) / torch.sin(w)

    def swapped(z0, z1, t):
        return _slerp_no_fallback(z0, z1, 1 - t)

    verify_checker(check.slerp, gan.slerp, wrong={
        "straight line (lerp)": lambda z0, z1, t: (1 - t) * z0 + t * z1,
        "normalise the dot product": unnormalised,
        "they are swapped": swapped,
        "divide by sin(w)": lambda z0, z1, t: _slerp_no_fallback(z0, z1, t) * torch.sin(
            torch.acos(F.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1)))[..., None],
        "fall back to the straight line": _slerp_no_fallback,
    })


def test_smoothed_discriminator_loss_checker():
    verify_checker(check.smoothed_discriminator_loss,
                   lambda r, f, s=0.9: gan.discriminator_loss(r, f, real_target=s), wrong={
        "one-sided": lambda r, f, s=0.9: _bce(r, s) + _bce(f, 1 - s),
        "not 1 - smooth": lambda r, f, s=0.9: _bce(r, 1 - s) + _bce(f, 0.0),
        "fake targets stay at 0": lambda r, f, s=0.9: _bce(r, 1.0) + _bce(f, 1 - s),
        "add the fake term": lambda r, f, s=0.9: _bce(r, s),
        "never log(sigmoid(l))": lambda r, f, s=0.9: (
            -(s * torch.log(torch.sigmoid(r)) + (1 - s) * torch.log(1 - torch.sigmoid(r))).mean()
            - torch.log(1 - torch.sigmoid(f)).mean()),
    })
