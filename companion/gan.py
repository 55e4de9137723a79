"""Generative adversarial networks: the game, its losses, and the pieces of a GAN (lesson 04).

A generator ``G`` maps noise ``z ~ p(z)`` to samples; a discriminator ``D`` outputs the probability
that its input is real. They play (Goodfellow et al. 2014)

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 - D(G(z)))].

For a fixed ``G`` the best discriminator is ``D*(x) = p_data(x) / (p_data(x) + p_G(x))``, and then
``V(D*, G) = 2 JSD(p_data || p_G) - log 4``: the generator minimises a Jensen-Shannon divergence.

Discriminators here return *logits* ``l`` with ``D = sigmoid(l)``, so every loss is written with
``softplus`` (``log(1 + e^l)``) and stays finite where ``D`` rounds to 0 or 1:
``log D = -softplus(-l)`` and ``log(1 - D) = -softplus(l)``.

So far the module holds the theory helpers on discrete distributions, the discriminator loss,
the registry of generator losses, spherical interpolation, the minibatch standard-deviation
layer, and the MLP and DCGAN networks (conditional variants) with DCGAN's initialisation. The
training step and loop, EMA of generator weights, the replay buffer and unrolled-D helpers follow
with lesson 04 (issue 7).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from companion._checks import probability as _probability
from companion._checks import tensor as _tensor

LOG_4 = math.log(4)

# ---------------------------------------------------------------------------------------------
# 1. The game on discrete distributions, where every quantity is exact
# ---------------------------------------------------------------------------------------------


def _distribution(p, name: str) -> torch.Tensor:
    _tensor(p, name, ndim=1)
    if (p < 0).any() or not torch.isclose(p.sum(), torch.ones((), dtype=p.dtype), atol=1e-6):
        raise ValueError(f"{name}: expected non-negative probabilities that sum to 1, "
                         f"got sum {float(p.sum()):.6g}")
    return p


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """``D*(x) = p_data(x) / (p_data(x) + p_G(x))`` (Goodfellow et al. 2014, Proposition 1);
    0.5 where both are 0 (outside both supports, any value is optimal). Works on densities or on
    the probabilities of discrete distributions, element by element."""
    _tensor(p_data, "p_data")
    _tensor(p_g, "p_g")
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_g: expected the shape of p_data {tuple(p_data.shape)}, "
                         f"got {tuple(p_g.shape)}")
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny),
                       torch.full_like(total, 0.5))


def value(p_data: torch.Tensor, p_g: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``V(D, G) = sum_x p_data(x) log D(x) + p_G(x) log(1 - D(x))`` for discrete distributions
    (terms with zero probability contribute 0)."""
    _distribution(p_data, "p_data")
    _distribution(p_g, "p_g")
    _tensor(d, "d", ndim=1)
    return torch.xlogy(p_data, d).sum() + torch.xlogy(p_g, 1 - d).sum()


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in nats, ``KL(p || m)/2 + KL(q || m)/2`` with ``m = (p + q)/2``;
    between 0 and ``log 2``, which it reaches when the supports are disjoint."""
    _distribution(p, "p")
    _distribution(q, "q")
    m = (p + q) / 2
    kl = lambda a: (torch.xlogy(a, a) - torch.xlogy(a, m)).sum()     # noqa: E731
    return kl(p) / 2 + kl(q) / 2


# ---------------------------------------------------------------------------------------------
# 2. Losses, computed from discriminator logits
# ---------------------------------------------------------------------------------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       real_target: float = 1.0) -> torch.Tensor:
    """The discriminator's loss, ``-E[log D(x)] - E[log(1 - D(G(z)))]`` (the negated value
    function), as binary cross-entropy with targets ``real_target`` for real and 0 for fake.

    ``real_target = 0.9`` is *one-sided label smoothing* (Salimans et al. 2016): it keeps ``D``
    from growing over-confident on real data; the fake targets stay at 0, since smoothing them
    would reward the generator for staying where it is.
    """
    _tensor(real_logits, "real_logits")
    _tensor(fake_logits, "fake_logits")
    _probability(real_target, "real_target")
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits,
                                                                           real_target))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


GENERATOR_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def register_generator_loss(name: str):
    """Add a generator loss ``fake_logits -> scalar`` to :data:`GENERATOR_LOSSES` (later lessons
    add theirs, such as the Wasserstein loss, the same way)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier, got {name!r}")

    def wrap(fn):
        if name in GENERATOR_LOSSES:
            raise ValueError(f"name: a generator loss {name!r} is already registered")
        GENERATOR_LOSSES[name] = fn
        return fn

    return wrap


@register_generator_loss("minimax")
def minimax_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``E[log(1 - D(G(z)))]``, minimised: the generator's side of the original game. It
    *saturates*: when ``D`` rejects the fakes (``D -> 0``, early in training) its gradient
    vanishes."""
    return -F.softplus(_tensor(fake_logits, "fake_logits")).mean()


@register_generator_loss("non_saturating")
def non_saturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E[log D(G(z))]``: the heuristic of Goodfellow et al. (2014). Same fixed point, but
    strong gradients exactly where the minimax loss has none."""
    return F.softplus(-_tensor(fake_logits, "fake_logits")).mean()


@register_generator_loss("maximum_likelihood")
def maximum_likelihood_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E[D/(1 - D)] = -E[exp(l)]``: with an optimal ``D`` its expected gradient is that of
    ``KL(p_data || p_G)``, maximum likelihood (Goodfellow 2014, "On distinguishability criteria";
    NIPS 2016 tutorial, up to its factor 1/2). Its gradient comes almost only from samples that
    ``D`` already believes, so it is high-variance in practice."""
    return -torch.exp(_tensor(fake_logits, "fake_logits")).mean()


def generator_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The registered generator loss ``name`` on ``fake_logits``."""
    if name not in GENERATOR_LOSSES:
        raise ValueError(f"name: expected one of {', '.join(sorted(GENERATOR_LOSSES))}, "
                         f"got {name!r}")
    return GENERATOR_LOSSES[name](fake_logits)


# ---------------------------------------------------------------------------------------------
# 3. Latent interpolation and minibatch features
# ---------------------------------------------------------------------------------------------


def slerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents):

        slerp(z0, z1; t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1,
        cos w = <z0, z1> / (|z0| |z1|),

    along the last dimension. High-dimensional Gaussian codes lie near a sphere of radius
    ``sqrt(d)``; a straight line between two of them passes through the low-norm interior, which
    the generator never saw in training, while slerp stays at their norm. ``z0, z1``: ``[..., d]``;
    ``t``: a number or a tensor broadcastable to ``[...]``. Falls back to the straight line when
    the codes are (nearly) parallel.
    """
    _tensor(z0, "z0")
    _tensor(z1, "z1")
    if z0.shape != z1.shape:
        raise ValueError(f"z1: expected the shape of z0 {tuple(z0.shape)}, got {tuple(z1.shape)}")
    t = torch.as_tensor(t, dtype=z0.dtype)[..., None]
    cos = F.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1)[..., None]
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    curved = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / safe
    return torch.where(parallel, (1 - t) * z0 + t * z1, curved)


class MinibatchStdDev(nn.Module):
    """Append the minibatch standard deviation as one extra feature map (Karras et al. 2018):
    the standard deviation of each feature over the batch, averaged to one number, broadcast to a
    ``[N, 1, H, W]`` channel. A collapsed generator produces a batch with little variation, which
    the discriminator can now see. ``[N, C, H, W] -> [N, C + 1, H, W]`` (or ``[N, F] -> [N, F + 1]``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _tensor(x, "x")
        if x.shape[0] < 2:
            raise ValueError(f"x: the minibatch standard deviation needs at least 2 samples, "
                             f"got a batch of {x.shape[0]}")
        std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-8).mean()
        extra = std.expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)



# ---------------------------------------------------------------------------------------------
# 4. Generators and discriminators for 28x28 images in [-1, 1]
# ---------------------------------------------------------------------------------------------


def _one_hot(labels, num_classes, n: int, name: str = "labels") -> torch.Tensor | None:
    if num_classes is None:
        if labels is not None:
            raise ValueError(f"{name}: this network is unconditional; build it with "
                             f"num_classes=... to condition on labels")
        return None
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long:
        raise TypeError(f"{name}: a conditional network needs a torch.long tensor of class "
                        f"indices, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.shape != (n,) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{name}: expected {n} class indices in 0..{num_classes - 1}, got "
                         f"shape {tuple(labels.shape)}")
    return F.one_hot(labels, num_classes).float()


class MLPGenerator(nn.Module):
    """The fully connected generator of the lecture code: ``z [N, latent_dim]`` (with a one-hot
    label concatenated, for a conditional GAN; Mirza and Osindero 2014) through hidden layers with
    LeakyReLU(0.2) to ``tanh`` images ``[N, 1, 28, 28]`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, hidden=(256, 512, 1024),
                 num_classes: int | None = None):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        layers, width = [], latent_dim + (num_classes or 0)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 28 * 28), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(z, "z", ndim=2)
        y = _one_hot(labels, self.num_classes, len(z))
        h = z if y is None else torch.cat([z, y], 1)
        return self.net(h).view(-1, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    """The fully connected discriminator of the lecture code: images ``[N, 1, 28, 28]`` (with a
    one-hot label concatenated, when conditional) through LeakyReLU(0.2) layers to one logit per
    image, ``[N]``."""

    def __init__(self, hidden=(512, 256), num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        layers, width = [], 28 * 28 + (num_classes or 0)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(x, "x", ndim=4)
        y = _one_hot(labels, self.num_classes, len(x))
        h = x.flatten(1) if y is None else torch.cat([x.flatten(1), y], 1)
        return self.net(h).squeeze(1)


class DCGANGenerator(nn.Module):
    """DCGAN's generator (Radford et al. 2016) adapted to 28x28: a projection of ``z`` reshaped to
    ``[N, 2c, 7, 7]``, then two stride-2 transposed convolutions (7 -> 14 -> 28), batch norm and
    ReLU inside, ``tanh`` at the output; no pooling and no fully connected hidden layer.
    ``z [N, latent_dim]`` (+ labels) -> ``[N, 1, 28, 28]`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, channels: int = 64, num_classes: int | None = None):
        super().__init__()
        self.latent_dim, self.num_classes, c = latent_dim, num_classes, channels
        self.project = nn.Sequential(nn.Linear(latent_dim + (num_classes or 0), 2 * c * 7 * 7,
                                               bias=False),
                                     nn.Unflatten(1, (2 * c, 7, 7)), nn.BatchNorm2d(2 * c),
                                     nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(z, "z", ndim=2)
        y = _one_hot(labels, self.num_classes, len(z))
        return self.net(self.project(z if y is None else torch.cat([z, y], 1)))


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator adapted to 28x28: stride-2 convolutions (28 -> 14 -> 7) with
    LeakyReLU(0.2), batch norm on the second, optionally a :class:`MinibatchStdDev` channel, and a
    7x7 convolution to one logit, ``[N]``. A conditional discriminator receives the label as
    ``num_classes`` constant one-hot planes beside the image."""

    def __init__(self, channels: int = 64, num_classes: int | None = None,
                 minibatch_std: bool = False):
        super().__init__()
        self.num_classes, c = num_classes, channels
        self.net = nn.Sequential(
            nn.Conv2d(1 + (num_classes or 0), c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            *([MinibatchStdDev()] if minibatch_std else []),
            nn.Conv2d(2 * c + int(minibatch_std), 1, 7))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(x, "x", ndim=4)
        y = _one_hot(labels, self.num_classes, len(x))
        if y is not None:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation (Radford et al. 2016): convolution and linear weights from
    N(0, 0.02), batch-norm scales from N(1, 0.02), biases 0. Use as ``model.apply(dcgan_init)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module
