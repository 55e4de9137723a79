"""companion.basics against torch's own distributions on identical inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from companion import basics


def test_gaussian_nll_matches_torch_normal():
    x = torch.randn(100, dtype=torch.float64) * 2 + 1
    mu, log_sigma = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    expected = -torch.distributions.Normal(mu, log_sigma.exp()).log_prob(x).mean()
    assert torch.allclose(basics.gaussian_nll(x, mu, log_sigma), expected, atol=1e-12)


def test_fit_gaussian_is_the_mle():
    x = torch.randn(1000, dtype=torch.float64) * 3 - 2
    mu, log_sigma = basics.fit_gaussian(x)
    assert torch.allclose(mu, x.mean()) and torch.allclose(log_sigma.exp(), x.std(unbiased=False))


def test_bernoulli_nll_matches_binary_cross_entropy():
    x = (torch.rand(8, 1, 5, 5) < 0.5).double()
    p = torch.rand(1, 5, 5, dtype=torch.float64) * 0.98 + 0.01
    expected = F.binary_cross_entropy(p.expand_as(x), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(basics.bernoulli_nll(x, p), expected, atol=1e-10)


def test_sample_categorical_frequencies_and_torch_multinomial():
    probs = torch.tensor([0.5, 0.0, 0.25, 0.25])
    draws = basics.sample_categorical(probs, 100_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    assert freq[1] == 0
    assert torch.allclose(freq, probs.double(), atol=0.01)


def test_sample_categorical_validates():
    with pytest.raises(ValueError, match="probs"):
        basics.sample_categorical(torch.tensor([0.5, 0.2]), 3)
    with pytest.raises(ValueError, match="probs"):
        basics.sample_categorical(torch.tensor([[1.0]]), 3)


def test_bits_per_dim():
    assert basics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_dims"):
        basics.bits_per_dim(1.0, 0)
