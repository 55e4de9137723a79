"""Checkers for lesson 03 (autoregressive models and PixelCNN)."""
from __future__ import annotations

import math

import torch

from companion import pixelcnn as pc
from companion.exercises import checker


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@checker("causal_mask")
def causal_mask(t, fn):
    for k in (3, 5, 7):
        order = torch.arange(k * k).view(k, k)
        centre = (k * k) // 2
        for mask_type in ("A", "B"):
            got = t.call(fn, k, mask_type)
            if not t.tensor(got, f"a [{k}, {k}] float tensor (type {mask_type})",
                            shape=(k, k), dtype_float=True):
                return
            ref = pc.causal_mask(k, mask_type)
            other = pc.causal_mask(k, "B" if mask_type == "A" else "A")
            diagnose = {
                ("type A zeroes the centre (a pixel must not see itself); type B keeps it"
                 if mask_type == "A" else
                 "type B keeps the centre (it holds features of earlier pixels); only type A "
                 "zeroes it"): other,
                "the rows below the centre must be zero: they come later in raster order":
                    ref + _below(k),
                "keep the pixels left of the centre in its row: they come earlier in raster "
                "order": ref * (order < centre - k // 2).float(),
                "raster order is row by row: zero the pixels to the right of the centre, not "
                "those below it": ref.T,
            }
            t.close(got, ref, f"k = {k}, type {mask_type}: ones exactly on the earlier pixels",
                    "ones above the centre row and left of the centre; the centre only for B",
                    diagnose=diagnose)


def _below(k: int) -> torch.Tensor:
    out = torch.zeros(k, k)
    out[k // 2 + 1:] = 1
    return out


class _Leaky(torch.nn.Module):
    """A 'PixelCNN' with an unmasked 3x3 convolution: it sees the pixel it predicts."""

    levels = 2

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, labels=None):
        return self.conv(x)


@checker("depends_on")
def depends_on(t, fn):
    torch.manual_seed(0)
    models = {"a Gated PixelCNN": pc.GatedPixelCNN(4, 2), "a PixelCNN": pc.PixelCNN(4, 2),
              "an unmasked convolution": _Leaky()}
    size = 9
    for name, model in models.items():
        for pixel in ((4, 5), (0, 0), (8, 2)):
            got = t.call(fn, model, pixel, size, copy=False)
            if not t.tensor(got, f"a [{size}, {size}] map ({name})", shape=(size, size)):
                return
            if got.dtype != torch.bool:
                t.expect(False, "a boolean map", "return grad != 0 (a bool tensor)")
                return
            ref = pc.dependency_map(model, pixel, size)
            if torch.equal(got, ref):
                t.expect(True, f"{name}, pixel {pixel}: the inputs the output depends on")
                continue
            r, c = pixel
            diagnose_t = pc.dependency_map(model, (c, r), size)
            if torch.equal(got, _total_dependence(model, size)):
                hint = ("backpropagate from the one output at the pixel, "
                        "out[0, :, row, col], not from the sum of all outputs")
            elif torch.equal(got, diagnose_t):
                hint = "pixel is (row, col): index the output as out[0, :, row, col]"
            elif (got & ~ref).sum() == 0:
                hint = ("count every nonzero gradient (grad != 0): a negative gradient is a "
                        "dependence too")
            else:
                hint = "x.requires_grad_(), out[0, :, row, col].sum().backward(), x.grad != 0"
            t.expect(False, f"{name}, pixel {pixel}: the inputs the output depends on", hint)
            return


def _total_dependence(model, size: int) -> torch.Tensor:
    """What the sum of all outputs depends on (the answer of a common mistake)."""
    x = torch.rand(1, 1, size, size, generator=_gen(0)).requires_grad_()
    model(x).sum().backward()
    return x.grad[0, 0] != 0


def _sampling_model():
    torch.manual_seed(3)
    model = pc.GatedPixelCNN(8, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)              # sharper conditionals, so order mistakes change the images
    return model.eval()


@checker("sample_loop")
def sample_loop(t, fn):
    model = _sampling_model()
    size = 6
    for seed in (0, 1):
        u = torch.rand(5, size, size, generator=_gen(seed))
        got = t.call(fn, model, u, copy=True)
        if not t.tensor(got, f"images [5, 1, {size}, {size}] (seed {seed})",
                        shape=(5, 1, size, size), dtype_float=True):
            return
        ref = _reference_loop(model, u)
        with torch.no_grad():
            p_empty = torch.sigmoid(model(torch.zeros(5, 1, size, size)))[:, 0]
        diagnose = {
            "one pixel at a time: each pixel's probability must be computed after the pixels "
            "before it are drawn": (u < p_empty).float()[:, None],
            "a pixel is 1 when u < p (so P(x = 1) = p), not u > p":
                _reference_loop(model, u, flip=True),
            "sample from the conditional: thresholding p at 0.5 takes the most likely value "
            "instead": _reference_loop(model, u, argmax=True),
            "the order is raster order: row by row (r = i // size, c = i % size)":
                _reference_loop(model, u, transpose=True),
            "turn the logits into probabilities with torch.sigmoid first":
                _reference_loop(model, u, no_sigmoid=True),
        }
        t.close(got, ref, f"the same images as the reference loop with the same uniforms "
                          f"(seed {seed})",
                "for i in raster order: p = sigmoid(model(x)[:, 0, r, c]); "
                "x[:, 0, r, c] = (u[:, r, c] < p)", diagnose=diagnose, atol=0)


def _reference_loop(model, u, flip=False, argmax=False, transpose=False, no_sigmoid=False):
    n, size, _ = u.shape
    x = torch.zeros(n, 1, size, size)
    with torch.no_grad():
        for i in range(size * size):
            r, c = divmod(i, size)
            if transpose:
                r, c = c, r
            logits = model(x)[:, 0, r, c]
            p = logits if no_sigmoid else torch.sigmoid(logits)
            if argmax:
                x[:, 0, r, c] = (p > 0.5).float()
            elif flip:
                x[:, 0, r, c] = (u[:, r, c] > p).float()
            else:
                x[:, 0, r, c] = (u[:, r, c] < p).float()
    return x


@checker("bits_per_dim")
def bits_per_dim(t, fn):
    for nats, dims in ((81.3, 784), (543.4, 784), (2.0, 4)):
        got = t.call(fn, nats, dims)
        ref = nats / (dims * math.log(2))
        t.close(got, ref, f"{nats} nats over {dims} dimensions",
                "bits per dimension = nats / (dims * ln 2)",
                diagnose={
                    "convert nats to bits: divide by ln 2 (1 bit = ln 2 nats)": nats / dims,
                    "divide by ln 2, do not multiply": nats * math.log(2) / dims,
                    "use the natural log of 2 (math.log(2)), not log10(2)":
                        nats / (dims * math.log10(2)),
                    "divide by the number of dimensions: the result is per pixel":
                        nats / math.log(2),
                })
    batch = torch.tensor([80.0, 90.0, 100.0])
    got = t.call(fn, batch, 784)
    t.close(got, batch / (784 * math.log(2)), "works on a tensor of NLLs, element by element",
            "use math.log(2) and plain arithmetic, which work on tensors too")


@checker("gated_activation")
def gated_activation(t, fn):
    for seed in (0, 1):
        h = torch.randn(3, 8, 6, 6, generator=_gen(seed)) * 2
        got = t.call(fn, h)
        if not t.tensor(got, f"shape [3, 4, 6, 6]: half the channels (seed {seed})",
                        shape=(3, 4, 6, 6), dtype_float=True):
            if isinstance(got, torch.Tensor) and got.shape == (3, 8, 6, 3):
                t.expect(False, "split along the channels",
                         "split the channels (dim 1) in two halves, not the last dimension")
            return
        a, b = h[:, :4], h[:, 4:]
        t.close(got, torch.tanh(a) * torch.sigmoid(b), f"tanh(a) * sigmoid(b) (seed {seed})",
                "a, b = h.chunk(2, dim=1); return torch.tanh(a) * torch.sigmoid(b)",
                diagnose={
                    "tanh on the first half (the features), sigmoid on the second (the gate)":
                        torch.sigmoid(a) * torch.tanh(b),
                    "multiply the two halves, do not add them":
                        torch.tanh(a) + torch.sigmoid(b),
                    "the gate is a sigmoid (values in (0, 1)), not a ReLU":
                        torch.tanh(a) * torch.relu(b),
                    "apply tanh to the features a (values in (-1, 1))": a * torch.sigmoid(b),
                })
