"""Lesson 06 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import numpy as np
import scipy.linalg
import torch

from companion.exercises import lesson06 as check
from companion.exercises.testing import verify_checker
from companion.metrics import scores
from companion.metrics.ssim import K1, K2

# --- FID from statistics ----------------------------------------------------------------------

def fid_reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * np.trace(covmean))


def test_fid_from_stats_checker():
    def no_factor_2(mu1, s1, mu2, s2):
        covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
        return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - np.trace(covmean))

    def elementwise(mu1, s1, mu2, s2):
        return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace()
                     - 2 * (s1 * s2).clamp_min(0).sqrt().trace())

    def no_mean(mu1, s1, mu2, s2):
        return fid_reference(mu1, s1, mu2, s2) - float((mu1 - mu2).pow(2).sum())

    def norm_not_squared(mu1, s1, mu2, s2):
        return fid_reference(mu1, s1, mu2, s2) - float((mu1 - mu2).pow(2).sum()) \
            + float((mu1 - mu2).norm())

    verify_checker(check.fid_from_stats, fid_reference, wrong={
        "factor 2": no_factor_2, "element-wise": elementwise, "mean term": no_mean,
        "square the distance": norm_not_squared})


# --- Inception Score ---------------------------------------------------------------------------

def is_reference(probs, eps=1e-12):
    marginal = probs.mean(0, keepdim=True)
    return (probs * ((probs + eps).log() - (marginal + eps).log())).sum(1).mean().exp()


def test_inception_score_checker():
    def log_is(probs):
        return is_reference(probs).log()

    def reversed_kl(probs, eps=1e-12):
        m = probs.mean(0, keepdim=True)
        return (m * ((m + eps).log() - (probs + eps).log())).sum(1).mean().exp()

    def per_sample_marginal(probs, eps=1e-12):
        return (probs * ((probs + eps).log() - (probs + eps).log())).sum(1).mean().exp()

    def no_eps(probs):
        m = probs.mean(0, keepdim=True)
        return (probs * (probs.log() - m.log())).sum(1).mean().exp()

    verify_checker(check.inception_score, is_reference, wrong={
        "log is": log_is, "direction matters": reversed_kl, "marginal over all samples":
        per_sample_marginal, "eps": no_eps})


# --- KID -----------------------------------------------------------------------------------------

def test_kid_unbiased_checker():
    def kernel(a, b, scale=True, power=3):
        return (a @ b.T / (a.shape[1] if scale else 1) + 1) ** power

    def mmd(x, y, biased=False, scale=True, power=3, cross=2.0):
        kxx, kyy, kxy = (kernel(x, x, scale, power), kernel(y, y, scale, power),
                         kernel(x, y, scale, power))
        m, n = len(x), len(y)
        if biased:
            return kxx.mean() + kyy.mean() - cross * kxy.mean()
        return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - cross * kxy.mean())

    verify_checker(check.kid_unbiased, mmd, wrong={
        "leave out the diagonal": lambda x, y: mmd(x, y, biased=True),
        "feature size d": lambda x, y: mmd(x, y, scale=False),
        "cubic": lambda x, y: mmd(x, y, power=2),
        "twice": lambda x, y: mmd(x, y, cross=1.0)})


# --- 1-NN -----------------------------------------------------------------------------------------

def one_nn(real, fake, leave_out=True, nearest=True, count_wrong=False):
    x = torch.cat([real, fake])
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
    d = torch.cdist(x, x)
    if leave_out:
        d.fill_diagonal_(float("inf") if nearest else -float("inf"))
    idx = d.argmin(1) if nearest else d.argmax(1)
    correct = (labels[idx] == labels).double().mean().item()
    return 1 - correct if count_wrong else correct


def test_one_nn_accuracy_checker():
    verify_checker(check.one_nn_accuracy, one_nn, wrong={
        "leave one out": lambda r, f: one_nn(r, f, leave_out=False),
        "not wrong ones": lambda r, f: one_nn(r, f, count_wrong=True),
        "not the farthest": lambda r, f: one_nn(r, f, nearest=False)})


# --- SSIM terms ------------------------------------------------------------------------------------

def terms(mu_x, mu_y, var_x, var_y, cov, data_range=1.0, c1_on=True, two=True, c3_half=True,
          c_std=True, s_std=True):
    c1, c2 = (K1 * data_range) ** 2 if c1_on else 0.0, (K2 * data_range) ** 2
    c3 = c2 / 2 if c3_half else c2
    sx, sy = var_x.sqrt(), var_y.sqrt()
    lum = ((2 if two else 1) * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    con = (2 * (sx * sy if c_std else var_x * var_y) + c2) / (var_x + var_y + c2)
    st = (cov + c3) / ((sx * sy if s_std else var_x * var_y) + c3)
    return lum, con, st


def test_ssim_terms_checker():
    verify_checker(check.ssim_terms, terms, wrong={
        "constants stabilise": lambda *a: terms(*a, c1_on=False),
        "2 mu_x mu_y": lambda *a: terms(*a, two=False),
        "c3 = c2 / 2": lambda *a: terms(*a, c3_half=False),
        "compares standard deviations": lambda *a: terms(*a, c_std=False),
        "not the variances": lambda *a: terms(*a, s_std=False),
        "return a tuple": lambda *a: terms(*a)[0]})


# --- precision from k-NN radii ---------------------------------------------------------------------

def precision(real, fake, k=3, self_in=False, swap=False, every=False):
    if swap:
        real, fake = fake, real
    d_rr = torch.cdist(real, real)
    radii = d_rr.kthvalue(k if self_in else k + 1, dim=1).values
    inside = torch.cdist(real, fake) < radii[:, None]
    return (inside.all(0) if every else inside.any(0)).double().mean().item()


def test_knn_precision_checker():
    verify_checker(check.knn_precision, precision, wrong={
        "excludes the point itself": lambda r, f, k: precision(r, f, k, self_in=True),
        "this is recall": lambda r, f, k: precision(r, f, k, swap=True),
        "any real ball": lambda r, f, k: precision(r, f, k, every=True)})


def test_reference_helpers_agree_with_the_test_versions():
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randn(40, 3, generator=g,
                                                                                dtype=torch.float64)
    assert precision(r, f) == scores.precision_recall(r, f, k=3)[0]
    assert one_nn(r, f) == scores.one_nn_accuracy(r, f)["overall"]
