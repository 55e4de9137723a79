"""FID speed at feature size 2048 with 10,000 samples per side.

Compares companion.metrics.fid (eigenvalues of S1^1/2 S2 S1^1/2 via two symmetric eigh) with
the SciPy sqrtm route (the reference code of Heusel et al.) and with torchmetrics' computation,
on identical features, and prints times, ratios and the agreement of the values.

    python benchmarks/fid_speed.py [--n 10000] [--d 2048] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from companion.metrics import scores


def scipy_route(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class _Identity(torch.nn.Module):
    """A torchmetrics feature module that passes precomputed features through."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def torchmetrics_route(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Identity(a.shape[1]))
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def timed(fn, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    # Features with a realistic spread of variances: a random linear map of Gaussian noise.
    mix = torch.randn(args.d, args.d, generator=g, dtype=torch.float64) / args.d**0.5
    a = torch.randn(args.n, args.d, generator=g, dtype=torch.float64) @ mix
    b = (torch.randn(args.n, args.d, generator=g, dtype=torch.float64) * 1.1 + 0.05) @ mix
    print(f"FID, n = {args.n:,} per side, d = {args.d}, torch threads = {torch.get_num_threads()}")
    t_ours, v_ours = timed(lambda: scores.fid(a, b), args.repeats)
    t_scipy, v_scipy = timed(lambda: scipy_route(a.numpy(), b.numpy()), args.repeats)
    rows = [("companion", t_ours, v_ours), ("scipy sqrtm", t_scipy, v_scipy)]
    try:
        t_tm, v_tm = timed(lambda: torchmetrics_route(a, b), args.repeats)
        rows.append(("torchmetrics", t_tm, v_tm))
    except ImportError:
        print("torchmetrics not installed: skipped")
    for name, t, v in rows:
        print(f"  {name:<18} {t:7.2f} s   FID {v:.6f}   rel. diff to companion "
              f"{abs(v - v_ours) / abs(v_ours):.1e}")
    for name, t, _ in rows[1:]:
        print(f"  speed-up over {name}: {t / t_ours:.1f}x")


if __name__ == "__main__":
    main()
