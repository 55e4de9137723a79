"""Autoregressive image models: the chain rule, masked convolutions, PixelCNN and the Gated
PixelCNN, exact likelihood, and naive and fast exact sampling (lesson 03).

An autoregressive model orders the D pixels (raster order: row by row, left to right, starting at
the top-left corner) and factors the density exactly by the chain rule,

    p(x) = prod_{i=1}^{D} p(x_i | x_1, ..., x_{i-1}),

so ``log p(x)`` is a sum of D tractable terms: no bound (unlike the VAE) and no implicit density
(unlike the GAN). PixelCNN (van den Oord, Kalchbrenner and Kavukcuoglu 2016, "Pixel Recurrent
Neural Networks") computes every conditional at once with *masked* convolutions whose kernels see
only pixels that come earlier in the order; training is one parallel pass, sampling is D passes.
Stacked masked 3x3 convolutions miss a wedge of pixels up and to the right (the *blind spot*);
the Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") removes it with a vertical stack (all rows above) and a horizontal stack (the current
row, to the left), joined by gated units ``tanh(W_f * x) . sigmoid(W_g * x)`` and optionally
conditioned on a class label.

Images are ``[N, 1, H, W]`` float tensors with values in ``{0, 1}`` (binary) or
``{0, 1/(K-1), ..., 1}`` (``K`` grey levels). Models return logits ``[N, 1, H, W]`` for binary
images and ``[N, K, H, W]`` for ``K`` levels. Log-likelihoods are in nats, summed over pixels.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from companion import train
from companion._checks import positive_int as _positive_int
from companion._checks import probability as _probability
from companion._checks import tensor as _tensor
from companion.data import batches

# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _image_batch(x, name: str = "x") -> torch.Tensor:
    _tensor(x, name)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected one-channel images of shape [N, 1, H, W], "
                         f"got {tuple(x.shape)}")
    return x


def _levels(levels) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2 (2 for binary images), got {levels!r}")
    return levels


def _odd_kernel(k, name: str = "kernel_size") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"{name}: expected an odd positive int, got {k!r}")
    return k


def _mask_type(mask_type) -> str:
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type: expected 'A' (excludes the centre pixel, first layer) or "
                         f"'B' (includes it, later layers), got {mask_type!r}")
    return mask_type


# ---------------------------------------------------------------------------------------------
# 1. The chain rule on tiny images: a fully visible sigmoid belief network
# ---------------------------------------------------------------------------------------------


class FullyVisibleSigmoid(nn.Module):
    """The smallest autoregressive model over D binary variables (Frey 1998):

        p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j),

    a strictly lower-triangular weight matrix, so ``log p(x)`` is exact and ``sum_x p(x) = 1``
    can be checked by enumerating all ``2^D`` images. Input ``x``: ``[N, D]`` in ``{0, 1}``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = _positive_int(dim, "dim")
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("mask", torch.ones(dim, dim).tril(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the D conditionals, ``[N, D]``; logit i uses only ``x_<i``."""
        _tensor(x, "x", ndim=2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x: expected [N, {self.dim}], got {tuple(x.shape)}")
        return x @ (self.weight * self.mask).T + self.bias

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = sum_i log p(x_i | x_<i)`` in nats, ``[N]``."""
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling, one variable at a time in order: ``[n, D]``."""
        _positive_int(n, "n")
        x = torch.zeros(n, self.dim)
        u = torch.rand(n, self.dim, generator=generator)
        for i in range(self.dim):
            x[:, i] = (u[:, i] < torch.sigmoid(self(x)[:, i])).float()
        return x


def all_binary_images(dim: int) -> torch.Tensor:
    """Every binary vector of length ``dim`` (``dim <= 20``), ``[2^dim, dim]``, in counting order."""
    _positive_int(dim, "dim")
    if dim > 20:
        raise ValueError(f"dim: enumeration needs 2^dim rows; expected dim <= 20, got {dim}")
    codes = torch.arange(2**dim)
    return ((codes[:, None] >> torch.arange(dim - 1, -1, -1)) & 1).float()


# ---------------------------------------------------------------------------------------------
# 2. Masked convolutions
# ---------------------------------------------------------------------------------------------


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``[k, k]`` mask of a PixelCNN convolution (van den Oord et al. 2016, Figure 1).

    Ones on the rows above the centre and left of the centre in its row; zeros to the right of
    the centre and below. Type ``"A"`` (the first layer) also zeroes the centre, so an output never
    sees the pixel it predicts; type ``"B"`` (later layers) keeps it, because there the centre holds
    features that themselves only saw earlier pixels.
    """
    k = _odd_kernel(kernel_size)
    _mask_type(mask_type)
    mask = torch.ones(k, k)
    c = k // 2
    mask[c, c + (mask_type == "B"):] = 0
    mask[c + 1:] = 0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A ``k x k`` convolution (same padding) whose weight is multiplied by :func:`causal_mask`.

    ``[N, in_channels, H, W] -> [N, out_channels, H, W]``. One image channel, so no masking across
    colour channels is needed.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        k = _odd_kernel(kernel_size)
        super().__init__(in_channels, out_channels, k, padding=k // 2)
        self.mask_type = _mask_type(mask_type)
        self.register_buffer("mask", causal_mask(k, mask_type)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


# ---------------------------------------------------------------------------------------------
# 3. PixelCNN
# ---------------------------------------------------------------------------------------------


def _out_channels(levels: int) -> int:
    return 1 if levels == 2 else levels


def _position_map(image_size, channels: int, maps: int = 1):
    """``maps`` learned biases per position and channel, ``[maps, channels, S, S]``, or ``None``."""
    if image_size is None:
        return None
    _positive_int(image_size, "image_size")
    return nn.Parameter(torch.zeros(maps, channels, image_size, image_size))


def _crop_position(position: torch.Tensor, x: torch.Tensor, offset) -> torch.Tensor:
    r0, c0 = offset
    h, w = x.shape[-2:]
    size = position.shape[-1]
    if r0 < 0 or c0 < 0 or r0 + h > size or c0 + w > size:
        raise ValueError(f"x: a {h}x{w} input at offset {offset} does not fit the model's "
                         f"{size}x{size} position map (image_size={size})")
    return position[:, :, r0:r0 + h, c0:c0 + w]


class PixelCNN(nn.Module):
    """PixelCNN: a type-A ``first_kernel`` masked convolution, ``layers - 1`` residual blocks of
    type-B 3x3 masked convolutions, then two 1x1 convolutions to the logits.

    ``[N, 1, H, W]`` images -> ``[N, 1, H, W]`` logits (``levels = 2``) or ``[N, K, H, W]``.
    Its receptive field has a blind spot: see :func:`receptive_field`.

    ``image_size``: when given, the first layer adds a learned bias per position and channel.
    Convolutions are translation-equivariant, so without it a pixel far from the border cannot
    tell where it is, while MNIST's statistics depend strongly on position (the border is always
    blank); the bias depends on no pixel, so causality is unchanged. ``offset`` in
    :meth:`forward` says where a cropped input sits in the full image (used by
    :func:`sample_fast`).
    """

    def __init__(self, channels: int = 32, layers: int = 5, first_kernel: int = 7,
                 levels: int = 2, image_size: int | None = None):
        super().__init__()
        _positive_int(channels, "channels")
        _positive_int(layers, "layers")
        _odd_kernel(first_kernel, "first_kernel")
        self.levels = _levels(levels)
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.position = _position_map(image_size, channels)
        self.blocks = nn.ModuleList(MaskedConv2d(channels, channels, 3, "B")
                                    for _ in range(layers - 1))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, _out_channels(levels), 1))
        r = first_kernel // 2 + (layers - 1)
        # how far (rows up, columns left, columns right) an output can see: the fast sampler's window
        self.reach = (r, r, r)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
        if labels is not None:
            raise ValueError("labels: this PixelCNN is unconditional; use GatedPixelCNN("
                             "num_classes=...) for class-conditional generation")
        h = self.first(x)
        if self.position is not None:
            h = h + _crop_position(self.position, x, offset)
        h = torch.relu(h)
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# 4. Gated PixelCNN
# ---------------------------------------------------------------------------------------------


def gated_activation(h: torch.Tensor) -> torch.Tensor:
    """The gated unit ``tanh(a) * sigmoid(b)`` where ``a, b`` are the two halves of the channels:
    ``[N, 2C, H, W] -> [N, C, H, W]`` (van den Oord et al. 2016, equation 2)."""
    _tensor(h, "h")
    if h.ndim < 2 or h.shape[1] % 2:
        raise ValueError(f"h: expected an even number of channels in dim 1, got {tuple(h.shape)}")
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One Gated PixelCNN layer (van den Oord et al. 2016, Figure 2).

    - Vertical stack: a ``(k//2 + 1) x k`` convolution over the current row and the ``k//2`` rows
      above (padding on top only), so it sees every pixel above in a widening cone.
    - Its features reach the horizontal stack *shifted down one row*, so the horizontal stack at
      row ``i`` learns only about rows ``< i`` from it.
    - Horizontal stack: a ``1 x (k//2 + 1)`` convolution over the current pixel and those to its
      left (type ``"A"`` masks the current pixel, in the first layer), a residual connection from
      the second layer on.
    - Both stacks pass through :func:`gated_activation`, with the class embedding added to the
      pre-activations when the model is conditional.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, mask_type: str):
        super().__init__()
        k = _odd_kernel(kernel_size)
        self.k, self.mask_type = k, _mask_type(mask_type)
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (k // 2 + 1, k))
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, k // 2 + 1))
        h_mask = torch.ones(1, k // 2 + 1)
        if mask_type == "A":
            h_mask[0, -1] = 0
        self.register_buffer("h_mask", h_mask[None, None])
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.residual = mask_type == "B" and in_channels == channels

    def vertical(self, v: torch.Tensor, cond: torch.Tensor | None = None):
        """The vertical stack: returns its output and what it passes to the horizontal stack
        (``v_to_h`` of its pre-activations shifted down one row, plus ``cond``)."""
        k = self.k
        v_pre = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))           # rows <= i
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]                         # rows < i
        from_above = self.v_to_h(shifted)
        if cond is not None:
            v_pre = v_pre + cond
            from_above = from_above + cond
        return gated_activation(v_pre), from_above

    def horizontal(self, h: torch.Tensor, from_above: torch.Tensor) -> torch.Tensor:
        """The horizontal stack: a causal convolution along the row, plus ``from_above``."""
        k = self.k
        h_pre = F.conv2d(F.pad(h, (k // 2, 0, 0, 0)), self.h_conv.weight * self.h_mask,
                         self.h_conv.bias)                                      # row i, cols <= j
        h_new = self.h_out(gated_activation(h_pre + from_above))
        return h_new + h if self.residual else h_new

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None):
        v_new, from_above = self.vertical(v, cond)
        return v_new, self.horizontal(h, from_above)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN with vertical and horizontal stacks and no blind spot, optionally
    class-conditional (van den Oord et al. 2016).

    ``num_classes``: when given, each layer adds a learned embedding of the label to its gated
    pre-activations (the paper's ``V^T h`` with a one-hot ``h``). The embedding has one extra row,
    the "no label" token, used when ``labels`` is ``None``; training with ``label_dropout`` (see
    :func:`train_pixelcnn`) makes that the unconditional model ``p(x)``, so one network gives both
    ``p(x)`` and ``p(x | y)``.

    ``image_size``: a learned bias per position in the first layer, as in :class:`PixelCNN`. A
    conditional model keeps one such map per label (and one for "no label"): this is the paper's
    *location-dependent* conditioning ``V^T s`` with ``s = m(h)``, where ``m`` is a lookup table.
    It tells the network where strokes of each digit tend to be, which the location-independent
    embedding cannot.
    ``first_kernel``: a wider kernel for the first layer only (its input has one channel, so a
    wide first kernel is cheap and widens the receptive field of every later layer).

    ``[N, 1, H, W]`` images (and ``[N]`` integer labels) -> ``[N, 1, H, W]`` or ``[N, K, H, W]``
    logits.
    """

    def __init__(self, channels: int = 32, layers: int = 5, kernel_size: int = 3,
                 levels: int = 2, num_classes: int | None = None,
                 first_kernel: int | None = None, image_size: int | None = None):
        super().__init__()
        _positive_int(channels, "channels")
        _positive_int(layers, "layers")
        k = _odd_kernel(kernel_size)
        k1 = k if first_kernel is None else _odd_kernel(first_kernel, "first_kernel")
        self.levels = _levels(levels)
        self.channels = channels
        self.num_classes = None if num_classes is None else _positive_int(num_classes,
                                                                          "num_classes")
        self.layers = nn.ModuleList(
            GatedLayer(1, channels, k1, "A") if i == 0 else GatedLayer(channels, channels, k, "B")
            for i in range(layers))
        self.embed = (None if num_classes is None
                      else nn.Embedding(num_classes + 1, 2 * channels * layers))
        # conditional models keep one map per label ("no label" included): location-dependent
        # conditioning, the paper's s = m(h) with a lookup table for m
        self.position = _position_map(image_size, 2 * channels,
                                      1 if num_classes is None else num_classes + 1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, _out_channels(levels), 1))
        r = k1 // 2 + (layers - 1) * (k // 2)
        self.reach = (r + 1, r, r)

    def _conditions(self, labels, n: int):
        if self.embed is None:
            if labels is not None:
                raise ValueError("labels: this GatedPixelCNN is unconditional; build it with "
                                 "num_classes=... to condition on labels")
            return [None] * len(self.layers), None
        if labels is None:
            labels = torch.full((n,), self.num_classes, dtype=torch.long,
                                device=self.embed.weight.device)
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long:
            raise TypeError(f"labels: expected a torch.long tensor of class indices, "
                            f"got {getattr(labels, 'dtype', type(labels).__name__)}")
        if labels.shape != (n,):
            raise ValueError(f"labels: expected shape [{n}], got {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() > self.num_classes:
            raise ValueError(f"labels: expected values in 0..{self.num_classes - 1} "
                             f"(or {self.num_classes} for 'no label')")
        e = self.embed(labels)[:, :, None, None]
        return e.chunk(len(self.layers), dim=1), labels

    def _conds(self, x, labels, offset):
        conds, labels = self._conditions(labels, x.shape[0])
        conds = list(conds)
        if self.position is not None:
            pos = _crop_position(self.position, x, offset)
            if labels is not None:
                pos = pos[labels]                                   # the map of each label
            conds[0] = pos if conds[0] is None else conds[0] + pos
        return conds

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
        v = h = x
        for layer, cond in zip(self.layers, self._conds(x, labels, offset), strict=True):
            v, h = layer(v, h, cond)
        return self.head(h)

    def context_from_above(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                           offset: tuple[int, int] = (0, 0)) -> list[torch.Tensor]:
        """Run the vertical stack only; return, per layer, what the horizontal stack receives at
        the *last* row of ``x``: ``[N, 2C, 1, W]`` tensors. They depend only on the rows above, so
        while that row is sampled they do not change (see :func:`sample_fast`)."""
        v, out = x, []
        for layer, cond in zip(self.layers, self._conds(x, labels, offset), strict=True):
            v, from_above = layer.vertical(v, cond)
            out.append(from_above[:, :, -1:])
        return out

    def along_row(self, row: torch.Tensor, context: list[torch.Tensor]) -> torch.Tensor:
        """Run the horizontal stack and the head on a one-row crop ``[N, 1, 1, w]`` with the
        matching crops of :meth:`context_from_above`; returns the logits ``[N, out, 1, w]``."""
        h = row
        for layer, from_above in zip(self.layers, context, strict=True):
            h = layer.horizontal(h, from_above)
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# 5. Likelihood
# ---------------------------------------------------------------------------------------------


def _targets(x: torch.Tensor, levels: int) -> torch.Tensor:
    return torch.round(x[:, 0] * (levels - 1)).long()


def log_likelihood(logits: torch.Tensor, x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """``log p(x) = sum_i log p(x_i | x_<i)`` per image in nats, ``[N]``, from the model's logits."""
    _image_batch(x)
    _levels(levels)
    if levels == 2:
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return -F.cross_entropy(logits, _targets(x, levels), reduction="none").flatten(1).sum(1)


def nll(model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None,
        batch_size: int = 500) -> torch.Tensor:
    """Exact negative log-likelihood ``-log p(x)`` in nats per image, ``[N]`` (no gradient)."""
    _image_batch(x)
    _positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            yb = None if labels is None else labels[s:s + batch_size]
            out.append(-log_likelihood(model(x[s:s + batch_size], yb), x[s:s + batch_size],
                                       model.levels))
    model.train(was_training)
    return torch.cat(out)


def bits_per_dim(nll_nats, dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per image to bits per dimension:
    ``nll / (dims * ln 2)``."""
    _positive_int(dims, "dims")
    if isinstance(nll_nats, torch.Tensor):
        return nll_nats / (dims * math.log(2))
    if isinstance(nll_nats, bool) or not isinstance(nll_nats, (int, float)):
        raise TypeError(f"nll_nats: expected a number or tensor, got {type(nll_nats).__name__}")
    return nll_nats / (dims * math.log(2))


# ---------------------------------------------------------------------------------------------
# 6. Causality and receptive fields, measured with gradients
# ---------------------------------------------------------------------------------------------


def dependency_map(model: nn.Module, pixel: tuple[int, int], size: int = 28,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """Which input pixels the output at ``pixel = (row, col)`` depends on: a boolean
    ``[size, size]`` map of ``d logits[row, col] / d x != 0``, measured by backpropagation from a
    random input (so no weight is exactly cancelled by a zero input)."""
    row, col = pixel
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"pixel: expected (row, col) inside a {size}x{size} image, got {pixel}")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, size, size, generator=g).requires_grad_()
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        out = model(x, labels) if labels is not None else model(x)
        out[0, :, row, col].sum().backward()
    model.train(was_training)
    return x.grad[0, 0] != 0


def causality_violations(model: nn.Module, size: int = 28, pixels=None,
                         batch_size: int = 196) -> int:
    """Count (output pixel, input pixel) pairs where the output depends on an input at or after
    it in raster order: 0 for a correct autoregressive model. ``pixels`` defaults to every pixel.

    Vectorised: image ``b`` of a batch of identical random inputs backpropagates only from its
    own output pixel, so one backward pass gives the dependency maps of a whole batch of pixels.
    """
    _positive_int(batch_size, "batch_size")
    order = torch.arange(size * size).view(size, size)
    pixels = pixels if pixels is not None else [(r, c) for r in range(size) for c in range(size)]
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, size, size, generator=g)
    was_training = model.training
    model.eval()
    bad = 0
    for s in range(0, len(pixels), batch_size):
        chunk = pixels[s:s + batch_size]
        rows = torch.tensor([r for r, _ in chunk])
        cols = torch.tensor([c for _, c in chunk])
        x = base.repeat(len(chunk), 1, 1, 1).requires_grad_()
        with torch.enable_grad():
            out = model(x)
            out[torch.arange(len(chunk)), :, rows, cols].sum().backward()
        deps = x.grad[:, 0] != 0                                        # [B, size, size]
        later = order[None] >= (rows * size + cols)[:, None, None]
        bad += int((deps & later).sum())
    model.train(was_training)
    return bad


def receptive_field(model: nn.Module, pixel: tuple[int, int], size: int = 28) -> torch.Tensor:
    """The causal receptive field of ``pixel`` as a ``[size, size]`` int map: 1 where the output
    depends on the input, 2 on the *blind spot* (earlier pixels inside the field's bounding box that
    the output cannot see), 0 elsewhere; the pixel itself is marked 3 for plotting."""
    deps = dependency_map(model, pixel, size)
    row, col = pixel
    order = torch.arange(size * size).view(size, size)
    earlier = order < row * size + col
    rows, cols = deps.nonzero(as_tuple=True)
    field = deps.long()
    if len(rows):
        box = torch.zeros_like(deps)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        field[box & earlier & ~deps] = 2
    field[row, col] = 3
    return field


def blind_spot_size(model: nn.Module, pixel: tuple[int, int], size: int = 28) -> int:
    """The number of blind-spot pixels of ``pixel`` (see :func:`receptive_field`)."""
    return int((receptive_field(model, pixel, size) == 2).sum())


# ---------------------------------------------------------------------------------------------
# 7. Training
# ---------------------------------------------------------------------------------------------


def quantize(images: torch.Tensor, levels: int, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Images in [0, 1] to ``levels`` values: a Bernoulli draw for ``levels = 2`` (dynamic
    binarisation), else rounding to ``{0, 1/(K-1), ..., 1}``."""
    _levels(levels)
    if levels == 2:
        return torch.bernoulli(images, generator=generator)
    return torch.round(images * (levels - 1)) / (levels - 1)


def train_pixelcnn(model: nn.Module, images: torch.Tensor, steps: int, *,
                   labels: torch.Tensor | None = None, label_dropout: float = 0.0,
                   batch_size: int = 64, lr: float = 3e-3, schedule: str = "cosine",
                   generator: torch.Generator | None = None, desc: str = "pixelcnn"
                   ) -> train.History:
    """Maximum likelihood by Adam: minimise the exact NLL (nats per image) of training batches.

    Binary models see dynamically binarised images (a fresh Bernoulli draw per batch, the shared
    protocol of lessons 02 and 03); ``K``-level models see images rounded to ``K`` levels. With
    ``labels`` (a conditional :class:`GatedPixelCNN`), ``label_dropout`` replaces that share of the
    labels by the "no label" token, so the model also learns ``p(x)``. ``schedule``: ``"cosine"``
    decays the learning rate to 0 over ``steps``, or ``"constant"``. Returns the history of
    ``nll`` (nats per image, the batch mean).
    """
    _image_batch(images, "images")
    _positive_int(steps, "steps")
    _probability(label_dropout, "label_dropout")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"labels: expected {len(images)} labels like images, got {len(labels)}")
    opt, sched = train.adam_with_schedule(model.parameters(), lr, steps, schedule)
    model.train()

    def step(batch):
        xb, yb = batch if labels is not None else (batch, None)
        xb = quantize(xb, model.levels, generator)
        if yb is not None and label_dropout > 0:
            drop = torch.rand(len(yb), generator=generator) < label_dropout
            yb = torch.where(drop, torch.full_like(yb, model.num_classes), yb)
        loss = -log_likelihood(model(xb, yb), xb, model.levels).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return {"nll": loss.detach()}

    tensors = (images,) if labels is None else (images, labels)
    history = train.fit(step, lambda: batches(*tensors, batch_size=batch_size,
                                              generator=generator),
                        steps=steps, desc=desc)
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# 8. Sampling: the naive loop, the fast windowed loop, completion
# ---------------------------------------------------------------------------------------------


def draw_pixel(logits: torch.Tensor, u: torch.Tensor, levels: int) -> torch.Tensor:
    """Sample one pixel per image from its logits by the inverse CDF with given uniforms ``u``.

    ``logits``: ``[N]`` (binary) or ``[N, K]``; ``u``: ``[N]`` in [0, 1). Returns pixel values
    ``[N]`` in ``{0, 1/(K-1), ..., 1}``. Passing the uniforms in makes two samplers that compute
    the same probabilities produce the same images.
    """
    if levels == 2:
        return (u < torch.sigmoid(logits)).to(u.dtype)
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    index = (cdf < u[:, None]).sum(-1).clamp(max=levels - 1)
    return index.to(u.dtype) / (levels - 1)


def _start(model, n, size, x, start, labels, generator):
    _positive_int(n, "n")
    _positive_int(size, "size")
    if x is None:
        x = torch.zeros(n, 1, size, size)
    else:
        _image_batch(x)
        if x.shape != (n, 1, size, size):
            raise ValueError(f"x: expected the starting images [{n}, 1, {size}, {size}], "
                             f"got {tuple(x.shape)}")
        x = x.clone()
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= size * size:
        raise ValueError(f"start: expected a pixel index in 0..{size * size}, got {start!r}")
    if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (n,)):
        raise ValueError(f"labels: expected a tensor of {n} class indices, got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    # one uniform per pixel, drawn up front: the same seed gives the same image in both samplers
    u = torch.rand(n, size, size, generator=generator)
    return x, u


def _forward(model, x, labels, offset=(0, 0)):
    if getattr(model, "position", None) is not None:
        return model(x, labels, offset=offset)
    return model(x, labels) if labels is not None else model(x)


def sample_naive(model: nn.Module, n: int, *, size: int = 28, labels: torch.Tensor | None = None,
                 x: torch.Tensor | None = None, start: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Sequential sampling, one full network evaluation per pixel (``size^2`` passes).

    Pixels before index ``start`` (raster order) are kept from ``x`` (completion); the rest are
    drawn in order, each from ``p(x_i | x_<i)`` computed on the image so far. ``[n, 1, size, size]``.
    """
    x, u = _start(model, n, size, x, start, labels, generator)
    model.eval()
    with torch.inference_mode():
        for i in range(start, size * size):
            r, c = divmod(i, size)
            logits = _forward(model, x, labels)[:, :, r, c]
            x[:, 0, r, c] = draw_pixel(logits.squeeze(1) if model.levels == 2 else logits,
                                       u[:, r, c], model.levels)
    return x


def sample_fast(model: nn.Module, n: int, *, size: int = 28, labels: torch.Tensor | None = None,
                x: torch.Tensor | None = None, start: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact sampling that evaluates, for each pixel, only the window of the image it can see.

    The logits at ``(r, c)`` depend only on inputs within ``model.reach = (up, left, right)``:
    rows ``r - up .. r`` and columns ``c - left .. c + right``. Running the network on that crop
    (clipped at the image border, where the crop's zero padding is the model's own) gives the same
    logits as the full image, so with the same ``generator`` the images equal
    :func:`sample_naive`'s, at a fraction of the cost. Same arguments and result.

    A :class:`GatedPixelCNN` also caches what does not change: its vertical stack sees only the
    rows above, so it runs once per row, and each pixel then needs only the horizontal stack on
    the ``left + 1`` pixels of its row that it can see.
    """
    x, u = _start(model, n, size, x, start, labels, generator)
    up, left, right = model.reach
    model.eval()
    if isinstance(model, GatedPixelCNN):
        return _sample_gated_rows(model, x, u, labels, start)
    with torch.inference_mode():
        for i in range(start, size * size):
            r, c = divmod(i, size)
            r0, c0, c1 = max(0, r - up), max(0, c - left), min(size, c + right + 1)
            window = x[:, :, r0:r + 1, c0:c1]
            logits = _forward(model, window, labels, (r0, c0))[:, :, r - r0, c - c0]
            x[:, 0, r, c] = draw_pixel(logits.squeeze(1) if model.levels == 2 else logits,
                                       u[:, r, c], model.levels)
    return x


_NATIVE_UP_TO = 8      # batch sizes up to which the per-pixel convolutions skip oneDNN (measured)


@contextlib.contextmanager
def _onednn(enabled: bool):
    """Switch torch's oneDNN (mkldnn) CPU kernels on or off inside the block, and only those."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _sample_gated_rows(model, x, u, labels, start):
    """The Gated PixelCNN's fast path: the vertical stack once per row (the rows above do not
    change while a row is drawn), then per pixel only the horizontal stack on the ``left + 1``
    pixels of the row it can see."""
    size = x.shape[-1]
    up, left, _ = model.reach
    with torch.inference_mode():
        for r in range(start // size, size):
            r0 = max(0, r - up)
            context = model.context_from_above(x[:, :, r0:r + 1], labels, (r0, 0))
            # the per-pixel convolutions are tiny: torch's native kernels start faster than oneDNN
            with _onednn(len(x) > _NATIVE_UP_TO):
                for c in range(start - r * size if r == start // size else 0, size):
                    c0 = max(0, c - left)
                    logits = model.along_row(x[:, :, r:r + 1, c0:c + 1],
                                             [a[..., c0:c + 1] for a in context])[:, :, 0, -1]
                    x[:, 0, r, c] = draw_pixel(logits.squeeze(1) if model.levels == 2 else logits,
                                               u[:, r, c], model.levels)
    return x


def complete(model: nn.Module, top: torch.Tensor, rows: int, samples: int, *,
             generator: torch.Generator | None = None, fast: bool = True) -> torch.Tensor:
    """Complete images from their first ``rows`` rows: ``top`` ``[N, 1, H, W]`` (only its first
    ``rows`` rows are used); returns ``[N, samples, 1, H, W]``, ``samples`` completions of each."""
    _image_batch(top, "top")
    size = top.shape[-1]
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= size:
        raise ValueError(f"rows: expected an int in 0..{size}, got {rows!r}")
    _positive_int(samples, "samples")
    x = top.repeat_interleave(samples, 0).clone()
    x[:, :, rows:] = 0
    sampler = sample_fast if fast else sample_naive
    out = sampler(model, len(x), size=size, x=x, start=rows * size, generator=generator)
    return out.view(len(top), samples, 1, size, size)


def time_sampler(sampler, model: nn.Module, n: int, *, repeats: int = 1, **kwargs):
    """Run ``sampler(model, n, **kwargs)`` ``repeats`` times; return ``(images, best seconds)``."""
    _positive_int(repeats, "repeats")
    best, images = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        images = sampler(model, n, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return images, best
