"""Checkers for lesson 04 (the GAN game, vanilla GAN, DCGAN and conditional GAN)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from companion import gan
from companion.exercises import checker

# Logits that include confident decisions (|l| = 120): log(sigmoid(l)) computed naively rounds to
# log(0) = -inf there, while the softplus form stays exact.
_EXTREME = torch.tensor([-120.0, 120.0])


def _logits(seed: int, n: int = 6, extreme: bool = False) -> torch.Tensor:
    out = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 3
    return torch.cat([out, _EXTREME]) if extreme else out


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _finite(t, got, description: str) -> bool:
    if isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
        return t.expect(False, description,
                        "the loss is not finite for confident logits (|l| = 120): compute "
                        "log D = -softplus(-l) and log(1 - D) = -softplus(l), or use "
                        "F.binary_cross_entropy_with_logits, never log(sigmoid(l))")
    return True


@checker("discriminator_loss")
def discriminator_loss(t, fn):
    for seed, extreme in ((0, False), (1, False), (2, True)):
        real, fake = _logits(seed, extreme=extreme), _logits(seed + 10, extreme=extreme)
        got = t.call(fn, real, fake)
        what = f"logits seed {seed}" + (", with confident logits" if extreme else "")
        if not _finite(t, got, what):
            return
        t.close(got, gan.discriminator_loss(real, fake), what,
                "-mean(log D(x)) - mean(log(1 - D(G(z)))), from logits",
                diagnose={
                    "real samples have target 1 and fakes target 0; the targets are swapped":
                        _bce(real, 0.0) + _bce(fake, 1.0),
                    "the discriminator minimises the *negated* value function; flip the sign":
                        -(_bce(real, 1.0) + _bce(fake, 0.0)),
                    "add the fake term, -mean(log(1 - D(G(z)))): the discriminator must also "
                    "reject fakes": _bce(real, 1.0),
                    "average over the batch (mean), do not sum":
                        F.binary_cross_entropy_with_logits(real, torch.ones_like(real),
                                                           reduction="sum")
                        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake),
                                                             reduction="sum"),
                })
    real = _logits(3).requires_grad_()
    got = t.call(fn, real, _logits(4), copy=False)
    if isinstance(got, torch.Tensor) and got.requires_grad:
        got.backward()
        ref_real = _logits(3).requires_grad_()
        gan.discriminator_loss(ref_real, _logits(4)).backward()
        t.close(real.grad, ref_real.grad, "its gradient with respect to the real logits",
                "build the loss from torch operations on the logits (no .item(), no numpy)")
    else:
        t.expect(False, "the loss is differentiable",
                 "return a tensor built from the logits with torch operations, so that "
                 "backward() reaches the discriminator")


@checker("non_saturating_loss")
def non_saturating_loss(t, fn):
    for seed, extreme in ((0, False), (1, True)):
        fake = _logits(seed, extreme=extreme)
        got = t.call(fn, fake)
        what = f"fake logits seed {seed}" + (", with confident logits" if extreme else "")
        if not _finite(t, got, what):
            return
        t.close(got, gan.non_saturating_generator_loss(fake), what,
                "-mean(log D(G(z))) = mean(softplus(-l))",
                diagnose={
                    "that is the minimax (saturating) loss mean(log(1 - D)); the non-saturating "
                    "loss is -mean(log D(G(z)))": gan.minimax_generator_loss(fake),
                    "the generator *minimises* -log D(G(z)); the sign is flipped":
                        -gan.non_saturating_generator_loss(fake),
                    "average over the batch (mean), do not sum": F.softplus(-fake).sum(),
                    "the generator wants D(G(z)) -> 1: use target 1 (log D), not 0":
                        F.softplus(fake).mean(),
                })
    # Where D confidently rejects the fakes (l = -8) the gradient must not vanish.
    fake = torch.full((4,), -8.0, requires_grad=True)
    got = t.call(fn, fake, copy=False)
    if isinstance(got, torch.Tensor) and got.requires_grad:
        got.backward()
        t.close(fake.grad, torch.full((4,), -torch.sigmoid(torch.tensor(8.0)).item() / 4),
                "a strong gradient where D rejects the fakes (l = -8)",
                "the non-saturating loss has gradient -(1 - D)/N per logit: close to -1/N here",
                atol=1e-4)
    else:
        t.expect(False, "the loss is differentiable",
                 "return a tensor built from the logits with torch operations")


def _toy_pair(seed: int = 0):
    torch.manual_seed(seed)
    G = gan.ToyGenerator(latent_dim=3, out_dim=2, hidden=8, depth=1)
    D = gan.ToyDiscriminator(in_dim=2, hidden=8, depth=1)
    return G, D


def reference_step(G, D, opt_g, opt_d, real, z, *, order="dg", stale=False, loss="ns",
                   zero=True):
    """One alternating step (and the wrong variants the checker recognises)."""
    def d_step():
        if zero:
            opt_d.zero_grad()
        d_loss = gan.discriminator_loss(D(real), D(G(z).detach()))
        d_loss.backward()
        opt_d.step()
        return d_loss

    def g_step(fake_logits=None):
        if zero:
            opt_g.zero_grad()
        logits = D(G(z)) if fake_logits is None else fake_logits
        g_loss = (gan.non_saturating_generator_loss(logits) if loss == "ns"
                  else gan.minimax_generator_loss(logits))
        g_loss.backward()
        opt_g.step()
        return g_loss

    if stale:   # the generator plays against D as it was before its step
        before = copy.deepcopy(D)
        d_loss = d_step()
        return d_loss, g_step(before(G(z)))
    if order == "gd":
        g_loss = g_step()
        return d_step(), g_loss
    d_loss = d_step()
    return d_loss, g_step()


def _run(step, seed: int = 0, rounds: int = 2, t=None, **kwargs):
    G, D = _toy_pair(seed)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed + 100)
    losses = []
    for _ in range(rounds):
        real = torch.randn(8, 2, generator=gen) + 2
        z = torch.randn(8, 3, generator=gen)
        args = (G, D, opt_g, opt_d, real, z)
        out = (step(*args, **kwargs) if t is None else
               t.call(step, *args, copy=False, hint=_STEP_HINT))
        losses.append(out)
    params = torch.cat([p.detach().flatten() for p in [*G.parameters(), *D.parameters()]])
    return params, losses


_STEP_HINT = ("if the error mentions an inplace operation, D(G(z)) was computed before the "
              "discriminator's step: recompute D(G(z)) after opt_d.step() for the generator's "
              "loss")


def _number(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


@checker("gan_step")
def gan_step(t, fn):
    got, losses = _run(fn, t=t)
    ref, ref_losses = _run(reference_step)
    ok_losses = all(isinstance(o, (tuple, list)) and len(o) == 2 for o in losses)
    if not t.expect(ok_losses, "returns (d_loss, g_loss)",
                    "return the two losses as a tuple (d_loss, g_loss)"):
        return
    t.close(torch.tensor([_number(v) for o in losses for v in o]),
            torch.tensor([_number(v) for o in ref_losses for v in o]),
            "the two losses over two rounds", "d_loss from D(real) and D(G(z).detach()); "
            "g_loss = non-saturating loss on D(G(z))")
    wrong = {
        "update the discriminator first, then the generator against the updated "
        "discriminator (Algorithm 1)": dict(order="gd"),
        "recompute D(G(z)) after the discriminator step; the generator must see the updated "
        "discriminator, not logits from before its step": dict(stale=True),
        "use the non-saturating generator loss -log D(G(z)), not log(1 - D(G(z)))":
            dict(loss="minimax"),
        "zero each optimiser's gradients before its backward pass: the generator step also "
        "leaves gradients in D, and they leak into the next discriminator step":
            dict(zero=False),
    }
    t.close(got, ref, "the parameters of G and D after two alternating steps",
            "one D step on real and detached fakes, then one G step on fresh D(G(z))",
            diagnose={hint: _run(reference_step, **kw)[0] for hint, kw in wrong.items()})


@checker("slerp")
def slerp(t, fn):
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 16, generator=gen), torch.randn(4, 16, generator=gen) * 2
    for step in (0.0, 0.3, 0.5, 1.0):
        got = t.call(fn, z0, z1, step)
        if not t.tensor(got, f"t = {step}: shape [4, 16]", shape=(4, 16), dtype_float=True):
            return
        omega = torch.acos(F.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1))[:, None]
        dot = torch.acos((z0 * z1).sum(-1).clamp(-1, 1))[:, None]
        t.close(got, gan.slerp(z0, z1, step), f"t = {step}",
                "sin((1 - t) w)/sin(w) z0 + sin(t w)/sin(w) z1 with cos w = <z0, z1>/(|z0||z1|)",
                diagnose={
                    "that is the straight line (lerp); slerp follows the great circle":
                        (1 - step) * z0 + step * z1,
                    "normalise the dot product by |z0| |z1| before taking the arccos":
                        (torch.sin((1 - step) * dot) * z0 + torch.sin(step * dot) * z1)
                        / torch.sin(dot),
                    "the weight of z0 is sin((1 - t) w) / sin(w), of z1 sin(t w) / sin(w); "
                    "they are swapped": (torch.sin(step * omega) * z0
                                         + torch.sin((1 - step) * omega) * z1)
                                        / torch.sin(omega),
                    "divide by sin(w), so that t = 0 gives z0 and t = 1 gives z1":
                        torch.sin((1 - step) * omega) * z0 + torch.sin(step * omega) * z1,
                })
    got = t.call(fn, z0, 3 * z0, 0.5)
    t.expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
             "parallel codes (w = 0) give a finite answer",
             "when sin(w) is (nearly) 0, fall back to the straight line (1 - t) z0 + t z1")


@checker("smoothed_discriminator_loss")
def smoothed_discriminator_loss(t, fn):
    for seed, smooth in ((0, 0.9), (1, 0.8), (2, 1.0)):
        real, fake = _logits(seed, extreme=True), _logits(seed + 10)
        got = t.call(fn, real, fake, smooth)
        what = f"real target {smooth} (seed {seed})"
        if not _finite(t, got, what):
            return
        t.close(got, gan.discriminator_loss(real, fake, real_target=smooth), what,
                "binary cross-entropy with target `smooth` for real logits and 0 for fakes",
                diagnose={
                    "smooth only the real targets (one-sided); fakes keep target 0, or the "
                    "generator is rewarded for staying where it is":
                        _bce(real, smooth) + _bce(fake, 1 - smooth),
                    "the real target is `smooth` itself (0.9), not 1 - smooth":
                        _bce(real, 1 - smooth) + _bce(fake, 0.0),
                    "smoothing applies to the real targets; the fake targets stay at 0 and the "
                    "real ones move to 0.9": _bce(real, 1.0) + _bce(fake, 1 - smooth),
                    "add the fake term: the discriminator must also reject fakes":
                        _bce(real, smooth),
                })

