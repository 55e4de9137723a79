"""Profiles, seeding, device and threads: the set-up every lesson starts with.

A *profile* picks the sizes a lesson uses, so one notebook serves three budgets:

=========  ==========================================  ======================
profile    for                                         budget per lesson
=========  ==========================================  ======================
smoke      CI and the test suite                       at most 120 s on 2 CPU cores
standard   default without a GPU                       at most 15 min on 2 CPU cores
full       default with CUDA                           GPU minutes
=========  ==========================================  ======================

``COURSE_PROFILE`` selects it; without it, ``full`` when CUDA is available, else ``standard``.
A lesson declares its sizes in one table and reads them through :func:`sizes`::

    SIZES = {            # smoke  standard  full
        "train_images":  (2_000,  60_000,   60_000),
        "epochs":        (1,      5,        20),
    }
    cfg = config.sizes(SIZES)      # cfg.epochs == 1 in the smoke profile
"""
from __future__ import annotations

import os
import random
from types import SimpleNamespace

import numpy as np
import torch

PROFILES = ("smoke", "standard", "full")


def profile(name: str | None = None) -> str:
    """Return the active profile: ``name`` if given, else ``$COURSE_PROFILE``, else the default.

    Raises ``ValueError`` for a name that is not one of :data:`PROFILES`.
    """
    source = "argument"
    if name is None:
        name = os.environ.get("COURSE_PROFILE", "").strip()
        source = "COURSE_PROFILE"
    if not name:
        return "full" if torch.cuda.is_available() else "standard"
    if not isinstance(name, str):
        raise TypeError(f"profile: expected a str, got {type(name).__name__}")
    if name.lower() not in PROFILES:
        raise ValueError(
            f"profile: {source} is {name!r}; expected one of {', '.join(PROFILES)}"
        )
    return name.lower()


def sizes(table: dict, name: str | None = None) -> SimpleNamespace:
    """Pick one column of a per-profile size table.

    ``table`` maps a setting to a ``(smoke, standard, full)`` triple; the result is a
    namespace with one attribute per setting, holding the value of the active profile.
    """
    if not isinstance(table, dict):
        raise TypeError(f"table: expected a dict of (smoke, standard, full) triples, "
                        f"got {type(table).__name__}")
    column = PROFILES.index(profile(name))
    picked = {}
    for key, row in table.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"table: setting names must be identifiers, got {key!r}")
        if not isinstance(row, (tuple, list)) or len(row) != len(PROFILES):
            raise ValueError(
                f"table[{key!r}]: expected a (smoke, standard, full) triple, got {row!r}"
            )
        picked[key] = row[column]
    return SimpleNamespace(**picked)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA); return a seeded torch Generator."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected 0 <= seed < 2**32, got {seed}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer`` or ``$COURSE_DEVICE`` if set, else cuda, mps, cpu."""
    prefer = prefer or os.environ.get("COURSE_DEVICE") or None
    if prefer is not None:
        try:
            chosen = torch.device(prefer)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device: {prefer!r} is not a torch device ({exc})") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was asked for, but torch sees no CUDA device")
        if chosen.type == "mps" and not _mps_available():
            raise ValueError("device: 'mps' was asked for, but torch sees no MPS device")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count (default ``$COURSE_THREADS`` or all cores); return it."""
    if n is None:
        n = int(os.environ.get("COURSE_THREADS", 0)) or (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int number of threads, got {n!r}")
    torch.set_num_threads(n)
    return n


def setup(seed: int = 0, *, quiet: bool = False) -> SimpleNamespace:
    """One call for a lesson's set-up cell: profile, device, threads, seed, PNG figures.

    Returns a namespace with ``profile``, ``device``, ``threads`` and ``generator``.
    """
    active = profile()
    dev = device()
    threads = set_threads()
    generator = seed_everything(seed)
    _png_figures()
    if not quiet:
        print(f"profile: {active} | device: {dev.type} | threads: {threads} | seed: {seed}")
    return SimpleNamespace(profile=active, device=dev, threads=threads, generator=generator)


def _png_figures() -> None:
    """Ask IPython's inline backend for PNG figures (never SVG or PDF), when running in IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with jupyterlab
        return
    shell = get_ipython()
    if shell is None:
        return
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover
        return
    set_matplotlib_formats("png")
