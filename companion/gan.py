"""Generative adversarial networks: the game, its losses, and the pieces of a GAN (lesson 04).

A generator ``G`` maps noise ``z ~ p(z)`` to samples; a discriminator ``D`` outputs the probability
that its input is real. They play (Goodfellow et al. 2014)

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 - D(G(z)))].

For a fixed ``G`` the best discriminator is ``D*(x) = p_data(x) / (p_data(x) + p_G(x))``, and then
``V(D*, G) = 2 JSD(p_data || p_G) - log 4``: the generator minimises a Jensen-Shannon divergence.

Discriminators here return *logits* ``l`` with ``D = sigmoid(l)``, so every loss is written with
``softplus`` (``log(1 + e^l)``) and stays finite where ``D`` rounds to 0 or 1:
``log D = -softplus(-l)`` and ``log(1 - D) = -softplus(l)``.

Contents: (1) the game on discrete distributions (D*, V, JSD); (2) the discriminator loss and a
registry of generator losses that later lessons add to; (3) slerp and the minibatch standard
deviation layer; (4) MLP and DCGAN generators and discriminators with conditional variants and
DCGAN's initialisation; (5) small networks for toy data and mode coverage; (6) training: the
alternating step with k discriminator steps, a replay buffer, the unrolled-discriminator loss,
the loop with EMA of generator weights, and a discriminator trained against a fixed generator.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from companion import train as _train
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
    7x7 convolution to one logit, ``[N]``.

    A conditional discriminator (``num_classes``) receives the label in one of two ways:
    ``condition="concat"`` stacks it as ``num_classes`` constant one-hot planes beside the image
    (Mirza and Osindero 2014's concatenation, carried to convolutions); ``condition="projection"``
    adds the inner product of a learned class embedding with the final features,
    ``D(x, y) = psi(phi(x)) + <e_y, phi(x)>`` (Miyato and Koyama 2018), which conditions far
    more strongly for the same cost.
    """

    def __init__(self, channels: int = 64, num_classes: int | None = None,
                 minibatch_std: bool = False, condition: str = "concat"):
        super().__init__()
        if condition not in ("concat", "projection"):
            raise ValueError(f"condition: expected 'concat' or 'projection', got {condition!r}")
        self.num_classes, self.condition, c = num_classes, condition, channels
        planes = num_classes if (num_classes and condition == "concat") else 0
        self.features = nn.Sequential(
            nn.Conv2d(1 + planes, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            *([MinibatchStdDev()] if minibatch_std else []))
        width = 2 * c + int(minibatch_std)
        self.head = nn.Conv2d(width, 1, 7)
        self.embed = (nn.Embedding(num_classes, width * 7 * 7)
                      if num_classes and condition == "projection" else None)
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _tensor(x, "x", ndim=4)
        y = _one_hot(labels, self.num_classes, len(x))
        if y is not None and self.embed is None:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        h = self.features(x)
        out = self.head(h).flatten()
        if self.embed is not None:
            out = out + (self.embed(labels) * h.flatten(1)).sum(1)
        return out


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


# ---------------------------------------------------------------------------------------------
# 5. Small networks for 1-D and 2-D toy data
# ---------------------------------------------------------------------------------------------


class ToyGenerator(nn.Module):
    """A fully connected generator for low-dimensional toy data: ``z [N, latent_dim]`` through
    ``depth`` ReLU layers of width ``hidden`` to points ``[N, out_dim]`` (no output squashing)."""

    def __init__(self, latent_dim: int = 2, out_dim: int = 2, hidden: int = 128, depth: int = 2):
        super().__init__()
        self.latent_dim = latent_dim
        layers, width = [], latent_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, out_dim))

    def forward(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        _one_hot(labels, None, len(_tensor(z, "z", ndim=2)))
        return self.net(z)


class ToyDiscriminator(nn.Module):
    """A fully connected discriminator for toy data: points ``[N, in_dim]`` through ``depth``
    ReLU layers to one logit per point ``[N]``. With ``minibatch_std`` the batch's standard
    deviation is appended to the input (:class:`MinibatchStdDev`), so a batch that sits on one
    mode is told apart from real data by its spread alone."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 2,
                 minibatch_std: bool = False):
        super().__init__()
        layers, width = [MinibatchStdDev()] if minibatch_std else [], in_dim + int(minibatch_std)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        _one_hot(labels, None, len(_tensor(x, "x", ndim=2)))
        return self.net(x).squeeze(1)


def mode_coverage(samples: torch.Tensor, mixture, n_std: float = 3.0,
                  min_share: float = 0.01) -> dict:
    """How well ``samples [n, d]`` cover the modes of a Gaussian ``mixture`` (Metz et al. 2017;
    Srivastava et al. 2017). A sample is *high quality* when it lies within ``n_std`` standard
    deviations of its nearest mode; a mode is *covered* when at least ``min_share`` of all samples
    are high-quality samples assigned to it. Returns ``modes_covered``, ``high_quality`` (share)
    and ``per_mode`` (share of samples per mode, high-quality only)."""
    x = _tensor(samples, "samples", ndim=2).detach().double()
    means = mixture.means
    if x.shape[1] != means.shape[1]:
        raise ValueError(f"samples: expected points of dimension {means.shape[1]}, got "
                         f"{x.shape[1]}")
    dist = torch.cdist(x, means)                                         # [n, K]
    nearest = dist.argmin(1)
    good = dist.gather(1, nearest[:, None]).squeeze(1) <= n_std * mixture.stds[nearest]
    per_mode = torch.bincount(nearest[good], minlength=len(means)).double() / len(x)
    return {"modes_covered": int((per_mode >= min_share).sum()),
            "high_quality": float(good.double().mean()), "per_mode": per_mode.tolist()}


# ---------------------------------------------------------------------------------------------
# 6. Training: alternating updates, replay buffer, unrolled discriminator, the loop
# ---------------------------------------------------------------------------------------------


def sample_latent(n: int, latent_dim: int, generator: torch.Generator | None = None,
                  device=None) -> torch.Tensor:
    """Gaussian codes ``z ~ N(0, I)``, ``[n, latent_dim]`` (a Gaussian, not a uniform, prior is
    one of the practical tips: it makes slerp meaningful and has no corners)."""
    return torch.randn(n, latent_dim, generator=generator, device=device)


class ReplayBuffer:
    """A pool of past generated samples (Shrivastava et al. 2017; the "historical" batches of
    Salimans et al. 2016): each discriminator step sees a share of fakes from earlier generators,
    so the pair cannot cycle between modes as easily.

    ``push_and_sample(fake, labels)`` stores the new fakes (and their labels, for a conditional
    GAN) and returns ``(fakes, labels)`` of the same size, in which about ``fraction`` of the
    entries come from the pool once it holds any; ``labels`` stays ``None`` when none were given.
    """

    def __init__(self, capacity: int = 1024, fraction: float = 0.5):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: expected a positive int, got {capacity!r}")
        _probability(fraction, "fraction")
        self.capacity, self.fraction = capacity, fraction
        self.items: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.items is None else len(self.items)

    @torch.no_grad()
    def push_and_sample(self, fake: torch.Tensor, labels: torch.Tensor | None = None,
                        generator: torch.Generator | None = None):
        fake = _tensor(fake, "fake").detach()
        out, out_labels = fake.clone(), None if labels is None else labels.clone()
        if self.items is not None:
            use = torch.rand(len(fake), generator=generator) < self.fraction
            pick = torch.randint(len(self.items), (len(fake),), generator=generator)
            out[use] = self.items[pick[use]]
            if labels is not None:
                out_labels[use] = self.labels[pick[use]]
        if self.items is None:
            self.items, self.labels = fake.clone(), None if labels is None else labels.clone()
        else:
            self.items = torch.cat([fake, self.items])[: self.capacity]
            if labels is not None:
                self.labels = torch.cat([labels, self.labels])[: self.capacity]
        return out, out_labels


def unrolled_generator_loss(G: nn.Module, D: nn.Module, real: torch.Tensor, z: torch.Tensor,
                            unroll: int = 5, lr: float = 1e-2, loss: str = "non_saturating",
                            labels: torch.Tensor | None = None) -> torch.Tensor:
    """The generator loss against a discriminator looked ``unroll`` steps ahead (Unrolled GAN,
    Metz et al. 2017):

        f_K(theta_G, theta_D) = L_G(theta_G, theta_D^K),
        theta_D^{k+1} = theta_D^k - lr * grad L_D(theta_G, theta_D^k),

    differentiated *through* the ``K`` discriminator steps (``create_graph=True``), so the
    generator sees how the discriminator would react to its move and is penalised for hopping to
    a single mode that the discriminator can then reject. ``D`` itself is not changed (its real
    update is the ordinary one). Plain gradient steps stand in for the paper's Adam in the unroll.
    """
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 0:
        raise ValueError(f"unroll: expected a non-negative int, got {unroll!r}")
    names = [n for n, _ in D.named_parameters()]
    params = [p for _, p in D.named_parameters()]
    buffers = dict(D.named_buffers())
    fake = G(z) if labels is None else G(z, labels)

    def logits(x, ps):
        state = {**dict(zip(names, ps, strict=True)), **buffers}
        args = (x,) if labels is None else (x, labels)
        return torch.func.functional_call(D, state, args)

    for _ in range(unroll):
        d_loss = discriminator_loss(logits(real, params), logits(fake, params))
        grads = torch.autograd.grad(d_loss, params, create_graph=True)
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
    return generator_loss(loss, logits(fake, params))


def train_step(G: nn.Module, D: nn.Module, opt_g, opt_d, real: torch.Tensor,
               labels: torch.Tensor | None = None, *, d_steps: int = 1,
               loss: str = "non_saturating", real_target: float = 1.0,
               replay: ReplayBuffer | None = None, unroll: int = 0, unroll_lr: float = 1e-2,
               ema=None, generator: torch.Generator | None = None) -> dict:
    """One round of Algorithm 1 of Goodfellow et al. (2014): ``d_steps`` discriminator updates,
    each on its own real minibatch (``real`` is split into ``d_steps`` equal parts) and fresh
    fakes, then one generator update on fresh codes.

    - Discriminator: minimise :func:`discriminator_loss` (``real_target=0.9`` for one-sided label
      smoothing), on fakes that are detached, and mixed with older ones by ``replay``.
    - Generator: minimise the registered generator ``loss`` against the *updated* discriminator,
      or, with ``unroll > 0``, :func:`unrolled_generator_loss`.
    - ``ema`` (a :class:`companion.train.EMA`) is updated after the generator step.

    Conditional networks take ``labels`` (split like ``real``); the generator step reuses the
    labels of the last real chunk. Returns ``d_loss``, ``g_loss``, the mean ``d_real = D(x)`` of
    the last discriminator step, and the mean ``d_fake = D(G(z))`` that the generator's step saw
    (with ``unroll``, the last discriminator step's).
    """
    if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
        raise ValueError(f"d_steps: expected a positive int, got {d_steps!r}")
    _tensor(real, "real")
    if len(real) % d_steps or len(real) < 2 * d_steps:
        raise ValueError(f"real: expected a batch that splits into d_steps={d_steps} equal "
                         f"parts of at least 2, got {len(real)} samples")
    if loss not in GENERATOR_LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(sorted(GENERATOR_LOSSES))}, "
                         f"got {loss!r}")
    chunks = real.chunk(d_steps)
    label_chunks = [None] * d_steps if labels is None else labels.chunk(d_steps)
    cond = (lambda y: ()) if labels is None else (lambda y: (y,))   # noqa: E731
    device = real.device
    for x, y in zip(chunks, label_chunks, strict=True):
        z = sample_latent(len(x), G.latent_dim, generator, device)
        with torch.no_grad():
            fake = G(z, *cond(y))
        y_fake = y
        if replay is not None:
            fake, y_fake = replay.push_and_sample(fake, y, generator=generator)
        real_logits, fake_logits = D(x, *cond(y)), D(fake, *cond(y_fake))
        d_loss = discriminator_loss(real_logits, fake_logits, real_target)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
    z = sample_latent(len(chunks[-1]), G.latent_dim, generator, device)
    if unroll:
        g_loss = unrolled_generator_loss(G, D, chunks[-1], z, unroll, unroll_lr, loss,
                                         labels=label_chunks[-1])
        with torch.no_grad():
            d_fake = torch.sigmoid(fake_logits).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
    else:
        D.requires_grad_(False)   # the generator step needs gradients through D, not for it
        try:
            gen_logits = D(G(z, *cond(label_chunks[-1])), *cond(label_chunks[-1]))
            g_loss = generator_loss(loss, gen_logits)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            D.requires_grad_(True)
        d_fake = torch.sigmoid(gen_logits.detach()).mean()
    opt_g.step()
    if ema is not None:
        ema.update(G)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(), "d_fake": d_fake}


def gan_optimizers(G: nn.Module, D: nn.Module, lr_g: float = 2e-4, lr_d: float | None = None,
                   betas=(0.5, 0.999)):
    """Adam for both players with DCGAN's ``beta1 = 0.5`` (Radford et al. 2016): a smaller
    momentum reacts faster to the moving target that the other player makes of the loss.
    (:func:`companion.train.adam`: the fused kernel where this torch has it.)"""
    return (_train.adam(G.parameters(), lr_g, betas),
            _train.adam(D.parameters(), lr_g if lr_d is None else lr_d, betas))


@dataclass
class GANRun:
    """What :func:`train_gan` returns: the loss history (``d_loss``, ``g_loss``, ``d_real``,
    ``d_fake`` every ``log_every`` steps), the EMA generator (or ``None``), the snapshots taken
    during training as ``(step, snapshot(G))`` pairs, and the wall time in seconds."""

    history: dict
    ema: object
    snapshots: list
    seconds: float


def train_gan(G: nn.Module, D: nn.Module, data: Callable, *, steps: int, lr_g: float = 2e-4,
              lr_d: float | None = None, betas=(0.5, 0.999), schedule: str = "constant",
              ema_decay: float | None = None, snapshot: Callable | None = None,
              snapshot_every: int = 0, log_every: int = 10, desc: str = "GAN",
              **step_kwargs) -> GANRun:
    """Train a GAN for ``steps`` rounds of :func:`train_step` (its keyword arguments pass through:
    ``d_steps``, ``loss``, ``real_target``, ``replay``, ``unroll``).

    ``data()`` returns an iterable of real batches (``x`` or ``(x, labels)``; with ``d_steps=k``
    each batch should hold ``k`` discriminator minibatches), restarted at each epoch. Both
    players use Adam with ``betas`` (:func:`gan_optimizers`); ``schedule="cosine"`` decays both
    learning rates to 0 over the run, which lets the pair settle instead of circling. With
    ``ema_decay`` an exponential moving average of the generator's weights is kept
    (:class:`companion.train.EMA`, with warm-up, so short runs are not dominated by the
    initial weights). ``snapshot(G)`` is called every ``snapshot_every`` steps.
    The loop is :func:`companion.train.fit`: progress bar, history, and the NaN guard.
    """
    lr_d = lr_g if lr_d is None else lr_d
    opt_g, sched_g = _train.adam_with_schedule(G.parameters(), lr_g, steps, schedule, betas)
    opt_d, sched_d = _train.adam_with_schedule(D.parameters(), lr_d, steps, schedule, betas)
    schedulers = [s for s in (sched_g, sched_d) if s is not None]
    ema = _train.EMA(G, ema_decay, warmup=True) if ema_decay is not None else None
    snapshots: list = []
    G.train()
    D.train()

    def step(batch):
        x, y = (batch, None) if isinstance(batch, torch.Tensor) else batch
        out = train_step(G, D, opt_g, opt_d, x, y, ema=ema, **step_kwargs)
        for s in schedulers:
            s.step()
        return out

    def take(i, _history):
        with torch.no_grad():
            G.eval()
            snapshots.append((i, snapshot(G)))
            G.train()

    start = time.perf_counter()
    history = _train.fit(step, data, steps=steps, log_every=log_every, desc=desc,
                         callback=take if snapshot is not None else None,
                         callback_every=snapshot_every if snapshot is not None else 0)
    G.eval()
    return GANRun(history, ema, snapshots, time.perf_counter() - start)


def fit_discriminator(D: nn.Module, sample_real: Callable[[int], torch.Tensor],
                      sample_fake: Callable[[int], torch.Tensor], *, steps: int = 500,
                      batch_size: int = 256, lr: float = 1e-3) -> list[float]:
    """Train ``D`` alone against a *fixed* generator (the inner maximisation of the game):
    minimise :func:`discriminator_loss` on ``sample_real(n)`` and ``sample_fake(n)``. Its optimum
    is ``D*(x) = p_data(x) / (p_data(x) + p_G(x))``. Returns the loss every step."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    opt = torch.optim.Adam(D.parameters(), lr=lr)
    losses = []
    D.train()
    for _ in range(steps):
        loss = discriminator_loss(D(sample_real(batch_size)), D(sample_fake(batch_size)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    D.eval()
    return losses


@torch.no_grad()
def generate(G: nn.Module, n: int, labels: torch.Tensor | None = None,
             generator: torch.Generator | None = None, z: torch.Tensor | None = None
             ) -> torch.Tensor:
    """``n`` images from generator ``G`` in eval mode, mapped from [-1, 1] to [0, 1] (the range
    of the metrics and the plots): ``[n, 1, 28, 28]``. Codes are drawn from ``N(0, I)`` with
    ``generator`` unless ``z [n, latent_dim]`` is given; ``labels [n]`` for a conditional ``G``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if z is None:
        z = sample_latent(n, G.latent_dim, generator)
    elif z.shape != (n, G.latent_dim):
        raise ValueError(f"z: expected shape ({n}, {G.latent_dim}), got {tuple(z.shape)}")
    was_training = G.training
    G.eval()
    out = G(z) if labels is None else G(z, labels)
    G.train(was_training)
    return ((out + 1) / 2).clamp(0, 1)
