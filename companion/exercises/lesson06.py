"""Checkers for lesson 06 (evaluating generative models)."""
from __future__ import annotations

import torch

from companion.exercises import checker
from companion.metrics import scores
from companion.metrics.ssim import K1, K2


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _stats_pair(seed: int, d: int = 6):
    g = _gen(seed)
    a = torch.randn(200, d, generator=g, dtype=torch.float64)
    b = torch.randn(150, d, generator=g, dtype=torch.float64) @ (
        torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=g, dtype=torch.float64))
    b = b + 0.5
    return (*scores.feature_stats(a), *scores.feature_stats(b))


@checker("fid_from_stats")
def fid_from_stats(t, fn):
    for seed in (0, 1):
        mu1, s1, mu2, s2 = _stats_pair(seed)
        expected = scores.fid_from_stats(mu1, s1, mu2, s2)
        got = t.call(fn, mu1, s1, mu2, s2)
        tr = scores.trace_sqrt_product(s1, s2).item()
        mean_term = (mu1 - mu2).pow(2).sum().item()
        base = s1.trace().item() + s2.trace().item()
        t.close(got, expected, f"FID of two Gaussians in 6-D (seed {seed})",
                "||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)", atol=1e-6, rtol=1e-6,
                diagnose={
                    "the trace term needs its factor 2": mean_term + base - tr,
                    "tr sqrt(S1 S2) is the matrix square root of the product, not the "
                    "element-wise sqrt of S1 * S2":
                        mean_term + base - 2 * (s1 * s2).clamp_min(0).sqrt().trace().item(),
                    "the mean term ||mu1 - mu2||^2 is missing": base - 2 * tr,
                    "square the distance between the means": mean_term**0.5 + base - 2 * tr,
                })
    mu1, s1, _, _ = _stats_pair(2)
    got = t.call(fn, mu1, s1, mu1, s1)
    t.close(got, 0.0, "FID of a distribution with itself is 0",
            "take the real part of sqrtm and check the trace term", atol=1e-5)


@checker("inception_score")
def inception_score(t, fn):
    g = _gen(0)
    probs = torch.softmax(torch.randn(300, 10, generator=g, dtype=torch.float64) * 2, 1)
    expected = scores.inception_score(probs, splits=1)[0]
    marginal = probs.mean(0, keepdim=True)
    got = t.call(fn, probs)
    t.close(got, expected, "IS of random class probabilities", "exp(mean_x KL(p(y|x) || p(y)))",
            atol=1e-6, rtol=1e-6,
            diagnose={
                "return exp of the mean KL, not the mean KL itself (log IS)":
                    torch.log(torch.tensor(expected)).item(),
                "KL(p(y|x) || p(y)), not KL(p(y) || p(y|x)): the direction matters":
                    (marginal * (marginal.log() - probs.log())).sum(1).mean().exp().item(),
                "p(y) is the marginal over all samples, mean of p(y|x) over x": 1.0,
            })
    one_hot = torch.eye(10, dtype=torch.float64).repeat(30, 1)
    got = t.call(fn, one_hot)
    t.close(got, 10.0, "confident and balanced predictions give IS = number of classes",
            "add a small eps (1e-12) inside the logs so that 0 log 0 counts as 0", atol=1e-4)
    got = t.call(fn, torch.full((50, 10), 0.1, dtype=torch.float64))
    t.close(got, 1.0, "uniform predictions give IS = 1", "check the KL term", atol=1e-6)


@checker("kid_unbiased")
def kid_unbiased(t, fn):
    g = _gen(3)
    x = torch.randn(40, 8, generator=g, dtype=torch.float64)
    y = torch.randn(30, 8, generator=g, dtype=torch.float64) * 1.2 + 0.3
    expected = scores.mmd2_unbiased(x, y).item()
    d = x.shape[1]

    def mmd(kernel, unbiased=True, cross=-2.0):
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        m, n = len(x), len(y)
        if unbiased:
            sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
            syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        else:
            sxx, syy = kxx.mean(), kyy.mean()
        return (sxx + syy + cross * kxy.mean()).item()

    got = t.call(fn, x, y)
    t.close(got, expected, "unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3",
            "mean of k over pairs i != j within each set, minus twice the mean cross term",
            atol=1e-8, rtol=1e-6,
            diagnose={
                "unbiased: leave out the diagonal k(x_i, x_i) and divide by m(m - 1)":
                    mmd(scores.polynomial_kernel, unbiased=False),
                "the kernel divides the dot product by the feature size d":
                    mmd(lambda a, b: (a @ b.T + 1) ** 3),
                "the kernel is cubic: (a.b / d + 1)^3":
                    mmd(lambda a, b: (a @ b.T / d + 1) ** 2),
                "subtract the cross term twice: - 2 mean k(x, y)":
                    mmd(scores.polynomial_kernel, cross=-1.0),
            })
    x2 = torch.randn(25, 8, generator=g, dtype=torch.float64)
    got = t.call(fn, x2, y)
    t.close(got, scores.mmd2_unbiased(x2, y).item(), "sets of different sizes (25 and 30)",
            "normalise each within-set sum by its own m(m - 1) and n(n - 1)", atol=1e-8, rtol=1e-6)


@checker("one_nn_accuracy")
def one_nn_accuracy(t, fn):
    g = _gen(4)
    real = torch.randn(60, 5, generator=g, dtype=torch.float64)
    fake = torch.randn(50, 5, generator=g, dtype=torch.float64) * 0.8 + 0.7
    expected = scores.one_nn_accuracy(real, fake)["overall"]
    got = t.call(fn, real, fake)
    t.close(got, expected, "leave-one-out 1-NN accuracy on a pooled set",
            "label real 1 and fake 0, classify each point by its nearest *other* point",
            atol=1e-9,
            diagnose={
                "leave one out: a point must not be its own nearest neighbour "
                "(set the diagonal of the distance matrix to inf)": 1.0,
                "count correct predictions (the label of the nearest neighbour equals the "
                "point's own), not wrong ones": 1 - expected,
            })
    far = t.call(fn, real, real + 50.0)
    t.close(far, 1.0, "separable sets give accuracy 1.0",
            "use the nearest (smallest distance) neighbour, not the farthest", atol=1e-9)


@checker("ssim_terms")
def ssim_terms(t, fn):
    g = _gen(5)
    mu_x, mu_y = torch.rand(20, generator=g, dtype=torch.float64), torch.rand(20, generator=g,
                                                                              dtype=torch.float64)
    var_x = torch.rand(20, generator=g, dtype=torch.float64) * 0.1
    var_y = torch.rand(20, generator=g, dtype=torch.float64) * 0.1
    cov = (torch.rand(20, generator=g, dtype=torch.float64) * 2 - 1) * (var_x * var_y).sqrt()
    c1, c2 = K1**2, K2**2
    c3 = c2 / 2
    sx, sy = var_x.sqrt(), var_y.sqrt()
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    con = (2 * sx * sy + c2) / (var_x + var_y + c2)
    st = (cov + c3) / (sx * sy + c3)
    got = t.call(fn, mu_x, mu_y, var_x, var_y, cov)
    if not t.expect(isinstance(got, (tuple, list)) and len(got) == 3,
                    "returns three tensors (luminance, contrast, structure)",
                    "return a tuple (l, c, s)"):
        return
    l_got, c_got, s_got = got
    t.close(l_got, lum, "luminance term l", "(2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)",
            atol=1e-9, diagnose={
                "the constants stabilise the division: C1 = (K1 L)^2 = 1e-4":
                    (2 * mu_x * mu_y) / (mu_x**2 + mu_y**2),
                "the numerator is 2 mu_x mu_y + C1": (mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)})
    t.close(c_got, con, "contrast term c", "(2 s_x s_y + C2) / (s_x^2 + s_y^2 + C2)",
            atol=1e-9, diagnose={
                "contrast compares standard deviations: 2 s_x s_y in the numerator, variances "
                "below": (2 * var_x * var_y + c2) / (var_x + var_y + c2)})
    t.close(s_got, st, "structure term s", "(s_xy + C3) / (s_x s_y + C3) with C3 = C2 / 2",
            atol=1e-9, diagnose={
                "the structure term uses C3 = C2 / 2": (cov + c2) / (sx * sy + c2),
                "structure divides by s_x s_y (standard deviations), not the variances":
                    (cov + c3) / (var_x * var_y + c3)})


@checker("knn_precision")
def knn_precision(t, fn):
    g = _gen(6)
    real = torch.randn(80, 4, generator=g, dtype=torch.float64)
    fake = torch.randn(70, 4, generator=g, dtype=torch.float64) * 1.5 + 0.8
    expected = scores.precision_recall(real, fake, k=3)[0]
    d = scores.pairwise_distances(real, fake)
    dist_rr = scores.pairwise_distances(real, real)
    wrong_radius = dist_rr.kthvalue(3, dim=1).values         # counts the point itself
    got = t.call(fn, real, fake, 3)
    t.close(got, expected, "precision with k = 3", "share of fake samples inside some real ball",
            atol=1e-9, diagnose={
                "the k-th nearest neighbour excludes the point itself (take the (k+1)-th "
                "smallest distance, the smallest being 0)":
                    (d < wrong_radius[:, None]).any(0).double().mean().item(),
                "precision asks about fake samples in the real manifold; this is recall":
                    scores.precision_recall(real, fake, k=3)[1],
                "a fake sample counts if it is inside ANY real ball (any over real points)":
                    (d < scores.knn_radii(real, 3)[:, None]).all(0).double().mean().item(),
            })
    got = t.call(fn, real, real[:40].clone(), 3)
    t.close(got, 1.0, "real samples as 'fake' give precision 1", "check the comparison",
            atol=1e-9)
