"""Argument checks shared by the model modules: each raises a ``TypeError`` or ``ValueError``
that names the argument, what was expected and what was received."""
from __future__ import annotations

import torch


def tensor(x, name: str, ndim: int | None = None) -> torch.Tensor:
    """``x`` must be a floating-point tensor (with ``ndim`` dimensions, if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(x.shape)}")
    return x


def images(x, name: str = "x", size: int = 28) -> torch.Tensor:
    """``x`` must be a float batch of one-channel images ``[N, 1, size, size]``."""
    tensor(x, name)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, size, size):
        raise ValueError(f"{name}: expected images of shape [N, 1, {size}, {size}], "
                         f"got {tuple(x.shape)}")
    return x


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)
