"""Variational autoencoders: the ELBO, reparameterisation, IWAE, beta-VAE, conditional VAE and the
linear-Gaussian model where every quantity has a closed form (lesson 02).

The generative model is ``p(x) = int p(x|z) p(z) dz`` with ``p(z) = N(0, I)``. The posterior
``p(z|x)`` is intractable, so an encoder ``q(z|x) = N(mu(x), diag sigma^2(x))`` approximates it, and

    log p(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) + KL(q(z|x) || p(z|x))
             = ELBO(x)                               + (a gap that is >= 0)

(Kingma and Welling 2014; Rezende et al. 2014). Training maximises the ELBO over the encoder and
decoder with the reparameterisation ``z = mu + sigma * eps``, ``eps ~ N(0, I)``. The
importance-weighted bound (Burda et al. 2016)

    L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_i ~ q(z|x),

equals the ELBO at ``k = 1``, never decreases in ``k`` and tends to ``log p(x)``.

Images are ``[N, 1, 28, 28]`` binary (or [0, 1]) tensors; latents ``[N, D]``; Monte-Carlo sample
dimensions come first (``[K, N, D]``). Log-likelihoods are in nats and summed over pixels.
"""
from __future__ import annotations

import math
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from companion import train
from companion._checks import images as _images
from companion._checks import positive_int as _positive_int
from companion._checks import tensor as _tensor
from companion.data import batches

LOG_2PI = math.log(2 * math.pi)
REFERENCE_WEIGHTS = pathlib.Path(__file__).resolve().parent / "_data" / "vae_lesson02.pt"

# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[1]}: expected the shape of {names[0]} {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# 1. Gaussian building blocks
# ---------------------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, samples: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` and ``sigma = exp(logvar / 2)``.

    The randomness sits in ``eps``, which does not depend on ``(mu, logvar)``, so gradients flow
    through ``mu`` and ``sigma`` (Kingma and Welling 2014, section 2.4). Shapes: ``mu``, ``logvar``
    ``[..., D]``; the result has their shape, or ``[samples, ..., D]`` when ``samples`` is given.
    """
    _tensor(mu, "mu")
    _tensor(logvar, "logvar")
    _same_shape(mu, logvar, ("mu", "logvar"))
    shape = mu.shape if samples is None else (_positive_int(samples, "samples"), *mu.shape)
    eps = torch.randn(shape, generator=generator, dtype=mu.dtype,
                      device="cpu" if generator is not None else mu.device).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I)) = 1/2 sum_d (mu_d^2 + sigma_d^2 - log sigma_d^2 - 1)``.

    Kingma and Welling (2014), appendix B. Shapes ``[..., D]`` -> ``[...]`` (summed over ``D``).
    """
    _tensor(mu, "mu")
    _tensor(logvar, "logvar")
    _same_shape(mu, logvar, ("mu", "logvar"))
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor | float = 0.0,
                      logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dimension; broadcasts. ``[..., D] -> [...]``.

    With the defaults it is the standard-normal prior ``log p(z)``.
    """
    _tensor(z, "z")
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log p(x|z) = sum_pixels [x log p + (1 - x) log(1 - p)]`` with ``p = sigmoid(logits)``.

    Computed stably from logits (it is minus the binary cross-entropy with logits). Shapes: ``x``
    ``[N, ...]``, ``logits`` ``[..., N, ...]`` (leading sample dimensions broadcast) -> ``[..., N]``.
    """
    _tensor(logits, "logits")
    _tensor(x, "x")
    if logits.shape[logits.ndim - x.ndim:] != x.shape:
        raise ValueError(f"logits: expected a shape ending in x's {tuple(x.shape)}, "
                         f"got {tuple(logits.shape)}")
    lead = logits.shape[:logits.ndim - x.ndim + 1]
    ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return ll.reshape(*lead, -1).sum(-1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor | float
                            ) -> torch.Tensor:
    """``log N(x; mean, exp(logvar) I)`` summed over all but the leading (sample and batch) dims.

    For a Gaussian decoder on continuous images. Shapes: ``x`` ``[N, ...]``, ``mean``
    ``[..., N, ...]`` -> ``[..., N]``.
    """
    _tensor(x, "x")
    _tensor(mean, "mean")
    logvar = torch.as_tensor(logvar, dtype=mean.dtype, device=mean.device)
    ll = -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))
    ll = ll.expand(mean.shape) if ll.shape != mean.shape else ll
    return ll.reshape(*mean.shape[:mean.ndim - x.ndim + 1], -1).sum(-1)


# ---------------------------------------------------------------------------------------------
# 2. Encoder, decoders and the VAE
# ---------------------------------------------------------------------------------------------


def _mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    dims = [d_in] + [hidden] * layers
    blocks = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        blocks += [nn.Linear(a, b), nn.ELU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], d_out))


def _one_hot(y, num_classes: int, n: int, device) -> torch.Tensor | None:
    if num_classes == 0:
        if y is not None:
            raise ValueError("y: this model is unconditional (num_classes=0); pass y=None")
        return None
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise TypeError(f"y: a conditional model needs integer labels [N], got "
                        f"{type(y).__name__ if not isinstance(y, torch.Tensor) else y.dtype}")
    if y.shape != (n,) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"y: expected {n} labels in [0, {num_classes}), got shape "
                         f"{tuple(y.shape)}")
    return F.one_hot(y.long(), num_classes).float().to(device)


class GaussianEncoder(nn.Module):
    """``q(z|x[, y]) = N(mu, diag exp(logvar))``: an MLP from the flattened image (and the one-hot
    label, for a conditional VAE) to ``mu`` and ``logvar``. ``[N, 1, 28, 28] -> 2 x [N, D]``."""

    def __init__(self, latent_dim: int, hidden: int = 512, layers: int = 2, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.net = _mlp(784 + num_classes, hidden, layers, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        h = x.flatten(1)
        c = _one_hot(y, self.num_classes, len(x), x.device)
        if c is not None:
            h = torch.cat([h, c], 1)
        mu, logvar = self.net(h).chunk(2, dim=-1)
        return mu, logvar


class BernoulliDecoder(nn.Module):
    """``p(x|z[, y]) = prod_pixels Bernoulli(sigmoid(logits))``: an MLP from ``z`` (and the one-hot
    label) to 784 logits. ``[..., N, D] -> [..., N, 1, 28, 28]`` (leading sample dims kept)."""

    def __init__(self, latent_dim: int, hidden: int = 512, layers: int = 2, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.net = _mlp(latent_dim + num_classes, hidden, layers, 784)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = _one_hot(y, self.num_classes, z.shape[-2], z.device)
        if c is not None:
            z = torch.cat([z, c.expand(*z.shape[:-1], self.num_classes)], -1)
        return self.net(z).unflatten(-1, (1, 28, 28))


class ConvBernoulliDecoder(nn.Module):
    """A convolutional Bernoulli decoder: an MLP from ``z`` (and the one-hot label) to a
    ``[2c, 7, 7]`` feature map, then two sub-pixel upsampling steps (a 3x3 convolution to 4x the
    channels and a pixel shuffle; Shi et al. 2016) to ``[1, 28, 28]`` logits. Weights shared across
    positions generalise better from few images than a fully connected decoder of the same cost.
    ``[..., N, D] -> [..., N, 1, 28, 28]``."""

    def __init__(self, latent_dim: int, hidden: int = 256, channels: int = 16,
                 num_classes: int = 0):
        super().__init__()
        self.num_classes, self.channels = num_classes, channels
        self.fc = nn.Sequential(nn.Linear(latent_dim + num_classes, hidden), nn.ELU(),
                                nn.Linear(hidden, 2 * channels * 49), nn.ELU())
        self.up = nn.Sequential(nn.Conv2d(2 * channels, 4 * channels, 3, padding=1),
                                nn.PixelShuffle(2), nn.ELU(),
                                nn.Conv2d(channels, 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = _one_hot(y, self.num_classes, z.shape[-2], z.device)
        if c is not None:
            z = torch.cat([z, c.expand(*z.shape[:-1], self.num_classes)], -1)
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).view(-1, 2 * self.channels, 7, 7)
        return self.up(h).view(*lead, 1, 28, 28)


class GaussianDecoder(nn.Module):
    """``p(x|z[, y]) = N(x; sigmoid(net(z)), exp(logvar) I)`` with one learned log-variance, for
    continuous images. Returns the mean ``[..., N, 1, 28, 28]``; ``self.logvar`` is a scalar."""

    def __init__(self, latent_dim: int, hidden: int = 512, layers: int = 2, num_classes: int = 0,
                 init_logvar: float = -2.0):
        super().__init__()
        self.logits = BernoulliDecoder(latent_dim, hidden, layers, num_classes)
        self.logvar = nn.Parameter(torch.tensor(float(init_logvar)))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, y))


class VAE(nn.Module):
    """The variational autoencoder (Kingma and Welling 2014) with ``p(z) = N(0, I)``.

    - ``likelihood="bernoulli"`` (binary images) or ``"gaussian"`` (images in [0, 1]);
    - ``decoder="mlp"`` or ``"conv"`` (:class:`ConvBernoulliDecoder`); the encoder is an MLP;
    - ``num_classes > 0`` makes it a conditional VAE (Sohn et al. 2015): encoder and decoder also
      see the one-hot label, ``q(z|x, y)`` and ``p(x|z, y)``, with the prior ``p(z) = N(0, I)``;
    - ``beta`` in the loss makes it a beta-VAE (Higgins et al. 2017).
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 512, layers: int = 2,
                 num_classes: int = 0, likelihood: str = "bernoulli", decoder: str = "mlp"):
        super().__init__()
        _positive_int(latent_dim, "latent_dim")
        _positive_int(hidden, "hidden")
        _positive_int(layers, "layers")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes: expected an int >= 0, got {num_classes!r}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood: expected 'bernoulli' or 'gaussian', got {likelihood!r}")
        if decoder not in ("mlp", "conv"):
            raise ValueError(f"decoder: expected 'mlp' or 'conv', got {decoder!r}")
        if decoder == "conv" and likelihood != "bernoulli":
            raise ValueError("decoder: the 'conv' decoder is Bernoulli; use likelihood='bernoulli'")
        self.latent_dim, self.num_classes, self.likelihood = latent_dim, num_classes, likelihood
        self.encoder = GaussianEncoder(latent_dim, hidden, layers, num_classes)
        if decoder == "conv":
            self.decoder = ConvBernoulliDecoder(latent_dim, num_classes=num_classes)
        elif likelihood == "bernoulli":
            self.decoder = BernoulliDecoder(latent_dim, hidden, layers, num_classes)
        else:
            self.decoder = GaussianDecoder(latent_dim, hidden, layers, num_classes)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """``(mu, logvar)`` of ``q(z|x)``, each ``[N, D]``."""
        return self.encoder(_images(x), y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output for ``z`` ``[..., N, D]``: logits (Bernoulli) or means (Gaussian)."""
        _tensor(z, "z")
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z: expected a last dimension of {self.latent_dim}, "
                             f"got shape {tuple(z.shape)}")
        return self.decoder(z, y)

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` ``[..., N]`` from the decoder output ``out`` ``[..., N, 1, 28, 28]``."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(out, x)
        return gaussian_log_likelihood(x, out, self.decoder.logvar)

    def mean_image(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image in [0, 1] from its output."""
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, beta: float = 1.0,
                generator: torch.Generator | None = None) -> dict:
        """One-sample estimate of the (beta-)ELBO terms for a batch.

        Returns a dict of per-image tensors ``[N]``: ``rec`` = log p(x|z) at ``z ~ q(z|x)``,
        ``kl`` = KL(q(z|x) || p(z)) (analytic), and the scalar ``loss`` =
        ``mean(-rec + beta * kl)``, the negative ELBO when ``beta = 1``.
        """
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, generator=generator)
        rec = self.log_likelihood(x, self.decode(z, y))
        kl = gaussian_kl(mu, logvar)
        return {"loss": (-rec + beta * kl).mean(), "rec": rec, "kl": kl, "mu": mu,
                "logvar": logvar}

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None,
               generator: torch.Generator | None = None, z: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Mean images ``[n, 1, 28, 28]`` of ``p(x|z)`` for ``z ~ p(z)`` (or the given ``z``)."""
        _positive_int(n, "n")
        if z is None:
            z = torch.randn(n, self.latent_dim, generator=generator).to(self._device())
        elif _tensor(z, "z").ndim != 2 or len(z) != n:
            raise ValueError(f"z: expected [n={n}, {self.latent_dim}] latents, got {tuple(z.shape)}")
        return self.mean_image(self.decode(z, y))

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1.0) -> torch.Tensor:
    """The training loss of a Bernoulli VAE, averaged over the batch:

    ``-ELBO = mean_n [ -log p(x_n|z_n) + beta * KL(q(z|x_n) || N(0, I)) ]``

    with one sample ``z_n ~ q(z|x_n)`` already decoded to ``logits`` ``[N, 1, 28, 28]``; ``mu``,
    ``logvar`` ``[N, D]``. ``beta = 1`` is the VAE, other values the beta-VAE.
    """
    _non_negative(beta, "beta")
    return (-bernoulli_log_likelihood(logits, x) + beta * gaussian_kl(mu, logvar)).mean()


# ---------------------------------------------------------------------------------------------
# 3. Bounds on log p(x): ELBO and IWAE
# ---------------------------------------------------------------------------------------------


def log_weights(model: VAE, x: torch.Tensor, k: int, y: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``log w_i = log p(x|z_i) + log p(z) - log q(z_i|x)`` for ``z_i ~ q(z|x)``, ``[k, N]``.

    The k samples are decoded in one batched call (vectorised over samples)."""
    _positive_int(k, "k")
    mu, logvar = model.encode(x, y)
    z = reparameterize(mu, logvar, samples=k, generator=generator)  # [k, N, D]
    log_px_z = model.log_likelihood(x, model.decode(z, y))
    return log_px_z + gaussian_log_prob(z) - gaussian_log_prob(z, mu, logvar)


def iwae_from_log_weights(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound from log-weights ``[k, N]``:
    ``L_k = log (1/k) sum_i w_i = logsumexp_i(log w_i) - log k`` -> ``[N]`` (Burda et al. 2016).

    ``logsumexp`` keeps it finite where ``exp(log w)`` would underflow (log w is about -100)."""
    _tensor(log_w, "log_w")
    if log_w.ndim < 1 or log_w.shape[0] < 1:
        raise ValueError(f"log_w: expected [k, ...] with k >= 1, got shape {tuple(log_w.shape)}")
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


@torch.inference_mode()
def iwae_bound(model: VAE, x: torch.Tensor, k: int, y: torch.Tensor | None = None,
               batch_size: int = 50, chunk: int = 100,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``L_k(x)`` per image ``[N]`` (nats), over batches of images and chunks of samples
    (``batch_size * chunk`` decodes per call: small enough to stay in the CPU caches).

    The chunks are combined exactly: ``logsumexp`` over all ``k`` weights equals the
    ``logsumexp`` of the per-chunk ``logsumexp`` values. ``k = 1`` is a one-sample ELBO estimate.
    """
    _images(x)
    _positive_int(k, "k")
    _positive_int(batch_size, "batch_size")
    _positive_int(chunk, "chunk")
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        yb = None if y is None else y[i:i + batch_size]
        parts = []
        for start in range(0, k, chunk):
            log_w = log_weights(model, xb, min(chunk, k - start), yb, generator)
            parts.append(torch.logsumexp(log_w, 0))
        out.append(torch.logsumexp(torch.stack(parts), 0) - math.log(k))
    return torch.cat(out)


@torch.no_grad()
def elbo(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 1,
         batch_size: int = 1000, generator: torch.Generator | None = None) -> dict:
    """Per-image ELBO terms ``[N]`` with the reconstruction term averaged over ``samples`` draws:
    ``{"elbo", "rec", "kl"}``, where ``elbo = rec - kl`` (analytic KL)."""
    _images(x)
    _positive_int(samples, "samples")
    model.eval()
    rec, kl = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        yb = None if y is None else y[i:i + batch_size]
        mu, logvar = model.encode(xb, yb)
        z = reparameterize(mu, logvar, samples=samples, generator=generator)
        rec.append(model.log_likelihood(xb, model.decode(z, yb)).mean(0))
        kl.append(gaussian_kl(mu, logvar))
    rec, kl = torch.cat(rec), torch.cat(kl)
    return {"elbo": rec - kl, "rec": rec, "kl": kl}


# ---------------------------------------------------------------------------------------------
# 4. Training
# ---------------------------------------------------------------------------------------------


def train_vae(model: VAE, images: torch.Tensor, steps: int, *, labels: torch.Tensor | None = None,
              beta: float = 1.0, warmup: int = 0, batch_size: int = 100, lr: float = 1e-3,
              schedule: str = "constant", binarize: bool = True, deterministic: bool = False,
              generator: torch.Generator | None = None, desc: str = "vae") -> train.History:
    """Train ``model`` by Adam on the negative (beta-)ELBO; returns the history of
    ``nelbo`` (-ELBO, nats), ``rec`` (= -log p(x|z)) and ``kl``, each averaged over the batch.

    - ``binarize``: dynamic binarisation, a fresh ``Bernoulli(x)`` draw for every batch.
    - ``schedule``: ``"constant"`` or ``"cosine"`` (the learning rate decays to 0 over ``steps``;
      Loshchilov and Hutter 2017), which gains a few nats in a short run.
    - ``warmup``: the KL weight rises linearly from 0 to ``beta`` over that many steps
      (Bowman et al. 2016; Sonderby et al. 2016), which keeps more latent units active.
    - ``deterministic=True`` trains a plain autoencoder of the same architecture (``z = mu``,
      no KL term), the lesson's baseline.
    """
    _images(images, "images")
    _positive_int(steps, "steps")
    _non_negative(beta, "beta")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an int >= 0, got {warmup!r}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"labels: expected {len(images)} labels like images, got {len(labels)}")
    opt, sched = train.adam_with_schedule(model.parameters(), lr, steps, schedule)
    model.train()
    counter = [0]

    def step(batch):
        xb, yb = batch if labels is not None else (batch, None)
        if binarize:
            xb = torch.bernoulli(xb, generator=generator)
        counter[0] += 1
        weight = beta * min(1.0, counter[0] / warmup) if warmup else beta
        if deterministic:
            mu, _ = model.encode(xb, yb)
            rec = model.log_likelihood(xb, model.decode(mu, yb))
            kl = torch.zeros_like(rec)
            loss = -rec.mean()
        else:
            out = model(xb, yb, beta=weight, generator=generator)
            rec, kl, loss = out["rec"], out["kl"], out["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return {"nelbo": (-rec + kl).mean().detach(), "rec": -rec.mean().detach(),
                "kl": kl.mean().detach()}

    tensors = (images,) if labels is None else (images, labels)
    history = train.fit(step, lambda: batches(*tensors, batch_size=batch_size,
                                              generator=generator),
                        steps=steps, desc=desc)
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# 5. The linear-Gaussian model: every term of the ELBO identity in closed form
# ---------------------------------------------------------------------------------------------


def _spd(cov, name: str, dim: int) -> torch.Tensor:
    _tensor(cov, name, ndim=2)
    if cov.shape != (dim, dim):
        raise ValueError(f"{name}: expected a [{dim}, {dim}] covariance, got {tuple(cov.shape)}")
    try:
        torch.linalg.cholesky(cov.double())
    except RuntimeError:
        raise ValueError(f"{name}: expected a symmetric positive-definite matrix") from None
    return cov.double()


class LinearGaussian:
    """Probabilistic PCA (Tipping and Bishop 1999): ``p(z) = N(0, I_D)``,
    ``p(x|z) = N(W z + b, sigma^2 I_d)``. Everything the VAE must estimate is exact here:

    - evidence: ``p(x) = N(x; b, C)`` with ``C = W W^T + sigma^2 I``;
    - posterior: ``p(z|x) = N(m, S)``, ``S = (I + W^T W / sigma^2)^{-1}``,
      ``m = S W^T (x - b) / sigma^2``;
    - for any Gaussian ``q = N(mu_q, S_q)``:
      ``E_q[log p(x|z)] = -d/2 log(2 pi sigma^2) - (||x - b - W mu_q||^2 + tr(W S_q W^T)) / (2 sigma^2)``,
      ``KL(q || p(z)) = 1/2 (tr S_q + ||mu_q||^2 - D - log det S_q)``,
      and ``KL(q || p(z|x))`` by the Gaussian KL formula.

    So ``log p(x) = ELBO(q) + KL(q || p(z|x))`` can be checked to round-off. All computations are
    in float64; ``x`` is one point ``[d]``, ``q_mean`` ``[D]``, ``q_cov`` ``[D, D]``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, sigma: float):
        _tensor(W, "W", ndim=2)
        _tensor(b, "b", ndim=1)
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"b: expected {W.shape[0]} entries (rows of W), got {b.shape[0]}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma: expected a number > 0, got {sigma!r}")
        self.W, self.b, self.sigma2 = W.double(), b.double(), float(sigma) ** 2
        self.d, self.D = W.shape

    @classmethod
    def random(cls, d: int = 5, D: int = 2, sigma: float = 0.5,
               generator: torch.Generator | None = None) -> LinearGaussian:
        """A model with ``W`` and ``b`` drawn from a standard normal."""
        _positive_int(d, "d")
        _positive_int(D, "D")
        W = torch.randn(d, D, generator=generator, dtype=torch.float64)
        b = torch.randn(d, generator=generator, dtype=torch.float64)
        return cls(W, b, sigma)

    def _x(self, x) -> torch.Tensor:
        _tensor(x, "x")
        if x.shape[-1] != self.d:
            raise ValueError(f"x: expected a last dimension of {self.d}, got {tuple(x.shape)}")
        return x.double()

    def _q(self, q_mean, q_cov) -> tuple[torch.Tensor, torch.Tensor]:
        _tensor(q_mean, "q_mean", ndim=1)
        if q_mean.shape[0] != self.D:
            raise ValueError(f"q_mean: expected {self.D} entries, got {tuple(q_mean.shape)}")
        return q_mean.double(), _spd(q_cov, "q_cov", self.D)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of ``x`` ``[n, d]`` by ancestral sampling."""
        _positive_int(n, "n")
        z = torch.randn(n, self.D, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        return z @ self.W.T + self.b + math.sqrt(self.sigma2) * noise

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(x; b, W W^T + sigma^2 I)`` for ``x`` ``[..., d]`` -> ``[...]``."""
        x = self._x(x)
        C = self.W @ self.W.T + self.sigma2 * torch.eye(self.d, dtype=torch.float64)
        L = torch.linalg.cholesky(C)
        r = torch.linalg.solve_triangular(L, (x - self.b).unsqueeze(-1), upper=False).squeeze(-1)
        return -0.5 * (self.d * LOG_2PI + 2 * L.diagonal().log().sum() + r.pow(2).sum(-1))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m [D], S [D, D])`` of the exact posterior ``p(z|x)``."""
        x = self._x(x)
        S = torch.linalg.inv(torch.eye(self.D, dtype=torch.float64) + self.W.T @ self.W / self.sigma2)
        return S @ self.W.T @ (x - self.b) / self.sigma2, S

    def expected_log_likelihood(self, x, q_mean, q_cov) -> torch.Tensor:
        """``E_q[log p(x|z)]``, the reconstruction term, in closed form."""
        x = self._x(x)
        mu, S = self._q(q_mean, q_cov)
        resid = x - self.b - self.W @ mu
        return -0.5 * (self.d * math.log(2 * math.pi * self.sigma2)
                       + (resid @ resid + torch.trace(self.W @ S @ self.W.T)) / self.sigma2)

    def kl_to_prior(self, q_mean, q_cov) -> torch.Tensor:
        """``KL(q || N(0, I))``, the prior-matching term."""
        mu, S = self._q(q_mean, q_cov)
        return 0.5 * (torch.trace(S) + mu @ mu - self.D - torch.logdet(S))

    def elbo(self, x, q_mean, q_cov) -> torch.Tensor:
        """``E_q[log p(x|z)] - KL(q || p(z))``."""
        return self.expected_log_likelihood(x, q_mean, q_cov) - self.kl_to_prior(q_mean, q_cov)

    def kl_to_posterior(self, x, q_mean, q_cov) -> torch.Tensor:
        """``KL(q || p(z|x)) = 1/2 (tr(S^-1 S_q) + (m - mu_q)^T S^-1 (m - mu_q) - D
        + log det S - log det S_q)``: the gap between ``log p(x)`` and the ELBO."""
        mu, Sq = self._q(q_mean, q_cov)
        m, S = self.posterior(x)
        S_inv = torch.linalg.inv(S)
        diff = m - mu
        return 0.5 * (torch.trace(S_inv @ Sq) + diff @ S_inv @ diff - self.D
                      + torch.logdet(S) - torch.logdet(Sq))

    def elbo_monte_carlo(self, x, q_mean, q_cov, samples: int,
                         generator: torch.Generator | None = None) -> tuple[float, float]:
        """Monte-Carlo ELBO ``mean_l [log p(x|z_l) + log p(z_l) - log q(z_l)]``, ``z_l ~ q``,
        and its standard error ``std / sqrt(L)``."""
        x = self._x(x)
        mu, S = self._q(q_mean, q_cov)
        _positive_int(samples, "samples")
        if samples < 2:
            raise ValueError(f"samples: a standard error needs at least 2 samples, got {samples}")
        L = torch.linalg.cholesky(S)
        eps = torch.randn(samples, self.D, generator=generator, dtype=torch.float64)
        z = mu + eps @ L.T
        mean_x = z @ self.W.T + self.b
        log_px_z = -0.5 * (self.d * math.log(2 * math.pi * self.sigma2)
                           + (x - mean_x).pow(2).sum(-1) / self.sigma2)
        log_q = -0.5 * (self.D * LOG_2PI + 2 * L.diagonal().log().sum() + eps.pow(2).sum(-1))
        terms = log_px_z + gaussian_log_prob(z) - log_q
        return terms.mean().item(), (terms.std() / math.sqrt(samples)).item()


# ---------------------------------------------------------------------------------------------
# 6. Gradient estimators: reparameterisation vs score function (REINFORCE)
# ---------------------------------------------------------------------------------------------


def _estimator_args(mu, sigma, samples, repeats):
    for value, name in ((mu, "mu"), (sigma, "sigma")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if not sigma > 0:
        raise ValueError(f"sigma: expected a number > 0, got {sigma!r}")
    _positive_int(samples, "samples")
    _positive_int(repeats, "repeats")


def reparam_gradient(f, mu: float, sigma: float, samples: int, repeats: int = 1,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterisation estimates of ``d/d(mu, sigma) E_{z ~ N(mu, sigma^2)}[f(z)]``:
    ``(1/L) sum_l grad_{mu, sigma} f(mu + sigma eps_l)``, ``eps_l ~ N(0, 1)``.

    ``f`` maps a tensor elementwise. Returns ``[repeats, 2]``: ``repeats`` independent estimates,
    each from ``samples`` draws (vectorised, one backward pass for all)."""
    _estimator_args(mu, sigma, samples, repeats)
    m = torch.full((repeats, 1), float(mu), dtype=torch.float64, requires_grad=True)
    s = torch.full((repeats, 1), float(sigma), dtype=torch.float64, requires_grad=True)
    eps = torch.randn(repeats, samples, generator=generator, dtype=torch.float64)
    f(m + s * eps).mean(1).sum().backward()
    return torch.cat([m.grad, s.grad], 1)


@torch.no_grad()
def score_function_gradient(f, mu: float, sigma: float, samples: int, repeats: int = 1,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Score-function (REINFORCE; Williams 1992) estimates of the same gradient:
    ``(1/L) sum_l f(z_l) grad log N(z_l; mu, sigma^2)`` with
    ``d/dmu log N = (z - mu) / sigma^2`` and ``d/dsigma log N = ((z - mu)^2 - sigma^2) / sigma^3``.

    It needs only values of ``f``, not its gradient, and has a much larger variance. ``[repeats, 2]``."""
    _estimator_args(mu, sigma, samples, repeats)
    z = mu + sigma * torch.randn(repeats, samples, generator=generator, dtype=torch.float64)
    fz = f(z)
    d_mu = (z - mu) / sigma**2
    d_sigma = ((z - mu) ** 2 - sigma**2) / sigma**3
    return torch.stack([(fz * d_mu).mean(1), (fz * d_sigma).mean(1)], 1)


def gradient_variance_study(f, mu: float, sigma: float, sample_sizes=(1, 4, 16, 64, 256),
                            repeats: int = 2000, generator: torch.Generator | None = None) -> dict:
    """For each number of samples ``L``: the mean and variance over ``repeats`` estimates of both
    estimators. Returns ``{"samples": [...], "reparam_mean": [L, 2], "reparam_var": [L, 2],
    "score_mean": ..., "score_var": ...}`` (rows follow ``sample_sizes``; columns mu, sigma)."""
    out = {"samples": list(sample_sizes)}
    rows = {key: [] for key in ("reparam_mean", "reparam_var", "score_mean", "score_var")}
    for L in sample_sizes:
        for name, estimator in (("reparam", reparam_gradient), ("score", score_function_gradient)):
            g = estimator(f, mu, sigma, L, repeats, generator)
            rows[f"{name}_mean"].append(g.mean(0))
            rows[f"{name}_var"].append(g.var(0))
    out.update({key: torch.stack(value) for key, value in rows.items()})
    return out


# ---------------------------------------------------------------------------------------------
# 7. Looking at the latent space
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_mean(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None,
                batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of ``q(z|x)`` for every image, ``[N, D]`` each, in batches."""
    _images(x)
    model.eval()
    parts = [model.encode(x[i:i + batch_size], None if y is None else y[i:i + batch_size])
             for i in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def normal_grid(n: int = 15, lo: float = 0.05, hi: float = 0.95) -> torch.Tensor:
    """An ``n x n`` grid of 2-D latents ``[n * n, 2]`` through the inverse Gaussian CDF of equally
    spaced probabilities in ``[lo, hi]`` (Kingma and Welling 2014, figure 4): equal prior mass
    per cell. Rows run from high to low ``z_2``, so the picture reads like a plot."""
    _positive_int(n, "n")
    if not 0 < lo < hi < 1:
        raise ValueError(f"lo, hi: expected 0 < lo < hi < 1, got {lo!r}, {hi!r}")
    u = torch.linspace(lo, hi, n)
    v = torch.distributions.Normal(0.0, 1.0).icdf(u)
    z2, z1 = torch.meshgrid(v.flip(0), v, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)


def traversal(model: VAE, z: torch.Tensor, dim: int, values, y: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Decode copies of one latent ``z`` ``[D]`` with coordinate ``dim`` set to each of ``values``:
    the mean images ``[len(values), 1, 28, 28]``."""
    _tensor(z, "z", ndim=1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < len(z):
        raise ValueError(f"dim: expected an int in [0, {len(z)}), got {dim!r}")
    values = torch.as_tensor(values, dtype=z.dtype)
    zs = z.repeat(len(values), 1)
    zs[:, dim] = values
    return model.sample(len(values), y=y, z=zs)


@torch.no_grad()
def interpolate(model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decode ``(1 - t) mu(x_a) + t mu(x_b)`` for ``t`` in ``[0, 1]``: ``[steps, 1, 28, 28]``."""
    _positive_int(steps, "steps")
    mu, _ = encode_mean(model, torch.stack([_images(x_a[None], "x_a")[0],
                                            _images(x_b[None], "x_b")[0]]))
    t = torch.linspace(0, 1, steps)[:, None]
    return model.sample(steps, z=(1 - t) * mu[0] + t * mu[1])


def aggregate_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                          chunk: int = 2048) -> torch.Tensor:
    """``log q(z) = log (1/N) sum_n N(z; mu_n, diag exp(logvar_n))``, the aggregate posterior
    (the encoder's distribution of codes over the data set; Makhzani et al. 2016, Hoffman and
    Johnson 2016) at each point of ``z`` ``[M, D]`` -> ``[M]``. ``mu``, ``logvar`` ``[N, D]``."""
    _tensor(z, "z", ndim=2)
    _tensor(mu, "mu", ndim=2)
    _same_shape(mu, logvar, ("mu", "logvar"))
    if z.shape[1] != mu.shape[1]:
        raise ValueError(f"z: expected {mu.shape[1]} columns like mu, got {tuple(z.shape)}")
    out = [torch.logsumexp(gaussian_log_prob(z[i:i + chunk, None], mu, logvar), 1)
           for i in range(0, len(z), chunk)]
    return torch.cat(out) - math.log(len(mu))


def prior_holes(mu: torch.Tensor, logvar: torch.Tensor, samples: int = 5000, ratio: float = 0.1,
                generator: torch.Generator | None = None) -> float:
    """The share of prior draws ``z ~ N(0, I)`` that fall where the aggregate posterior is much
    thinner than the prior, ``q(z) < ratio * p(z)``: regions the decoder was rarely trained on,
    whose samples tend to look unlike any digit."""
    _positive_int(samples, "samples")
    z = torch.randn(samples, mu.shape[1], generator=generator)
    return (aggregate_log_density(z, mu, logvar) < math.log(ratio) + gaussian_log_prob(z)
            ).float().mean().item()


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """The number of latent dimensions in use: ``Var_x(E_q[z_j | x]) > threshold`` over a data
    set's encoder means ``mu`` ``[N, D]`` (Burda et al. 2016, section 5.2)."""
    _tensor(mu, "mu", ndim=2)
    if len(mu) < 2:
        raise ValueError(f"mu: expected at least 2 rows to measure a variance, got {len(mu)}")
    return int((mu.var(0) > threshold).sum())


def far_from_codes(z: torch.Tensor, codes: torch.Tensor, factor: float = 3.0) -> float:
    """The share of points ``z`` ``[M, D]`` farther from every code in ``codes`` ``[N, D]`` than
    ``factor`` times the median nearest-neighbour distance among the codes themselves.

    A scale-free way to ask how many prior draws land where the decoder has seen no training
    codes; it compares an autoencoder (codes without a known distribution) with a VAE."""
    _tensor(z, "z", ndim=2)
    _tensor(codes, "codes", ndim=2)
    if len(codes) < 2 or z.shape[1] != codes.shape[1]:
        raise ValueError(f"codes: expected at least 2 rows with {z.shape[1]} columns like z, "
                         f"got {tuple(codes.shape)}")
    own = torch.cdist(codes, codes)
    own.fill_diagonal_(float("inf"))
    spacing = own.min(1).values.median()
    return (torch.cdist(z, codes).min(1).values > factor * spacing).float().mean().item()


# ---------------------------------------------------------------------------------------------
# The shipped lesson-02 VAE (lesson 03 compares PixelCNN against it)
# ---------------------------------------------------------------------------------------------


def reference_vae() -> VAE:
    """Lesson 02's main VAE (conv decoder, 32 latent dimensions, the smoke recipe with seed 0,
    trained on the offline training split), shipped with the package in half precision and
    returned in float32, in eval mode. ``scripts/train_reference_vae.py`` rebuilds it."""
    if not REFERENCE_WEIGHTS.is_file():
        raise FileNotFoundError(f"reference VAE weights missing at {REFERENCE_WEIGHTS}; "
                                f"run scripts/train_reference_vae.py to rebuild them")
    state = torch.load(REFERENCE_WEIGHTS, map_location="cpu", weights_only=True)["model"]
    model = VAE(latent_dim=32, decoder="conv")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def save_reference(state: dict, path: pathlib.Path | None = None) -> pathlib.Path:
    """Write the reference VAE's state dict atomically (see :func:`train.save_checkpoint`)."""
    return train.save_checkpoint(path or REFERENCE_WEIGHTS, model=state)
