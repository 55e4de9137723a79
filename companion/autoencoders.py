"""Autoencoders: linear AE and PCA, convolutional AE, denoising, pretraining for few labels,
perceptual loss and super-resolution (lesson 01).

An autoencoder maps an image ``x`` through an encoder ``f`` to a low-dimensional code
``z = f(x)`` (the bottleneck) and back through a decoder ``g`` to a reconstruction
``x_hat = g(z)``; training minimises the reconstruction error ``L(x, g(f(x)))`` on unlabelled data.

- Linear AE with squared error = PCA (Baldi and Hornik 1989): the optimum spans the top-``k``
  principal subspace, so the SVD gives the best error any linear AE can reach.
- Denoising AE (Vincent et al. 2008): reconstruct the clean ``x`` from a corrupted ``x_tilde``.
- Pretraining (Hinton and Salakhutdinov 2006; Erhan et al. 2010): train the AE on every image,
  drop the decoder, then train a classifier on the few labelled ones (linear probe or fine-tune).
- Perceptual (feature reconstruction) loss (Johnson et al. 2016):
  ``l_feat = 1 / (C_j H_j W_j) ||phi_j(y_hat) - phi_j(y)||^2`` with ``phi_j`` a pretrained network.
- Super-resolution with residual learning over an upsampled input (Kim et al. 2016, VDSR).

Images are ``[N, 1, 28, 28]`` floats in [0, 1] throughout; decoders end in a sigmoid.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from companion import train
from companion._checks import images as _images
from companion._checks import positive_int as _positive_int
from companion._checks import probability as _probability
from companion._checks import tensor as _tensor
from companion.data import batches
from companion.train import adam  # noqa: F401 - re-exported: part of this module's API

# ---------------------------------------------------------------------------------------------
# 1. Linear autoencoder and PCA
# ---------------------------------------------------------------------------------------------


class LinearAutoencoder(nn.Module):
    """``x_hat = W_dec (W_enc (x - b) ) + b``: a linear encoder ``[d -> k]`` and decoder ``[k -> d]``.

    Trained with squared error, its best reconstruction error equals PCA's with ``k`` components
    and its decoder columns span the top-``k`` principal subspace (Baldi and Hornik 1989), though
    they need not be orthogonal or the principal directions themselves. Inputs ``[N, d]``.
    """

    def __init__(self, d: int, k: int):
        super().__init__()
        _positive_int(d, "d")
        _positive_int(k, "k")
        if k > d:
            raise ValueError(f"k: expected a code no larger than the input (k <= d = {d}), got {k}")
        self.encoder = nn.Linear(d, k)
        self.decoder = nn.Linear(k, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` principal components of ``x`` ``[N, d]`` by the SVD of the centred data.

    ``x - mean = U S V^T``; the rows of ``V^T[:k]`` are the principal directions. Returns
    ``(components [k, d], mean [d], variances [d])`` where ``variances = S^2 / N`` are the
    eigenvalues of the (biased) covariance, largest first.
    """
    _tensor(x, "x", ndim=2)
    _positive_int(k, "k")
    if k > min(x.shape):
        raise ValueError(f"k: expected at most min(N, d) = {min(x.shape)} components, got {k}")
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return vh[:k], mean, s**2 / len(x)


def pca_reconstruct(x: torch.Tensor, components: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Project ``x`` ``[N, d]`` onto the principal subspace and back: ``mean + (x - mean) V V^T``."""
    return mean + (x - mean) @ components.T @ components


def pca_error(x: torch.Tensor, k: int) -> float:
    """The smallest mean squared error (per entry) any rank-``k`` linear reconstruction reaches:
    the sum of the discarded covariance eigenvalues divided by ``d`` (Eckart-Young)."""
    _, _, variances = pca(x, k)
    return float(variances[k:].sum() / x.shape[1])


def principal_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of ``a`` ``[d, k]`` and
    ``b`` ``[d, k]``: the singular values of ``Q_a^T Q_b`` (Bjorck and Golub 1973). All ones
    means the two spans are the same subspace."""
    _tensor(a, "a", ndim=2)
    _tensor(b, "b", ndim=2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"b: expected {a.shape[0]} rows like a, got shape {tuple(b.shape)}")
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    return torch.linalg.svdvals(qa.T @ qb).clamp(max=1.0)


def train_linear_autoencoder(model: LinearAutoencoder, x: torch.Tensor, steps: int = 2000,
                             lr: float = 1e-2, batch_size: int = 256,
                             generator: torch.Generator | None = None) -> train.History:
    """Fit a :class:`LinearAutoencoder` to ``x`` ``[N, d]`` by Adam on the mean squared error."""
    _tensor(x, "x", ndim=2)
    opt = adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def step(xb):
        loss = F.mse_loss(model(xb), xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return loss

    return train.fit(step, lambda: batches(x, batch_size=batch_size, generator=generator),
                     steps=steps, desc="linear AE")


# ---------------------------------------------------------------------------------------------
# 2. Convolutional autoencoder
# ---------------------------------------------------------------------------------------------


class ConvEncoder(nn.Module):
    """``[N, 1, 28, 28] -> [N, code]``: two stride-2 convolutions (28 -> 14 -> 7), each with batch
    normalisation and a ReLU, and a linear map to the bottleneck."""

    def __init__(self, code: int = 16, width: int = 32):
        super().__init__()
        self.code = _positive_int(code, "code")
        _positive_int(width, "width")
        self.net = nn.Sequential(
            nn.Conv2d(1, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(),
            nn.Conv2d(width // 2, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Flatten(), nn.Linear(width * 49, code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``[N, code] -> [N, 1, 28, 28]`` in (0, 1): the encoder mirrored with transposed
    convolutions (7 -> 14 -> 28), batch normalisation (which keeps the final sigmoid out of
    saturation early in training) and a sigmoid."""

    def __init__(self, code: int = 16, width: int = 32):
        super().__init__()
        self.code = _positive_int(code, "code")
        _positive_int(width, "width")
        self.net = nn.Sequential(
            nn.Linear(code, width * 49), nn.Unflatten(1, (width, 7, 7)),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(),
            nn.ConvTranspose2d(width // 2, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPEncoder(nn.Module):
    """``[N, 1, 28, 28] -> [N, code]``: a fully connected encoder 784 -> hidden -> hidden/2 -> code
    (the deep autoencoder of Hinton and Salakhutdinov 2006, smaller)."""

    def __init__(self, code: int = 128, hidden: int = 512):
        super().__init__()
        self.code = _positive_int(code, "code")
        _positive_int(hidden, "hidden")
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """``[N, code] -> [N, 1, 28, 28]`` in (0, 1): :class:`MLPEncoder` mirrored, with a sigmoid."""

    def __init__(self, code: int = 128, hidden: int = 512):
        super().__init__()
        self.code = _positive_int(code, "code")
        _positive_int(hidden, "hidden")
        self.net = nn.Sequential(nn.Linear(code, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 784), nn.Sigmoid(),
                                 nn.Unflatten(1, (1, 28, 28)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Autoencoder(nn.Module):
    """An encoder and a decoder: ``encode(x) -> z [N, code]``, ``decode(z) -> x_hat``,
    ``forward(x) -> (x_hat, z)``. ``Autoencoder.conv(code)`` and ``Autoencoder.mlp(code)`` build
    the two architectures of the lesson."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def conv(cls, code: int = 16, width: int = 32) -> Autoencoder:
        return cls(ConvEncoder(code, width), ConvDecoder(code, width))

    @classmethod
    def mlp(cls, code: int = 128, hidden: int = 512) -> Autoencoder:
        return cls(MLPEncoder(code, hidden), MLPDecoder(code, hidden))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(_images(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


def autoencoder_loss(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor,
                     x_in: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass and reconstruction loss: ``x_hat = g(f(x_in))`` and
    ``L = 1/(N D) sum_n ||x_n - x_hat_n||^2`` (the per-pixel mean squared error).

    ``x_in`` is the encoder's input: ``x`` itself for a plain AE, a corrupted copy for a denoising
    AE (the target stays the clean ``x``). Returns ``(x_hat, loss)``.
    """
    _tensor(x, "x")
    x_in = x if x_in is None else _tensor(x_in, "x_in")
    if x_in.shape != x.shape:
        raise ValueError(f"x_in: expected the shape of x {tuple(x.shape)}, got {tuple(x_in.shape)}")
    x_hat = decoder(encoder(x_in))
    return x_hat, F.mse_loss(x_hat, x)


def train_autoencoder(model: Autoencoder, x: torch.Tensor, steps: int, *, batch_size: int = 128,
                      lr: float = 2e-3, corrupt=None, generator: torch.Generator | None = None,
                      desc: str = "autoencoder") -> train.History:
    """Train ``model`` on images ``x`` by Adam on :func:`autoencoder_loss`.

    ``corrupt(x_batch, generator) -> x_tilde`` makes it a denoising autoencoder (for example
    ``lambda x, g: masking_corruption(x, 0.5, g)``).
    """
    _images(x)
    _positive_int(steps, "steps")
    opt = adam(model.parameters(), lr)
    model.train()

    def step(xb):
        x_in = corrupt(xb, generator) if corrupt is not None else xb
        _, loss = autoencoder_loss(model.encoder, model.decoder, xb, x_in)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    history = train.fit(step, lambda: batches(x, batch_size=batch_size, generator=generator),
                        steps=steps, desc=desc)
    model.eval()
    return history


@torch.no_grad()
def reconstruct(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``g(f(x))`` in evaluation mode, in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])


@torch.no_grad()
def encode(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``f(x)`` ``[N, code]`` in evaluation mode, in batches."""
    model.eval()
    return torch.cat([model.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# ---------------------------------------------------------------------------------------------
# 3. Denoising
# ---------------------------------------------------------------------------------------------


def gaussian_corruption(x: torch.Tensor, sigma: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise, clipped to the image range: ``clip(x + sigma * eps, 0, 1)``,
    ``eps ~ N(0, I)`` drawn by one ``torch.randn`` call with ``generator``."""
    _tensor(x, "x")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"sigma: expected a non-negative number, got {sigma!r}")
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * eps).clamp(0.0, 1.0)


def masking_corruption(x: torch.Tensor, p: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise (Vincent et al. 2008): each pixel is set to 0 independently with probability
    ``p``. ``u ~ U(0, 1)`` from one ``torch.rand`` call with ``generator``; pixels with
    ``u < p`` are dropped."""
    _tensor(x, "x")
    p = _probability(p, "p")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x * (u >= p)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(R^2 / MSE)`` in dB, averaged over the
    batch. ``x_hat`` and ``x``: ``[N, ...]`` of the same shape; higher is better."""
    _tensor(x_hat, "x_hat")
    _tensor(x, "x")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat: expected the shape of x {tuple(x.shape)}, "
                         f"got {tuple(x_hat.shape)}")
    mse = (x_hat - x).pow(2).reshape(len(x), -1).mean(1).clamp_min(1e-12)
    return (10 * torch.log10(data_range**2 / mse)).mean()


def denoising_sweep(model: Autoencoder, x: torch.Tensor, corrupt, levels,
                    seed: int = 0) -> dict[str, list[float]]:
    """PSNR (dB) of the corrupted images and of the model's reconstructions of them, against the
    clean ``x``, at each noise level: ``corrupt(x, level, generator)``. Returns
    ``{"noisy": [...], "denoised": [...]}``, one value per level."""
    _images(x)
    out = {"noisy": [], "denoised": []}
    for level in levels:
        noisy = corrupt(x, level, torch.Generator().manual_seed(seed))
        out["noisy"].append(float(psnr(noisy, x)))
        out["denoised"].append(float(psnr(reconstruct(model, noisy), x)))
    return out


# ---------------------------------------------------------------------------------------------
# 4. Pretraining for few labels: linear probe and fine-tuning
# ---------------------------------------------------------------------------------------------


def labelled_subset(labels: torch.Tensor, per_class: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class in ``labels`` ``[N]``."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise TypeError("labels: expected a 1-D torch.Tensor of class indices")
    _positive_int(per_class, "per_class")
    picked = []
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"per_class: class {c} has only {len(members)} examples, "
                             f"asked for {per_class}")
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picked)


class EncoderClassifier(nn.Module):
    """A classifier made of an encoder ``[N, 1, 28, 28] -> [N, code]`` and a head: dropout
    (Srivastava et al. 2014) and one linear layer ``[N, code] -> [N, classes]`` (logits)."""

    def __init__(self, encoder: nn.Module, code: int, classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(_probability(dropout, "dropout")),
                                  nn.Linear(_positive_int(code, "code"),
                                            _positive_int(classes, "classes")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def linear_probe_step(encoder: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One training step of a linear probe: the encoder stays frozen (features computed without
    gradients), only the head learns by cross-entropy. Returns the loss (detached)."""
    with torch.no_grad():
        features = encoder(x)
    loss = F.cross_entropy(head(features), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


MODES = ("scratch", "probe", "finetune")


def fit_classifier(encoder: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, *,
                   steps: int = 300, lr: float = 1e-3, batch_size: int = 128,
                   dropout: float = 0.5, mask: float = 0.2,
                   generator: torch.Generator | None = None) -> EncoderClassifier:
    """Train a classifier on labelled ``(x, y)`` from ``encoder`` (which is copied, never changed).

    - ``"scratch"``: the encoder's architecture with fresh random weights, all trained.
    - ``"probe"``: the pretrained encoder frozen, the head trained (:func:`linear_probe_step`).
    - ``"finetune"``: the pretrained encoder and the head trained together.

    Every mode uses the same recipe: Adam, ``steps`` steps on random minibatches of at most
    ``batch_size`` labelled images, dropout before the linear layer, and masking noise with
    probability ``mask`` on the inputs as augmentation. Returns the classifier in eval mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    _images(x)
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
        raise ValueError(f"y: expected a label tensor of shape [{len(x)}]")
    if not hasattr(encoder, "code"):
        raise TypeError("encoder: expected an encoder with a `code` attribute (its output size), "
                        "such as MLPEncoder or ConvEncoder")
    encoder = copy.deepcopy(encoder)
    if mode == "scratch":
        for module in encoder.modules():
            if hasattr(module, "reset_parameters") and module is not encoder:
                module.reset_parameters()
    model = EncoderClassifier(encoder, encoder.code, dropout=dropout)
    frozen = mode == "probe"
    encoder.requires_grad_(not frozen)
    model.train()
    if frozen:
        encoder.eval()
    opt = adam(model.head.parameters() if frozen else model.parameters(), lr)
    for _ in range(_positive_int(steps, "steps")):
        idx = torch.randperm(len(x), generator=generator)[:batch_size]
        xb = masking_corruption(x[idx], mask, generator) if mask else x[idx]
        if frozen:
            linear_probe_step(encoder, model.head, opt, xb, y[idx])
        else:
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of ``x`` that ``model`` (logits) classifies as ``y``, in percent."""
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return 100.0 * correct / len(x)


def pretraining_study(encoder: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                      y_test: torch.Tensor, per_class=(1, 5, 10, 50), seeds=(0, 1, 2),
                      modes=MODES, steps: int = 300, lr: float = 1e-3) -> dict:
    """Test accuracy (%) of each mode at each number of labels per class, for each seed.

    A seed picks the labelled subset and the scratch initialisation, and all modes of a seed see
    the same labelled images. Returns ``{mode: {per_class: [accuracy per seed]}}``.
    """
    results = {mode: {k: [] for k in per_class} for mode in modes}
    for k in per_class:
        for seed in seeds:
            g = torch.Generator().manual_seed(1000 * k + seed)
            idx = labelled_subset(y, k, g)
            for mode in modes:
                torch.manual_seed(seed)
                model = fit_classifier(encoder, x[idx], y[idx], mode, steps=steps, lr=lr,
                                       generator=torch.Generator().manual_seed(seed))
                results[mode][k].append(accuracy(model, x_test, y_test))
    return results


# ---------------------------------------------------------------------------------------------
# 5. Perceptual loss and super-resolution
# ---------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """``phi_j``: the first ``blocks`` convolution blocks of the shipped MNIST classifier
    (:mod:`companion.metrics.classifier`), frozen. ``[N, 1, 28, 28] in [0, 1] -> [N, C_j, H_j, W_j]``
    (blocks=1: 32x28x28, 2: 64x14x14, 3: 64x14x14, 4: 128x7x7)."""

    def __init__(self, blocks: int = 2):
        super().__init__()
        from companion.metrics.classifier import load_classifier

        if blocks not in (1, 2, 3, 4):
            raise ValueError(f"blocks: expected 1, 2, 3 or 4, got {blocks!r}")
        body = copy.deepcopy(load_classifier("cpu").body)
        self.net = body[:blocks].eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # batch-norm statistics stay those of the trained network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)  # the classifier's input convention


def perceptual_loss(phi: nn.Module, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Feature reconstruction loss (Johnson et al. 2016), averaged over the batch:
    ``l_feat = 1/(C_j H_j W_j) ||phi_j(y_hat) - phi_j(y)||_2^2``.

    The target's features carry no gradient; gradients flow to ``y_hat`` through ``phi``.
    """
    _tensor(y_hat, "y_hat")
    _tensor(y, "y")
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat: expected the shape of y {tuple(y.shape)}, got {tuple(y_hat.shape)}")
    with torch.no_grad():
        target = phi(y)
    return F.mse_loss(phi(y_hat), target)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, 28, 28] -> [N, 1, 14, 14]`` by 2x2 average pooling (the low-resolution input)."""
    return F.avg_pool2d(_images(x), 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, 14, 14] -> [N, 1, 28, 28]`` by bicubic interpolation, clipped to [0, 1]."""
    _images(x, size=14)
    return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)


class SuperResolution(nn.Module):
    """2x super-resolution ``[N, 1, 14, 14] -> [N, 1, 28, 28]``.

    The low-resolution image is upsampled bicubically to ``u``; a small CNN ``r`` then predicts
    either the residual, ``y_hat = u + r(u)`` (``residual=True``, as in VDSR, Kim et al. 2016), or
    the image directly, ``y_hat = sigmoid(r(u))``.
    """

    def __init__(self, width: int = 32, depth: int = 3, residual: bool = True):
        super().__init__()
        _positive_int(width, "width")
        if _positive_int(depth, "depth") < 2:
            raise ValueError(f"depth: expected at least 2 convolutions, got {depth}")
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.residual = bool(residual)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return sr_forward(self.net, low, self.residual)


def sr_forward(net: nn.Module, low: torch.Tensor, residual: bool) -> torch.Tensor:
    """The super-resolution forward pass: ``u = upsample(low)``; ``u + net(u)`` if ``residual``,
    else ``sigmoid(net(u))``."""
    u = upsample(low)
    out = net(u)
    return u + out if residual else torch.sigmoid(out)


def train_super_resolution(model: SuperResolution, x: torch.Tensor, steps: int, *,
                           loss: str = "l2", phi: nn.Module | None = None,
                           pixel_weight: float = 0.0, batch_size: int = 64, lr: float = 1e-3,
                           generator: torch.Generator | None = None) -> train.History:
    """Train ``model`` to map ``downsample(x)`` to ``x`` with the ``"l2"`` (mean squared error) or
    the ``"perceptual"`` loss (:func:`perceptual_loss` with ``phi``, plus ``pixel_weight`` times
    the mean squared error). The history records the loss it trains on and the pixel MSE."""
    _images(x)
    if loss not in ("l2", "perceptual"):
        raise ValueError(f"loss: expected 'l2' or 'perceptual', got {loss!r}")
    if loss == "perceptual" and phi is None:
        raise ValueError("phi: the perceptual loss needs a feature network phi")
    opt = adam(model.parameters(), lr)

    def step(xb):
        y_hat = model(downsample(xb))
        mse = F.mse_loss(y_hat, xb)
        objective = mse if loss == "l2" else perceptual_loss(phi, y_hat, xb) + pixel_weight * mse
        opt.zero_grad()
        objective.backward()
        opt.step()
        return {"loss": objective, "mse": mse}

    history = train.fit(step, lambda: batches(x, batch_size=batch_size, generator=generator),
                        steps=steps, log_every=5, desc=f"super-resolution ({loss})")
    model.eval()
    return history


@torch.no_grad()
def super_resolve(model: SuperResolution, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The model's 28x28 reconstruction of ``downsample(x)``, clipped to [0, 1]."""
    model.eval()
    return torch.cat([model(downsample(x[i:i + batch_size])).clamp(0, 1)
                      for i in range(0, len(x), batch_size)])


def code_grid(decoder: nn.Module, lo: torch.Tensor, hi: torch.Tensor, n: int = 12) -> torch.Tensor:
    """Decode an ``n x n`` grid of 2-D codes spanning ``lo`` to ``hi`` (each ``[2]``); returns
    ``[n*n, 1, 28, 28]``, rows going down the second coordinate."""
    _positive_int(n, "n")
    a = torch.linspace(float(lo[0]), float(hi[0]), n)
    b = torch.linspace(float(hi[1]), float(lo[1]), n)
    z = torch.stack(torch.meshgrid(b, a, indexing="ij")[::-1], -1).reshape(-1, 2)
    with torch.no_grad():
        return decoder(z)


