"""Density-estimation and sampling basics used from lesson 00 on.

A generative model is judged two ways: as a *density* (how probable it finds held-out data:
the negative log-likelihood, in nats, or in bits per dimension) and as a *sampler* (how good its
samples look). These are the smallest instances of both.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def gaussian_nll(x: torch.Tensor, mu, log_sigma) -> torch.Tensor:
    """Mean negative log-likelihood (nats) of ``x`` under N(mu, sigma^2), sigma = exp(log_sigma).

    -log N(x; mu, sigma^2) = 0.5 log(2 pi) + log sigma + (x - mu)^2 / (2 sigma^2), averaged over
    all entries of ``x``. ``mu`` and ``log_sigma`` are numbers or tensors broadcastable to ``x``.
    Returns a scalar tensor.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point torch.Tensor, got {type(x).__name__}")
    mu = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
    log_sigma = torch.as_tensor(log_sigma, dtype=x.dtype, device=x.device)
    z = (x - mu) * torch.exp(-log_sigma)
    return (0.5 * LOG_2PI + log_sigma + 0.5 * z**2).mean()


def fit_gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Gaussian: mu = mean(x), sigma^2 = mean((x - mu)^2) (biased). Returns
    ``(mu, log_sigma)`` as scalar tensors."""
    if not isinstance(x, torch.Tensor) or x.numel() < 2:
        raise ValueError("x: expected a tensor with at least 2 entries")
    mu = x.mean()
    return mu, 0.5 * torch.log(((x - mu) ** 2).mean())


def bernoulli_nll(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-example negative log-likelihood (nats) of binary ``x`` under independent Bernoullis.

    -log p(x) = -sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)], summed over every dimension but
    the first. ``x``: ``[N, ...]`` with entries in {0, 1}; ``p``: probabilities broadcastable to
    ``x``, clamped to [eps, 1 - eps] so a pixel never costs infinitely many nats. Returns ``[N]``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise TypeError("x: expected a torch.Tensor of shape [N, ...]")
    p = torch.as_tensor(p, dtype=x.dtype, device=x.device).clamp(eps, 1 - eps)
    ll = x * torch.log(p) + (1 - x) * torch.log1p(-p)
    return -ll.reshape(len(x), -1).sum(dim=1)


def sample_categorical(probs: torch.Tensor, n: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` indices with P(i) = probs[i] by inverse-CDF sampling.

    u ~ U(0, 1) (one ``torch.rand(n, generator=generator)`` call); the sample is the smallest i
    with cdf_i > u, where cdf_i = probs_0 + ... + probs_i, i.e. the number of cdf entries <= u.
    ``probs``: ``[K]``, non-negative, summing to 1. Returns int64 ``[n]``.
    """
    if not isinstance(probs, torch.Tensor) or probs.ndim != 1 or len(probs) == 0:
        raise ValueError("probs: expected a non-empty 1-D tensor of probabilities")
    if (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-4:
        raise ValueError(f"probs: expected non-negative values summing to 1, "
                         f"got sum {float(probs.sum()):.6f}")
    cdf = torch.cumsum(probs.double(), dim=0)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    idx = torch.searchsorted(cdf, u, right=True)
    return idx.clamp_(max=len(probs) - 1)       # guard u above cdf[-1] from rounding


def bits_per_dim(nll_nats, num_dims: int):
    """Convert a per-example NLL in nats into bits per dimension: nll / (D ln 2)."""
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims: expected a positive int, got {num_dims!r}")
    return nll_nats / (num_dims * math.log(2))
