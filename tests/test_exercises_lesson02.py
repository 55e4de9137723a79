"""Lesson 02 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import math

import torch
import torch.nn.functional as F

from companion import vae
from companion.exercises import lesson02 as check
from companion.exercises.testing import verify_checker


def test_reparameterize_checker():
    def reference(mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    verify_checker(check.reparameterize, reference, wrong={
        "exp(logvar) is the variance": lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu),
        "not a uniform": lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu),
        "scale the noise by sigma": lambda mu, lv: mu + torch.randn_like(mu),
        "add the noise": lambda mu, lv: mu * 1.0,
        "torch.normal(mu, std) passes no gradient":
            lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)),
        "no .detach()": lambda mu, lv: (mu + torch.exp(0.5 * lv) * torch.randn_like(mu)).detach(),
        "reuse a fixed eps": lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(
            mu.shape, generator=torch.Generator().manual_seed(0)),
    })


def test_gaussian_kl_checker():
    def reference(mu, logvar):
        return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)

    verify_checker(check.gaussian_kl, reference, wrong={
        "multiply by 1/2": lambda mu, lv: (mu**2 + lv.exp() - lv - 1).sum(-1),
        "not the mean": lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1).mean(-1),
        "keep the - 1": lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv).sum(-1),
        "not over the batch": lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv - 1).sum(),
        "the log term is - logvar": lambda mu, lv: 0.5 * (mu**2 + lv.exp() + lv - 1).sum(-1),
        "not logvar^2": lambda mu, lv: 0.5 * (mu**2 + lv**2 - lv - 1).sum(-1),
    })


def test_negative_elbo_checker():
    def kl(mu, lv):
        return 0.5 * (mu**2 + lv.exp() - lv - 1).sum(-1)

    def bce(logits, x):
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    def reference(logits, x, mu, logvar):
        return (bce(logits, x) + kl(mu, logvar)).mean()

    verify_checker(check.negative_elbo, reference, wrong={
        "add the KL term": lambda lo, x, mu, lv: bce(lo, x).mean(),
        "not subtracted": lambda lo, x, mu, lv: (bce(lo, x) - kl(mu, lv)).mean(),
        "not the mean": lambda lo, x, mu, lv:
            F.binary_cross_entropy_with_logits(lo, x) + kl(mu, lv).mean(),
        "not the sum": lambda lo, x, mu, lv: (bce(lo, x) + kl(mu, lv)).sum(),
        "sigmoid applied twice": lambda lo, x, mu, lv:
            (bce(torch.sigmoid(lo), x) + kl(mu, lv)).mean(),
        "no .detach()": lambda lo, x, mu, lv: reference(lo, x, mu, lv).detach(),
    })


def test_iwae_checker():
    def reference(log_w):
        return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])

    verify_checker(check.iwae_from_log_weights, reference, wrong={
        "subtract log k": lambda lw: torch.logsumexp(lw, 0),
        "that is the elbo": lambda lw: lw.mean(0),
        "torch.logsumexp": lambda lw: lw.exp().mean(0).log(),
        "not just the largest": lambda lw: lw.max(0).values,
        "dim 0": lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]),
    })


def test_linear_gaussian_elbo_checker():
    def parts(m, x, q_mean, q_cov):
        resid = x - m.b - m.W @ q_mean
        const = -0.5 * m.d * math.log(2 * math.pi * m.sigma2)
        trace = torch.trace(m.W @ q_cov @ m.W.T)
        kl = 0.5 * (torch.trace(q_cov) + q_mean @ q_mean - m.D - torch.logdet(q_cov))
        return resid, const, trace, kl

    def reference(m, x, q_mean, q_cov):
        resid, const, trace, kl = parts(m, x, q_mean, q_cov)
        return const - 0.5 * (resid @ resid + trace) / m.sigma2 - kl

    def no_trace(m, x, q_mean, q_cov):
        resid, const, trace, kl = parts(m, x, q_mean, q_cov)
        return const - 0.5 * (resid @ resid) / m.sigma2 - kl

    def plus_kl(m, x, q_mean, q_cov):
        resid, const, trace, kl = parts(m, x, q_mean, q_cov)
        return const - 0.5 * (resid @ resid + trace) / m.sigma2 + kl

    def no_logdet(m, x, q_mean, q_cov):
        return reference(m, x, q_mean, q_cov) - 0.5 * torch.logdet(q_cov)

    def squared_again(m, x, q_mean, q_cov):
        resid, const, trace, kl = parts(m, x, q_mean, q_cov)
        return (-0.5 * m.d * math.log(2 * math.pi * m.sigma2**2)
                - 0.5 * (resid @ resid + trace) / m.sigma2**2 - kl)

    def no_const(m, x, q_mean, q_cov):
        resid, const, trace, kl = parts(m, x, q_mean, q_cov)
        return -0.5 * (resid @ resid + trace) / m.sigma2 - kl

    verify_checker(check.linear_gaussian_elbo, reference, wrong={
        "tr(W S_q W^T)": no_trace, "subtract the kl": plus_kl, "log det S_q": no_logdet,
        "do not square it again": squared_again, "normalising constant": no_const,
    })
    assert vae.LinearGaussian  # the reference lives in companion.vae
