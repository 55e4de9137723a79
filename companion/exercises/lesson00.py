"""Checkers for lesson 00 (start here): density and sampling warm-ups."""
from __future__ import annotations

import math

import torch

from companion import basics
from companion.exercises import checker


@checker("gaussian_nll")
def gaussian_nll(t, fn):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, generator=g) * 1.5 + 0.5
    ref = basics.gaussian_nll
    for mu, log_sigma, what in ((0.0, 0.0, "N(0, 1)"), (0.5, math.log(1.5), "N(0.5, 1.5^2)"),
                                (-1.0, -1.0, "a narrow N(-1, e^-2)")):
        got = t.call(fn, x, mu, log_sigma)
        if not t.tensor(got, f"returns a scalar tensor for {what}", shape=()):
            return
        sigma = math.exp(log_sigma)
        z2 = ((x - mu) / sigma) ** 2
        t.close(got, ref(x, mu, log_sigma), f"mean NLL under {what} matches the reference",
                "average -log N(x; mu, sigma^2) over the batch, in nats",
                diagnose={
                    "the 0.5 log(2 pi) constant is missing":
                        ref(x, mu, log_sigma) - 0.5 * basics.LOG_2PI,
                    "the log sigma term is missing (the normaliser depends on sigma)":
                        ref(x, mu, log_sigma) - log_sigma,
                    "use sigma^2 = exp(2 log_sigma) in the quadratic term, not sigma":
                        (0.5 * basics.LOG_2PI + log_sigma + 0.5 * (x - mu) ** 2 / sigma).mean(),
                    "the quadratic term needs its factor 1/2":
                        (0.5 * basics.LOG_2PI + log_sigma + z2).mean(),
                    "take the mean over the batch, not the sum":
                        ref(x, mu, log_sigma) * len(x),
                    "return the negative log-likelihood (the sign is flipped)":
                        -ref(x, mu, log_sigma),
                })
    # Broadcasting and gradients: the lesson fits mu and log_sigma by gradient descent.
    mu = torch.tensor(0.3, requires_grad=True)
    log_sigma = torch.tensor(0.2, requires_grad=True)
    out = t.call(fn, x, mu, log_sigma, copy=False)
    ok = isinstance(out, torch.Tensor) and out.requires_grad
    if t.expect(ok, "is differentiable in mu and log_sigma",
                "build the result from torch operations on mu and log_sigma (no .item(), no "
                "numpy, no math.exp on tensors)"):
        gm, gs = torch.autograd.grad(out, (mu, log_sigma))
        z = (x - 0.3) / math.exp(0.2)
        t.close(torch.stack([gm, gs]), torch.stack([-(z / math.exp(0.2)).mean(), 1 - (z**2).mean()]),
                "gradients match d NLL / d mu and d NLL / d log_sigma",
                "gradients differ: check the quadratic term (x - mu)^2 / (2 sigma^2)")


@checker("bernoulli_nll")
def bernoulli_nll(t, fn):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(6, 1, 4, 4, generator=g) < 0.4).float()
    p = torch.rand(1, 4, 4, generator=g) * 0.9 + 0.05
    ref = basics.bernoulli_nll
    got = t.call(fn, x, p)
    if not t.tensor(got, "returns one NLL per image, shape [N]", shape=(6,)):
        return
    ll = x * torch.log(p) + (1 - x) * torch.log1p(-p)
    t.close(got, ref(x, p), "per-image NLL matches the reference",
            "sum -[x log p + (1 - x) log(1 - p)] over all pixels of each image",
            diagnose={
                "the (1 - x) log(1 - p) term is missing: off pixels cost nats too":
                    -(x * torch.log(p)).reshape(6, -1).sum(1),
                "return the negative log-likelihood (the sign is flipped)": -ref(x, p),
                "sum over the pixels of each image, not the mean":
                    -ll.reshape(6, -1).mean(1),
                "the roles of x and p are swapped somewhere":
                    -(p * torch.log(x.clamp(1e-6, 1 - 1e-6))
                      + (1 - p) * torch.log1p(-x.clamp(1e-6, 1 - 1e-6))).reshape(6, -1).sum(1),
            })
    # Certain pixels: p = 0 or 1 must not give inf or nan (clamp p).
    p_hard = p.clone()
    p_hard[0, 0, 0], p_hard[0, 0, 1] = 0.0, 1.0
    got = t.call(fn, x, p_hard)
    finite = isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all())
    t.expect(finite, "stays finite when some p are exactly 0 or 1",
             "clamp p to [eps, 1 - eps] (eps = 1e-6) before taking logs")


@checker("sample_categorical")
def sample_categorical(t, fn):
    probs = torch.tensor([0.1, 0.0, 0.2, 0.3, 0.4])
    got = t.call(fn, probs, 50_000, torch.Generator().manual_seed(0))
    if not t.tensor(got, "returns a tensor of n indices", shape=(50_000,)):
        return
    if not t.expect(not got.is_floating_point(), "returns integer indices",
                    "return a LongTensor of category indices, not floats"):
        return
    in_range = bool(((got >= 0) & (got < len(probs))).all())
    # An off-by-one draws category i + 1 with probability probs[i].
    shifted = torch.bincount(got.clamp(0, len(probs)), minlength=len(probs) + 1) / len(got)
    off_by_one = bool(torch.allclose(shifted[1:].double(), probs.double(), atol=0.01))
    if not t.expect(in_range, "every index is in 0..K-1",
                    "an off-by-one (+1): the sample is the number of cdf entries <= u"
                    if off_by_one else "compare u with the cdf (torch.cumsum(probs)), "
                    "not the pdf"):
        return
    freq = torch.bincount(got, minlength=len(probs)).double() / len(got)
    t.expect(freq[1] == 0, "never draws a category of probability 0",
             "a category with probability 0 was drawn: compare u with the cdf, not the pdf")
    # With 50,000 draws the standard error of each frequency is below 0.0022.
    t.close(freq, probs, "frequencies match probs (50,000 draws)",
            "frequencies are off: build the cdf with torch.cumsum and invert it at u",
            atol=0.01, rtol=0,
            diagnose={"ignores probs: every category is drawn equally often":
                      torch.full((5,), 0.2)})
    ref = basics.sample_categorical(probs, 1000, torch.Generator().manual_seed(3))
    got = t.call(fn, probs, 1000, torch.Generator().manual_seed(3))
    t.close(got, ref, "same draws as the reference for the same generator",
            "draw u with one call torch.rand(n, generator=generator), then invert the cdf",
            atol=0, rtol=0)


@checker("bits_per_dim")
def bits_per_dim(t, fn):
    for nll, dims in ((543.43, 784), (88.0, 784), (3000.0, 3072)):
        got = t.call(fn, nll, dims)
        t.close(got, basics.bits_per_dim(nll, dims),
                f"{nll} nats over {dims} dimensions",
                "divide by the number of dimensions and by ln 2",
                diagnose={
                    "convert nats to bits by dividing by ln 2, not log10(2)":
                        nll / (dims * math.log10(2)),
                    "divide by ln 2 (nats to bits), do not multiply":
                        nll * math.log(2) / dims,
                    "per dimension: divide by the number of dimensions too":
                        nll / math.log(2),
                })
    got = t.call(fn, torch.tensor([543.43, 88.0]), 784,
                 hint="use operations that work on tensors and numbers (no float() or math.*)")
    t.close(got, basics.bits_per_dim(torch.tensor([543.43, 88.0]), 784),
            "works on a tensor of NLLs", "use operations that work on tensors and numbers")
