"""Checkers for lesson 02 (the variational autoencoder)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from companion import vae
from companion.exercises import checker


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@checker("reparameterize")
def reparameterize(t, fn):
    n = 20_000
    sigma = torch.tensor([0.5, 1.0, 2.0, 3.0])
    mu = torch.tensor([1.0, -2.0, 0.0, 5.0]).repeat(n, 1).requires_grad_()
    logvar = (2 * sigma.log()).repeat(n, 1).requires_grad_()
    torch.manual_seed(0)
    z = t.call(fn, mu, logvar, copy=False)
    if not t.tensor(z, "returns a tensor shaped like mu", shape=mu.shape, dtype_float=True):
        return
    eps = ((z - mu) / sigma).detach()
    as_if = lambda scale: ((z - mu) / scale).detach().std(0)     # noqa: E731
    ok = eps.mean(0).abs().max() < 0.05 and (eps.std(0) - 1).abs().max() < 0.03
    if not ok:
        if (z.detach() == mu.detach()).all():
            hint = "add the noise: z = mu + sigma * eps, with eps = torch.randn_like(sigma)"
        elif eps.min() >= 0 and eps.max() <= 1:
            hint = ("draw eps from a standard normal (torch.randn_like), not a uniform "
                    "(torch.rand_like)")
        elif ((as_if(sigma**2) - 1).abs().max() < 0.03):
            hint = "sigma = exp(logvar / 2): exp(logvar) is the variance, not the std"
        elif ((as_if(torch.ones(4)) - 1).abs().max() < 0.03):
            hint = "scale the noise by sigma = exp(logvar / 2): z = mu + sigma * eps"
        elif ((as_if(sigma.sqrt()) - 1).abs().max() < 0.03):
            hint = "sigma = exp(logvar / 2) = sqrt(variance), not the square root of sigma"
        else:
            hint = "z = mu + exp(0.5 * logvar) * eps with eps ~ N(0, I)"
    else:
        hint = ""
    t.expect(ok, "(z - mu) / sigma has mean 0 and standard deviation 1 in every dimension "
                 "(20,000 draws)", hint)
    if not z.requires_grad:
        t.expect(False, "z is differentiable in mu and logvar",
                 "keep z a function of mu and logvar: no .detach(), no torch.no_grad()")
        return
    z.sum().backward()
    grad_ok = mu.grad is not None and torch.allclose(mu.grad, torch.ones_like(mu))
    t.expect(grad_ok, "dz/dmu = 1 (the gradient flows through the mean)",
             "torch.normal(mu, std) passes no gradient: write z = mu + sigma * eps yourself")
    want = 0.5 * (z - mu).detach()
    t.expect(logvar.grad is not None and torch.allclose(logvar.grad, want, atol=1e-5),
             "dz/dlogvar = sigma * eps / 2 (the gradient flows through sigma)",
             "torch.normal(mu, std) passes no gradient: write z = mu + sigma * eps yourself, "
             "with sigma = exp(0.5 * logvar) computed from logvar")
    torch.manual_seed(1)
    z2 = t.call(fn, mu.detach(), logvar.detach())
    t.expect(not torch.equal(z2, z.detach()), "a second call draws fresh noise",
             "do not reseed or reuse a fixed eps inside the function")


@checker("gaussian_kl")
def gaussian_kl(t, fn):
    for seed in (0, 1):
        g = _gen(seed)
        mu = torch.randn(5, 4, generator=g)
        logvar = torch.randn(5, 4, generator=g)
        got = t.call(fn, mu, logvar)
        if not t.tensor(got, f"returns one KL per example, shape [N] (seed {seed})", shape=(5,)):
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                t.expect(False, "one KL per example",
                         "sum over the latent dimensions only, not over the batch")
            return
        q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
        p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        ref = kl_divergence(q, p)
        inner = mu.pow(2) + logvar.exp() - logvar - 1
        t.close(got, ref, f"matches torch.distributions.kl_divergence (seed {seed})",
                "0.5 * sum_d (mu^2 + exp(logvar) - logvar - 1)",
                diagnose={
                    "multiply by 1/2": inner.sum(-1),
                    "sum over the latent dimensions (the KL of independent dims adds up), "
                    "not the mean": 0.5 * inner.mean(-1),
                    "the log term is - logvar (KL = 0.5 (mu^2 + sigma^2 - log sigma^2 - 1))":
                        0.5 * (mu.pow(2) + logvar.exp() + logvar - 1).sum(-1),
                    "keep the - 1 per dimension: KL(N(0, I) || N(0, I)) must be 0":
                        0.5 * (mu.pow(2) + logvar.exp() - logvar).sum(-1),
                    "sigma^2 = exp(logvar), not logvar^2":
                        0.5 * (mu.pow(2) + logvar.pow(2) - logvar - 1).sum(-1),
                })
    zero = t.call(fn, torch.zeros(3, 2), torch.zeros(3, 2))
    t.close(zero, torch.zeros(3), "KL(N(0, I) || N(0, I)) = 0",
            "keep the - 1 per dimension: KL(N(0, I) || N(0, I)) must be 0")


def _elbo_inputs(seed: int):
    g = _gen(seed)
    logits = torch.randn(6, 1, 28, 28, generator=g) * 2
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=g)
    mu = torch.randn(6, 3, generator=g)
    logvar = torch.randn(6, 3, generator=g) * 0.5
    return logits, x, mu, logvar


@checker("negative_elbo")
def negative_elbo(t, fn):
    for seed in (0, 1):
        logits, x, mu, logvar = _elbo_inputs(seed)
        logits.requires_grad_()
        got = t.call(fn, logits, x, mu, logvar, copy=False)
        if not t.tensor(got, f"returns a scalar tensor (seed {seed})", shape=()):
            return
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = vae.gaussian_kl(mu, logvar)
        ref = (bce + kl).mean()
        sig = torch.sigmoid(logits).detach()
        t.close(got, ref, f"mean over the batch of [-log p(x|z) + KL] (seed {seed})",
                "-ELBO = mean_n [ sum_pixels BCE_with_logits(logits, x) + KL(q || N(0, I)) ]",
                diagnose={
                    "add the KL term: -ELBO = reconstruction + KL": bce.mean(),
                    "the KL is added, not subtracted (-ELBO = -log p(x|z) + KL)":
                        (bce - kl).mean(),
                    "sum the cross-entropy over pixels (log p(x|z) is a sum over 784 pixels), "
                    "not the mean": (bce / 784 + kl).mean(),
                    "average over the batch, not the sum": (bce + kl).sum(),
                    "the decoder returns logits: use binary_cross_entropy_with_logits, not a "
                    "sigmoid applied twice":
                        (F.binary_cross_entropy_with_logits(sig, x, reduction="none")
                         .flatten(1).sum(1) + kl).mean(),
                })
        t.expect(got.requires_grad, "the loss is differentiable in the logits",
                 "build it from torch operations (no .item(), no .detach())")


@checker("iwae_from_log_weights")
def iwae_from_log_weights(t, fn):
    g = _gen(3)
    log_w = -250 + 3 * torch.randn(50, 4, generator=g)      # float32, like a model's output
    got = t.call(fn, log_w)
    if not t.tensor(got, "returns one bound per example, shape [N]", shape=(4,)):
        if isinstance(got, torch.Tensor) and got.shape == (50,):
            t.expect(False, "one bound per example",
                     "average over the k samples: they are dim 0 of log_w ([k, N])")
        return
    ref = vae.iwae_from_log_weights(log_w)
    lse = torch.logsumexp(log_w, 0)
    ok = t.close(got, ref, "log (1/k) sum_i w_i on log-weights near -250",
                 "torch.logsumexp(log_w, dim=0) - math.log(k)",
                 diagnose={
                     "subtract log k: the bound averages the k weights": lse,
                     "that is the ELBO (the mean of log w); the IWAE bound is the log of the "
                     "mean of w": log_w.mean(0),
                     "the bound uses all weights, not just the largest (logsumexp, not max)":
                         log_w.max(0).values,
                 })
    if not ok and not torch.isfinite(got).all():
        t.expect(False, "finite values",
                 "use torch.logsumexp: exp(log w) underflows to 0 at log w = -250")
    k1 = t.call(fn, log_w[:1])
    t.close(k1, log_w[0], "k = 1 gives the one-sample ELBO (log w itself)",
            "with k = 1 the bound is log w_1")


@checker("linear_gaussian_elbo")
def linear_gaussian_elbo(t, fn):
    model = vae.LinearGaussian.random(d=5, D=2, sigma=0.6, generator=_gen(0))
    for seed in (1, 2):
        g = _gen(seed)
        x = model.sample(1, generator=g)[0]
        A = torch.randn(2, 2, generator=g, dtype=torch.float64)
        q_mean = torch.randn(2, generator=g, dtype=torch.float64)
        q_cov = A @ A.T + 0.2 * torch.eye(2, dtype=torch.float64)
        got = t.call(fn, model, x, q_mean, q_cov)
        ref = model.elbo(x, q_mean, q_cov)
        W, b, s2, d = model.W, model.b, model.sigma2, model.d
        resid = x - b - W @ q_mean
        trace = torch.trace(W @ q_cov @ W.T)
        const = -0.5 * d * math.log(2 * math.pi * s2)
        kl = model.kl_to_prior(q_mean, q_cov)
        logdet = torch.logdet(q_cov)
        t.close(got, ref, f"equals the closed-form ELBO (seed {seed})",
                "E_q[log p(x|z)] - KL(q || N(0, I)) with the formulas above",
                diagnose={
                    "the expected squared error needs tr(W S_q W^T): z varies under q":
                        const - 0.5 * (resid @ resid) / s2 - kl,
                    "subtract the KL (ELBO = E_q[log p(x|z)] - KL(q || p(z)))":
                        model.expected_log_likelihood(x, q_mean, q_cov) + kl,
                    "the KL to the prior includes - log det S_q":
                        model.expected_log_likelihood(x, q_mean, q_cov) - kl - 0.5 * logdet,
                    "model.sigma2 is already the variance sigma^2: do not square it again":
                        -0.5 * d * math.log(2 * math.pi * s2**2)
                        - 0.5 * (resid @ resid + trace) / s2**2 - kl,
                    "keep the normalising constant -d/2 log(2 pi sigma^2)":
                        ref - const,
                })
        gap = model.log_evidence(x) - torch.as_tensor(got, dtype=torch.float64).detach()
        t.close(gap, model.kl_to_posterior(x, q_mean, q_cov),
                f"log p(x) - ELBO = KL(q || p(z|x)) (seed {seed})",
                "the identity holds only for the exact ELBO", atol=1e-6)
    m, S = model.posterior(x)
    at_post = t.call(fn, model, x, m, S)
    t.close(at_post, model.log_evidence(x), "at q = p(z|x) the ELBO equals log p(x)",
            "E_q[log p(x|z)] - KL(q || N(0, I)) with the formulas above", atol=1e-6)
