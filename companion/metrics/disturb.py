"""Controlled corruptions of real images, to see what each metric detects (lesson 06).

Heusel et al. (2017) judged FID by disturbing real images at increasing levels; Xu et al. (2018)
mixed real and disturbed images and simulated mode collapse. Every function takes images
``[N, 1, H, W]`` in [0, 1] and returns new images in [0, 1]; randomness comes from ``generator``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_noise(x: torch.Tensor, std: float, generator=None) -> torch.Tensor:
    """x + N(0, std^2), clipped to [0, 1]."""
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur with a Gaussian of standard deviation ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    w = torch.exp(-(t**2) / (2 * sigma**2))
    w = w / w.sum()
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, w.view(1, 1, 1, -1))
    return F.conv2d(out, w.view(1, 1, -1, 1)).clamp(0, 1)


def black_rectangles(x: torch.Tensor, count: int, size: int = 7, generator=None) -> torch.Tensor:
    """Paint ``count`` black ``size x size`` squares at random positions in each image."""
    out = x.clone()
    n, _, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    for _ in range(count):
        top = torch.randint(0, h - size + 1, (n, 1, 1), generator=generator)
        left = torch.randint(0, w - size + 1, (n, 1, 1), generator=generator)
        mask = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
        out[mask.unsqueeze(1)] = 0.0
    return out


def swirl(x: torch.Tensor, strength: float, radius: float = 14.0) -> torch.Tensor:
    """scikit-image's swirl about the image centre (rotation angle strength * exp(-r / radius'))."""
    from skimage.transform import swirl as sk_swirl

    if strength == 0:
        return x.clone()
    arr = x.detach().cpu().numpy()
    out = np.stack([sk_swirl(img[0], strength=strength, radius=radius, mode="constant")
                    for img in arr])[:, None]
    return torch.from_numpy(out).to(x.dtype).clamp(0, 1)


def salt_and_pepper(x: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    """Set a share ``p`` of pixels to 0 or 1 (half each)."""
    u = torch.rand(x.shape, generator=generator)
    out = x.clone()
    out[u < p / 2] = 0.0
    out[(u >= p / 2) & (u < p)] = 1.0
    return out


def shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate right and down by ``pixels`` (zeros enter from the border)."""
    if pixels == 0:
        return x.clone()
    out = torch.zeros_like(x)
    out[..., pixels:, pixels:] = x[..., :-pixels, :-pixels]
    return out


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre by ``degrees`` (bilinear, zeros outside)."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False).clamp(0, 1)


def mix(real: torch.Tensor, disturbed: torch.Tensor, fraction: float, generator=None
        ) -> torch.Tensor:
    """Replace a random ``fraction`` of ``real`` by the matching images of ``disturbed``."""
    if real.shape != disturbed.shape:
        raise ValueError(f"real and disturbed: shapes differ ({tuple(real.shape)} vs "
                         f"{tuple(disturbed.shape)})")
    out = real.clone()
    idx = torch.randperm(len(real), generator=generator)[: int(round(fraction * len(real)))]
    out[idx] = disturbed[idx]
    return out


def pull_to_class_centres(x: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Simulated mode collapse within classes: x <- (1 - alpha) x + alpha * mean image of its class.
    alpha = 1 leaves one image per class (the class mean)."""
    centres = torch.stack([x[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
    return (1 - alpha) * x + alpha * centres[labels]


def drop_classes(x: torch.Tensor, labels: torch.Tensor, n_dropped: int, generator=None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated mode dropping: images of the first ``n_dropped`` classes are replaced by images
    drawn from the remaining classes (the set keeps its size)."""
    keep = labels >= n_dropped
    pool = torch.nonzero(keep).squeeze(1)
    drop = torch.nonzero(~keep).squeeze(1)
    out, out_labels = x.clone(), labels.clone()
    if len(drop):
        pick = pool[torch.randint(0, len(pool), (len(drop),), generator=generator)]
        out[drop], out_labels[drop] = x[pick], labels[pick]
    return out, out_labels
