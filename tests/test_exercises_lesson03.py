"""Lesson 03 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import math

import torch

from companion.exercises import lesson03 as check
from companion.exercises.testing import verify_checker


def _mask(k, mask_type, *, centre_rule=None, below=False, whole_row=False, transpose=False):
    mask = torch.ones(k, k)
    c = k // 2
    keep_centre = (mask_type == "B") if centre_rule is None else centre_rule(mask_type)
    mask[c, c + int(keep_centre):] = 0
    if whole_row:
        mask[c, :] = 0
    if not below:
        mask[c + 1:] = 0
    return mask.T.contiguous() if transpose else mask


def test_causal_mask_checker():
    verify_checker(check.causal_mask, lambda k, m: _mask(k, m), wrong={
        "type a zeroes the centre": lambda k, m: _mask(k, m, centre_rule=lambda m: True),
        "type b keeps the centre": lambda k, m: _mask(k, m, centre_rule=lambda m: False),
        "the rows below the centre must be zero": lambda k, m: _mask(k, m, below=True),
        "keep the pixels left of the centre": lambda k, m: _mask(k, m, whole_row=True),
        "raster order is row by row": lambda k, m: _mask(k, m, transpose=True),
    })


def _grad_map(model, pixel, size, *, total=False, swap=False, positive=False):
    r, c = (pixel[1], pixel[0]) if swap else pixel
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    x.requires_grad_()
    out = model(x)
    (out.sum() if total else out[0, :, r, c].sum()).backward()
    return x.grad[0, 0] > 0 if positive else x.grad[0, 0] != 0


def test_depends_on_checker():
    verify_checker(check.depends_on, _grad_map, wrong={
        "not from the sum of all outputs": lambda m, p, s: _grad_map(m, p, s, total=True),
        "pixel is (row, col)": lambda m, p, s: _grad_map(m, p, s, swap=True),
        "a negative gradient is a dependence": lambda m, p, s: _grad_map(m, p, s, positive=True),
        "a bool tensor": lambda m, p, s: _grad_map(m, p, s).float(),
    })


def _loop(model, u, *, flip=False, at_once=False, transpose=False, argmax=False):
    n, size, _ = u.shape
    x = torch.zeros(n, 1, size, size)
    with torch.no_grad():
        if at_once:
            return (u < torch.sigmoid(model(x)[:, 0])).float()[:, None]
        for i in range(size * size):
            r, c = divmod(i, size)
            if transpose:
                r, c = c, r
            p = torch.sigmoid(model(x)[:, 0, r, c])
            if argmax:
                x[:, 0, r, c] = (p > 0.5).float()
            else:
                x[:, 0, r, c] = ((u[:, r, c] > p) if flip else (u[:, r, c] < p)).float()
    return x


def test_sample_loop_checker():
    verify_checker(check.sample_loop, _loop, wrong={
        "one pixel at a time": lambda m, u: _loop(m, u, at_once=True),
        "not u > p": lambda m, u: _loop(m, u, flip=True),
        "raster order": lambda m, u: _loop(m, u, transpose=True),
        "thresholding p at 0.5": lambda m, u: _loop(m, u, argmax=True),
    })


def test_bits_per_dim_checker():
    verify_checker(check.bits_per_dim, lambda nll, d: nll / (d * math.log(2)), wrong={
        "convert nats to bits": lambda nll, d: nll / d,
        "do not multiply": lambda nll, d: nll * math.log(2) / d,
        "not log10(2)": lambda nll, d: nll / (d * math.log10(2)),
        "divide by the number of dimensions": lambda nll, d: nll / math.log(2),
    })


def test_gated_activation_checker():
    def split(h):
        return h.chunk(2, dim=1)

    verify_checker(check.gated_activation,
                   lambda h: torch.tanh(split(h)[0]) * torch.sigmoid(split(h)[1]), wrong={
        "tanh on the first half": lambda h: torch.sigmoid(split(h)[0]) * torch.tanh(split(h)[1]),
        "do not add them": lambda h: torch.tanh(split(h)[0]) + torch.sigmoid(split(h)[1]),
        "not a relu": lambda h: torch.tanh(split(h)[0]) * torch.relu(split(h)[1]),
        "apply tanh to the features": lambda h: split(h)[0] * torch.sigmoid(split(h)[1]),
        "split the channels (dim 1)": lambda h: torch.tanh(h.chunk(2, -1)[0])
            * torch.sigmoid(h.chunk(2, -1)[1]),
    })
