"""Plotting helpers: image grids, loss curves, 2-D samples and densities, interpolation strips,
and ipywidgets explorers that also leave a static figure behind.

Every function draws with matplotlib and returns the ``Axes`` (or ``Figure``) so a lesson can add
to it; figures are rendered as PNG in notebooks (``companion.config.setup`` asks for it).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _axes(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def image_grid(images: torch.Tensor, nrow: int = 8, value_range: tuple[float, float] = (0, 1),
               padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``[N, C, H, W]`` images into one ``[H', W', C]`` array in [0, 1] (torchvision's
    ``make_grid``); images in [-1, 1] need ``value_range=(-1, 1)``."""
    from torchvision.utils import make_grid

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images: expected shape [N, 1 or 3, H, W] with N >= 1, "
                         f"got {tuple(images.shape)}")
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    grid = make_grid(x, nrow=nrow, padding=padding, pad_value=pad_value)
    return grid.permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                value_range: tuple[float, float] = (0, 1), scale: float = 0.6):
    """Show ``[N, C, H, W]`` images as a grid of ``nrow`` columns; returns the Axes."""
    grid = image_grid(images, nrow=nrow, value_range=value_range)
    rows = int(np.ceil(len(images) / nrow))
    ax = _axes(ax, (scale * min(nrow, len(images)) + 0.4, scale * rows + 0.4))
    gray = images.ndim == 3 or images.shape[1] == 1
    ax.imshow(grid[..., 0] if gray else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_curves(history: Mapping[str, Sequence[float]], keys: Sequence[str] | None = None,
                ax=None, title: str | None = None, logy: bool = False, smooth: int = 1):
    """Plot loss curves from a history dict (``steps`` on the x axis when present)."""
    if not isinstance(history, Mapping):
        raise TypeError(f"history: expected a mapping of name -> values, got "
                        f"{type(history).__name__}")
    keys = list(keys) if keys is not None else [k for k in history if k != "steps"]
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"keys: {missing} not in history (has {sorted(history)})")
    ax = _axes(ax, (5, 3))
    for key in keys:
        y = np.asarray(history[key], dtype=float)
        x = np.asarray(history.get("steps", np.arange(1, len(y) + 1)), dtype=float)[: len(y)]
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[smooth - 1:]
        ax.plot(x, y, label=key)
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    if len(keys) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_samples_2d(points: torch.Tensor, ax=None, title: str | None = None, color=None,
                    s: float = 4, alpha: float = 0.5, lim: float | None = None, label=None):
    """Scatter ``[n, 2]`` points (optionally coloured, e.g. by class)."""
    pts = torch.as_tensor(points).detach().cpu().float()
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points: expected shape [n, 2], got {tuple(pts.shape)}")
    ax = _axes(ax, (4, 4))
    c = color.detach().cpu().numpy() if isinstance(color, torch.Tensor) else color
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, c=c, label=label,
               cmap="tab10" if c is not None and not isinstance(c, str) else None)
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    if title:
        ax.set_title(title)
    return ax


def plot_density_2d(log_prob: Callable[[torch.Tensor], torch.Tensor], lim: float = 3.0,
                    resolution: int = 200, ax=None, title: str | None = None, cmap: str = "viridis"):
    """Image of a 2-D density ``exp(log_prob(x))`` on ``[-lim, lim]^2``."""
    ticks = torch.linspace(-lim, lim, resolution)
    grid = torch.cartesian_prod(ticks, ticks)                     # [(r*r), 2], x-major
    with torch.no_grad():
        dens = log_prob(grid).exp().reshape(resolution, resolution).T
    ax = _axes(ax, (4, 4))
    ax.imshow(dens.cpu().numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def interpolation_strip(rows: Sequence[torch.Tensor] | torch.Tensor, labels: Sequence[str] = (),
                        value_range: tuple[float, float] = (0, 1), scale: float = 0.6):
    """Show one or more interpolation strips (each ``[steps, C, H, W]``), one row each."""
    if isinstance(rows, torch.Tensor):
        rows = [rows]
    rows = list(rows)
    if not rows or any(r.ndim != 4 for r in rows):
        raise ValueError("rows: expected one or more [steps, C, H, W] tensors")
    steps = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), 1, figsize=(scale * steps + 1, scale * len(rows) + 0.3),
                             squeeze=False)
    for ax, row, i in zip(axes[:, 0], rows, range(len(rows)), strict=False):
        show_images(row, nrow=steps, ax=ax, value_range=value_range)
        if i < len(labels):
            ax.set_title(labels[i], fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def explorer(render: Callable[..., None], static: Sequence[Mapping] = (), **controls):
    """An ipywidgets explorer that also leaves a static figure for readers without a kernel.

    ``render(**values)`` draws one figure (and calls nothing else); ``controls`` map each argument
    to an ipywidgets control or an ``interact`` abbreviation such as ``(-3.0, 3.0, 0.1)``.
    First each setting in ``static`` (a list of argument dicts) is drawn as an ordinary PNG
    figure; then, when ipywidgets can display, the interactive version is shown below it.
    Returns the ``interactive`` widget (or ``None`` outside a notebook).
    """
    if not callable(render):
        raise TypeError("render: expected a function that draws one figure")
    for values in static:
        render(**values)
        plt.show()
    try:
        import ipywidgets as widgets
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - both ship with jupyterlab
        return None
    if get_ipython() is None:
        return None

    def draw(**values):
        render(**values)
        plt.show()

    ui = widgets.interactive(draw, **controls)
    display(ui)
    return ui


def plot_sweeps(results: Mapping[str, tuple[Sequence, Mapping[str, Sequence[float]]]],
                keys: Sequence[str], ncols: int = 4, logy: Sequence[str] = (),
                xlabel: str = "level (0 = clean)"):
    """One panel per metric in ``keys``, one line per experiment.

    ``results`` maps an experiment name to ``(levels, table)``, where ``table`` maps each metric
    to its value at each level (as returned by ``companion.metrics.sweep``). Levels are drawn at
    positions 0, 1, 2, ... so experiments with different units share an axis.
    """
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, (levels, table) in results.items():
            if key not in table:
                raise ValueError(f"keys: {key!r} is missing from the results of {name!r}")
            ax.plot(range(len(levels)), table[key], marker="o", ms=3, label=name)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        if key in logy:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(keys):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
