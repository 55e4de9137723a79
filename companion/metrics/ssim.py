"""SSIM and MS-SSIM (Wang et al. 2004; Wang, Simoncelli and Bovik 2003), batched in torch.

SSIM compares local statistics of two images x and y under a Gaussian window:

    l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)          luminance
    c = (2 s_x s_y + C2) / (s_x^2 + s_y^2 + C2)              contrast
    s = (s_xy + C2/2) / (s_x s_y + C2/2)                     structure
    SSIM = l * c * s = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

with C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, L the data range, window 11x11 with
sigma 1.5, averaged over the positions where the window fits inside the image (this equals
scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``, which crops the border that its padding affects).

MS-SSIM adapted to 28x28: the published MS-SSIM uses 5 scales, each halving the image, with an
11x11 window: the coarsest scale would be under 2 pixels wide. For MNIST we use 3 scales
(28, 14, 7 pixels), a 7x7 window with sigma 1.0 (so it fits the 7x7 scale), and the first three of
the published scale weights (0.0448, 0.2856, 0.3001) renormalised to sum to 1. Contrast-structure
terms come from every scale, luminance from the coarsest, as in the original.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03
MS_WEIGHTS = torch.tensor([0.0448, 0.2856, 0.3001], dtype=torch.float64)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian ``[size]`` (float64)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd positive window size, got {size}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _check(x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor [N, C, H, W], got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name}: expected shape [N, C, H, W], got {tuple(t.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"x and y: shapes differ ({tuple(x.shape)} vs {tuple(y.shape)})")
    if min(x.shape[-2:]) < size:
        raise ValueError(f"x: images of {tuple(x.shape[-2:])} are smaller than the "
                         f"{size}x{size} window")
    return x.double(), y.to(x.device).double()


def _filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of ``[N, C, H, W]`` per channel."""
    c = x.shape[1]
    kx = w.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = w.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)


def ssim_terms(x, y, data_range: float = 1.0, size: int = 11, sigma: float = 1.5):
    """Maps of the luminance term and the contrast-structure term cs = c * s, ``[N, C, H', W']``."""
    x, y = _check(x, y, size)
    w = gaussian_window(size, sigma).to(x.device)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, w), _filter(y, w)
    var_x = _filter(x * x, w) - mu_x**2
    var_y = _filter(y * y, w) - mu_y**2
    cov = _filter(x * y, w) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return luminance, cs


def ssim(x, y, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
         reduction: str = "none") -> torch.Tensor:
    """SSIM per image ``[N]`` (mean over channels and valid positions), or its mean."""
    luminance, cs = ssim_terms(x, y, data_range, size, sigma)
    per_image = (luminance * cs).flatten(1).mean(1)
    return per_image.mean() if reduction == "mean" else per_image


def ms_ssim(x, y, data_range: float = 1.0, size: int = 7, sigma: float = 1.0,
            weights: torch.Tensor = MS_WEIGHTS) -> torch.Tensor:
    """MS-SSIM per image ``[N]`` over ``len(weights)`` scales (3 for 28x28, see the module doc):
    prod_j cs_j^{w_j} at scales 1..M-1 times (l_M cs_M)^{w_M} at the coarsest, weights summing to 1.
    Negative cs values (anti-correlated patches) are clamped to 0 before the powers."""
    weights = weights / weights.sum()
    x, y = _check(x, y, size)
    result = torch.ones(len(x), dtype=torch.float64, device=x.device)
    for j, w in enumerate(weights):
        luminance, cs = ssim_terms(x, y, data_range, size, sigma)
        if j == len(weights) - 1:
            value = (luminance * cs).flatten(1).mean(1)
        else:
            value = cs.flatten(1).mean(1)
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        result = result * value.clamp_min(0) ** w
    return result
