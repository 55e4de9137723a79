"""Lesson 00 checkers: accept the reference, reject plausible wrong answers with the right hint."""
import math

import torch

from companion import basics
from companion.exercises import lesson00 as check
from companion.exercises.testing import verify_checker

LOG_2PI = math.log(2 * math.pi)


def test_gaussian_nll_checker():
    def no_constant(x, mu, log_sigma):
        return basics.gaussian_nll(x, mu, log_sigma) - 0.5 * LOG_2PI

    def sigma_not_squared(x, mu, log_sigma):
        log_sigma = torch.as_tensor(log_sigma)
        return (0.5 * LOG_2PI + log_sigma + 0.5 * (x - mu) ** 2 / log_sigma.exp()).mean()

    def summed(x, mu, log_sigma):
        return basics.gaussian_nll(x, mu, log_sigma) * len(x)

    def log_likelihood(x, mu, log_sigma):
        return -basics.gaussian_nll(x, mu, log_sigma)

    def detached(x, mu, log_sigma):
        return basics.gaussian_nll(x, torch.as_tensor(mu).item(), torch.as_tensor(log_sigma).item())

    verify_checker(check.gaussian_nll, basics.gaussian_nll, wrong={
        "constant": no_constant,
        "sigma^2": sigma_not_squared,
        "not the sum": summed,
        "sign is flipped": log_likelihood,
        "no .item()": detached,
    })


def test_bernoulli_nll_checker():
    def ones_only(x, p):
        return -(x * torch.log(p)).reshape(len(x), -1).sum(1)

    def mean_pixels(x, p):
        return basics.bernoulli_nll(x, p) / x[0].numel()

    def unclamped(x, p):
        return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).reshape(len(x), -1).sum(1)

    def total(x, p):
        return basics.bernoulli_nll(x, p).sum()

    verify_checker(check.bernoulli_nll, basics.bernoulli_nll, wrong={
        "off pixels cost nats": ones_only,
        "not the mean": mean_pixels,
        "clamp p": unclamped,
        "expected shape": total,
    })


def test_sample_categorical_checker():
    def uniform(probs, n, generator=None):
        return torch.randint(len(probs), (n,), generator=generator)

    def off_by_one(probs, n, generator=None):
        cdf = torch.cumsum(probs, 0)
        return (cdf <= torch.rand(n, generator=generator)[:, None]).sum(1) + 1

    def pdf_not_cdf(probs, n, generator=None):
        return torch.searchsorted(probs, torch.rand(n, generator=generator))

    def floats(probs, n, generator=None):
        return basics.sample_categorical(probs, n, generator).float()

    def ignores_generator(probs, n, generator=None):  # right distribution, unseeded stream
        return basics.sample_categorical(probs, n, None)

    verify_checker(check.sample_categorical, basics.sample_categorical, wrong={
        "ignores probs": uniform,
        "off-by-one (+1)": off_by_one,
        "not the pdf": pdf_not_cdf,
        "not floats": floats,
        "one call torch.rand": ignores_generator,
    })


def test_bits_per_dim_checker():
    verify_checker(check.bits_per_dim, basics.bits_per_dim, wrong={
        "not log10": lambda nll, d: nll / (d * math.log10(2)),
        "do not multiply": lambda nll, d: nll * math.log(2) / d,
        "number of dimensions too": lambda nll, d: nll / math.log(2),
        "tensors and numbers": lambda nll, d: math.log2(math.e) * float(nll) / d,
    })


def test_checker_reports_non_function_and_never_raises(capsys):
    result = check.bits_per_dim(42)
    assert result.status == "failed"
    assert "pass the function itself" in capsys.readouterr().out


def test_checker_survives_student_exception(capsys):
    def broken(nll, d):
        raise RuntimeError("shape '[2]' is invalid")

    result = check.bits_per_dim(broken)
    assert result.status == "failed"
    out = capsys.readouterr().out
    assert "raised RuntimeError" in out and "shape mismatch" in out
