"""Sample-based metrics for generative models, written from their equations.

Inputs are *features* ``[N, d]`` (from :mod:`companion.metrics.classifier`) or class
*probabilities* ``[N, K]``; everything is computed in float64, vectorised, on the inputs' device.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import warnings

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _features(x, name: str, min_n: int = 2) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy array [N, d], "
                        f"got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected shape [N, d], got {tuple(x.shape)}")
    if len(x) < min_n:
        raise ValueError(f"{name}: expected at least {min_n} samples, got {len(x)}")
    x = x.to(torch.float64)
    # One reduction catches any NaN or inf cheaply; the element-wise test confirms (a sum of
    # huge finite values can overflow).
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    return x


def _pair(a, b, names=("real", "fake"), min_n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _features(a, names[0], min_n), _features(b, names[1], min_n)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]}: feature sizes differ "
                         f"({a.shape[1]} vs {b.shape[1]})")
    return a, b.to(a.device)


def _probs(p, name: str = "probs") -> torch.Tensor:
    p = _features(p, name, min_n=1)
    if (p < -1e-9).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype,
                                                                      device=p.device), atol=1e-4):
        raise ValueError(f"{name}: expected rows of probabilities (non-negative, summing to 1)")
    return p.clamp_min(0)


# ---------------------------------------------------------------------------------------------
# Inception Score and Mode Score
# ---------------------------------------------------------------------------------------------


def _is_one(p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    marginal = p.mean(0, keepdim=True)
    kl = (p * (torch.log(p + eps) - torch.log(marginal + eps))).sum(1)
    return kl.mean().exp()


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016), mean and std over ``splits``.

    log IS is the mutual information I(x; y) between an image and its predicted class: high when
    every sample is classified confidently (low H(y|x)) and the classes are diverse (high H(y)).
    ``probs``: ``[N, K]`` class probabilities; the samples are split in order into ``splits``
    chunks (shuffle first if the order carries meaning). Returns ``(mean, std)`` (std with
    ``ddof=0``, as in the original code).
    """
    p = _probs(probs)
    if not isinstance(splits, int) or not 1 <= splits <= len(p):
        raise ValueError(f"splits: expected an int in [1, N={len(p)}], got {splits!r}")
    scores = torch.stack([_is_one(chunk) for chunk in p.chunk(splits)])
    return scores.mean().item(), scores.std(unbiased=False).item() if splits > 1 else 0.0


def mode_score(probs, real_probs, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """Mode Score (Che et al. 2017): exp(E_x KL(p(y|x) || p*(y)) - KL(p(y) || p*(y))).

    p*(y) is the class distribution of real data (the mean of ``real_probs [M, K]``), p(y) the
    marginal of the generated samples (per split). Unlike IS, it penalises a class marginal that
    differs from the data's. Returns ``(mean, std)`` over ``splits`` chunks, like
    :func:`inception_score`.
    """
    p, q = _probs(probs), _probs(real_probs, "real_probs")
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"probs and real_probs: class counts differ ({p.shape[1]} vs {q.shape[1]})")
    if not isinstance(splits, int) or not 1 <= splits <= len(p):
        raise ValueError(f"splits: expected an int in [1, N={len(p)}], got {splits!r}")
    prior = q.mean(0, keepdim=True).to(p.device)

    def one(chunk: torch.Tensor) -> torch.Tensor:
        marginal = chunk.mean(0, keepdim=True)
        term1 = (chunk * (torch.log(chunk + eps) - torch.log(prior + eps))).sum(1).mean()
        term2 = (marginal * (torch.log(marginal + eps) - torch.log(prior + eps))).sum()
        return (term1 - term2).exp()

    values = torch.stack([one(chunk) for chunk in p.chunk(splits)])
    return values.mean().item(), values.std(unbiased=False).item() if splits > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------


def _gram(xc: torch.Tensor, blocks: int = 8) -> torch.Tensor:
    """xc^T xc for ``xc [N, d]``, exploiting symmetry: split the d columns into ``blocks`` and
    multiply only the blocks on and above the diagonal ((blocks + 1) / (2 blocks) of the flops of
    one big product), mirroring the rest."""
    d = xc.shape[1]
    out = torch.empty(d, d, dtype=xc.dtype, device=xc.device)
    edges = [round(i * d / blocks) for i in range(blocks + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        row = xc[:, lo:hi].T @ xc[:, lo:]                # block row [lo:hi, lo:]
        out[lo:hi, lo:] = row
        out[lo:, lo:hi] = row.T
    return out


def feature_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[d]`` and covariance ``[d, d]`` (unbiased, float64) of features ``[N, d]``."""
    return _stats(_features(features, "features"))


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = x.mean(0)
    xc = (x - mu).contiguous()
    return mu, _gram(xc) / (len(x) - 1)


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S1 S2) = sum_i sqrt(lambda_i(S1^1/2 S2 S1^1/2)), eigenvalues clamped at 0.

    S1 S2 is similar to the symmetric PSD matrix S1^1/2 S2 S1^1/2, so both have the same
    eigenvalues and one symmetric eigenvalue solve replaces a general matrix square root. When
    S1 is positive definite, its Cholesky factor L (S1 = L L^T) does the same job more cheaply:
    L^T S2 L = L^-1 (S1 S2) L is similar to S1 S2 too. A singular S1 (fewer samples than
    dimensions) takes the eigendecomposition route.
    """
    factor, info = torch.linalg.cholesky_ex(s1)
    if int(info) == 0:
        m = factor.T @ s2 @ factor
    else:
        root = _sqrt_psd(s1)
        m = root @ s2 @ root
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2) (Heusel et al. 2017)."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"stats: expected mu [d] and sigma [d, d] for both sets, got "
                         f"{tuple(mu1.shape)}, {tuple(s1.shape)}, {tuple(mu2.shape)}, "
                         f"{tuple(s2.shape)}")
    s2, mu2 = s2.to(s1.device), mu2.to(mu1.device)
    value = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * trace_sqrt_product(s1, s2)
    return max(value.item(), 0.0)


def fid(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, d]`` and ``[M, d]``.

    With fewer samples than dimensions the covariances are singular: the value is still defined,
    but biased; a warning says so.
    """
    real, fake = _pair(real, fake)
    n = min(len(real), len(fake))
    if n <= real.shape[1]:
        warnings.warn(f"fid: {n} samples for {real.shape[1]} feature dimensions: the covariance "
                      f"is singular and FID is a biased estimate; use more samples than "
                      f"dimensions", UserWarning, stacklevel=2)
    return fid_from_stats(*_stats(real), *_stats(fake))


def save_stats(path, mu, sigma) -> pathlib.Path:
    """Save FID statistics to ``.npz`` atomically (temporary file, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, mu=torch.as_tensor(mu).cpu().numpy(), sigma=torch.as_tensor(sigma).cpu().numpy())
    os.replace(tmp, path)
    return path


def load_stats(path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as f:
        return torch.from_numpy(f["mu"]), torch.from_numpy(f["sigma"])


def fid_infinity(real, fake, sizes=None, generator: torch.Generator | None = None
                 ) -> tuple[float, dict]:
    """FID extrapolated to infinitely many generated samples (Chong and Forsyth 2020).

    FID is biased upwards at finite N, with a bias close to linear in 1/N. Compute FID for random
    subsets of ``fake`` of several ``sizes`` (against all of ``real``), fit FID = a + b / N by
    least squares, and return the intercept a with ``{"sizes", "fids", "slope"}``. (The paper
    draws the subsets with a Sobol sequence; random subsets are the simpler variant.)
    """
    real, fake = _pair(real, fake)
    n = len(fake)
    sizes = sizes or sorted({max(2, int(n * f)) for f in (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)})
    if len(sizes) < 2 or max(sizes) > n or min(sizes) < 2:
        raise ValueError(f"sizes: expected at least two sizes in [2, {n}], got {sizes}")
    mu_r, s_r = _stats(real)
    fids = []
    for m in sizes:
        idx = torch.randperm(n, generator=generator)[:m]
        fids.append(fid_from_stats(mu_r, s_r, *_stats(fake[idx.to(fake.device)])))
    x = np.array([1.0 / m for m in sizes])
    slope, intercept = np.polyfit(x, np.array(fids), 1)
    return float(intercept), {"sizes": list(sizes), "fids": fids, "slope": float(slope)}


# ---------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / d + 1)^3, the kernel of Binkowski et al. 2018."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 = mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean k(x_i,y_j)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sum_xx = kxx.sum() - kxx.diagonal().sum()
    sum_yy = kyy.sum() - kyy.diagonal().sum()
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * kxy.mean()


def kid(real, fake, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): mean and std of the unbiased MMD^2
    with the cubic polynomial kernel over ``subsets`` random subsets of ``subset_size`` each."""
    real, fake = _pair(real, fake)
    if subset_size < 2 or subset_size > min(len(real), len(fake)):
        raise ValueError(f"subset_size: expected 2 <= subset_size <= {min(len(real), len(fake))}"
                         f" (the smaller set), got {subset_size}")
    if subsets < 1:
        raise ValueError(f"subsets: expected >= 1, got {subsets}")
    values = []
    for _ in range(subsets):
        i = torch.randperm(len(real), generator=generator)[:subset_size].to(real.device)
        j = torch.randperm(len(fake), generator=generator)[:subset_size].to(fake.device)
        values.append(mmd2_unbiased(real[i], fake[j]))
    values = torch.stack(values)
    return values.mean().item(), (values.std(unbiased=False).item() if subsets > 1 else 0.0)


# ---------------------------------------------------------------------------------------------
# k-NN based: precision, recall, density, coverage; 1-NN two-sample test
# ---------------------------------------------------------------------------------------------


def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[N, M]`` (float64, computed from differences, not the dot trick)."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest *other* point of the same set."""
    if not 1 <= k < len(x):
        raise ValueError(f"k: expected 1 <= k < N={len(x)}, got {k}")
    d = pairwise_distances(x, x)
    return d.kthvalue(k + 1, dim=1).values        # the smallest (k = 1) is the point itself


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    The real manifold is the union of balls around real points with radius = distance to the
    k-th nearest real neighbour; precision is the share of fake samples inside it. Recall swaps
    the roles: the share of real samples inside the fake manifold.
    """
    real, fake = _pair(real, fake)
    d = pairwise_distances(real, fake)                              # [N_real, N_fake]
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    precision = (d < r_real[:, None]).any(0).double().mean().item()
    recall = (d < r_fake[None, :]).any(1).double().mean().item()
    return precision, recall


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020).

    density = 1/(k M) sum_j sum_i 1[fake_j in B(real_i, r_i)] (how many real balls contain each
    fake sample, can exceed 1); coverage = share of real points whose ball contains a fake sample.
    """
    real, fake = _pair(real, fake)
    d = pairwise_distances(real, fake)
    r_real = knn_radii(real, k)
    inside = d < r_real[:, None]
    density = inside.sum(0).double().mean().item() / k
    coverage = (d.min(1).values < r_real).double().mean().item()
    return density, coverage


def one_nn_accuracy(real, fake) -> dict:
    """Leave-one-out 1-NN two-sample test (Lopez-Paz and Oquab 2017; Xu et al. 2018).

    Pool real (label 1) and fake (label 0), classify each point by its nearest other point, and
    report the accuracy on real, on fake, and overall. 0.5 means indistinguishable; near 1.0 means
    the sets are separable; real accuracy near 0 with fake accuracy near 1 means memorised copies.
    """
    real, fake = _pair(real, fake)
    pooled = torch.cat([real, fake])
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(pooled.device)
    d = pairwise_distances(pooled, pooled)
    d.fill_diagonal_(float("inf"))
    correct = labels[d.argmin(1)] == labels
    return {"real": correct[: len(real)].double().mean().item(),
            "fake": correct[len(real):].double().mean().item(),
            "overall": correct.double().mean().item()}


# ---------------------------------------------------------------------------------------------
# Wasserstein-1 between sample sets
# ---------------------------------------------------------------------------------------------


def wasserstein1_exact(x, y) -> float:
    """Exact W1 between two equal-size empirical distributions: the optimal assignment
    (Hungarian algorithm) of x_i to y_j minimising the mean Euclidean distance. O(n^3)."""
    x, y = _pair(x, y, ("x", "y"), min_n=1)
    if len(x) != len(y):
        raise ValueError(f"x and y: exact W1 here needs equal sizes, got {len(x)} and {len(y)}")
    from scipy.optimize import linear_sum_assignment

    cost = pairwise_distances(x, y).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def wasserstein1_sliced(x, y, projections: int = 256, generator: torch.Generator | None = None
                        ) -> float:
    """Sliced W1: the mean over random unit directions u of the 1-D W1 between <x, u> and
    <y, u>, each the mean gap between sorted projections (quantiles when sizes differ).
    A lower bound on W1 (projections shrink distances), O(n log n) per direction."""
    x, y = _pair(x, y, ("x", "y"), min_n=1)
    u = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64).to(x.device)
    u = u / u.norm(dim=0, keepdim=True)
    px, py = (x @ u).sort(0).values, (y @ u).sort(0).values
    if len(px) != len(py):
        q = torch.linspace(0, 1, max(len(px), len(py)) * 4, dtype=torch.float64, device=x.device)
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)
    return (px - py).abs().mean().item()


def wasserstein1(x, y, exact_max: int = 2000, **kwargs) -> float:
    """W1: exact for equal sizes up to ``exact_max`` samples, sliced otherwise."""
    n, m = len(x), len(y)
    if n == m and n <= exact_max:
        return wasserstein1_exact(x, y)
    return wasserstein1_sliced(x, y, **kwargs)


# ---------------------------------------------------------------------------------------------
# Class coverage
# ---------------------------------------------------------------------------------------------


def class_coverage(probs, threshold: float | None = None) -> dict:
    """Share of samples per predicted class and the number of classes above ``threshold``
    (default: half the uniform share, 1 / (2K)). Mode collapse shows as missing classes."""
    p = _probs(probs)
    k = p.shape[1]
    threshold = 1 / (2 * k) if threshold is None else threshold
    share = torch.bincount(p.argmax(1), minlength=k).double() / len(p)
    return {"share": share.tolist(), "classes_covered": int((share >= threshold).sum()),
            "threshold": threshold, "max_share": share.max().item()}


def inception_score_entropy_terms(probs, eps: float = 1e-12) -> tuple[float, float]:
    """H(y) and E_x H(y|x), whose difference is log IS = I(x; y)."""
    p = _probs(probs)
    marginal = p.mean(0)
    h_y = -(marginal * torch.log(marginal + eps)).sum().item()
    h_y_x = -(p * torch.log(p + eps)).sum(1).mean().item()
    return h_y, h_y_x
