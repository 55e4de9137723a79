"""companion.vae: Gaussian pieces against torch.distributions, the linear-Gaussian closed forms
against Monte Carlo and brute-force Gaussian algebra, the IWAE bound, the estimators, training."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from companion import data, vae


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _binary_images(n=6, seed=0):
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=_gen(seed))


# --- 1. Gaussian building blocks --------------------------------------------------------------

def test_gaussian_kl_matches_torch_distributions():
    mu = torch.randn(7, 5, generator=_gen(1), dtype=torch.float64)
    logvar = torch.randn(7, 5, generator=_gen(2), dtype=torch.float64)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    torch.testing.assert_close(vae.gaussian_kl(mu, logvar), kl_divergence(q, p))
    assert vae.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


def test_log_probs_match_torch_distributions():
    z = torch.randn(3, 4, 5, generator=_gen(3), dtype=torch.float64)
    mu = torch.randn(4, 5, generator=_gen(4), dtype=torch.float64)
    logvar = torch.randn(4, 5, generator=_gen(5), dtype=torch.float64)
    ref = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    torch.testing.assert_close(vae.gaussian_log_prob(z, mu, logvar), ref)
    torch.testing.assert_close(vae.gaussian_log_prob(z),
                               Independent(Normal(0.0, torch.ones(5, dtype=torch.float64)),
                                           1).log_prob(z))
    x = _binary_images(4)
    logits = torch.randn(3, 4, 1, 28, 28, generator=_gen(6))
    ll = vae.bernoulli_log_likelihood(logits, x)
    assert ll.shape == (3, 4)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x.expand_as(logits)).flatten(2)
    torch.testing.assert_close(ll, ref.sum(-1))


def test_reparameterize_moments_and_gradients():
    mu = torch.tensor([0.5, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    z = vae.reparameterize(mu, logvar, samples=200_000, generator=_gen(0))
    assert z.shape == (200_000, 2)
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0]), atol=0.02, rtol=0)
    z.mean(0).sum().backward()           # d mean(z) / d mu = 1; d / d logvar = E[eps] sigma / 2
    torch.testing.assert_close(mu.grad, torch.ones(2))
    assert logvar.grad.abs().max() < 0.02


@settings(max_examples=25, deadline=None)
@given(shape_a=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       shape_b=st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_gaussian_inputs_must_agree(shape_a, shape_b):
    mu, logvar = torch.zeros(shape_a), torch.zeros(shape_b)
    if shape_a == shape_b:
        assert vae.gaussian_kl(mu, logvar).shape == tuple(shape_a[:-1])
    else:
        with pytest.raises(ValueError, match="logvar"):
            vae.gaussian_kl(mu, logvar)
        with pytest.raises(ValueError, match="logvar"):
            vae.reparameterize(mu, logvar)


@settings(max_examples=20, deadline=None)
@given(bad=st.one_of(st.integers(-3, 0), st.floats(0.5, 3.0), st.booleans(), st.none()))
def test_sample_counts_are_validated(bad):
    with pytest.raises(ValueError, match="samples"):
        vae.reparameterize(torch.zeros(2), torch.zeros(2), samples=bad if bad is not None else -1)
    with pytest.raises(ValueError, match="k"):
        vae.iwae_bound(vae.VAE(2, 16, 1), _binary_images(2), k=bad if bad is not None else 0)


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match="mu"):
        vae.gaussian_kl([0.0], torch.zeros(1))
    with pytest.raises(TypeError, match="logvar"):
        vae.gaussian_kl(torch.zeros(1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x: expected images"):
        vae.VAE(2, 16, 1).encode(torch.zeros(3, 784))
    with pytest.raises(ValueError, match="beta"):
        vae.negative_elbo(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28), torch.zeros(1, 2),
                          torch.zeros(1, 2), beta=-1.0)


# --- 2. the model, the loss and the bounds ----------------------------------------------------

def test_vae_shapes_and_negative_elbo():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=3, hidden=32, layers=1)
    x = _binary_images(5)
    out = model(x, generator=_gen(0))
    assert out["rec"].shape == out["kl"].shape == (5,)
    mu, logvar = out["mu"], out["logvar"]
    z = vae.reparameterize(mu, logvar, generator=_gen(0))
    logits = model.decode(z)
    assert logits.shape == (5, 1, 28, 28)
    loss = vae.negative_elbo(logits, x, mu, logvar)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 5
    torch.testing.assert_close(loss, bce + vae.gaussian_kl(mu, logvar).mean())
    torch.testing.assert_close(out["loss"], loss)
    assert model.decode(torch.zeros(7, 5, 3)).shape == (7, 5, 1, 28, 28)
    assert model.sample(4, generator=_gen(1)).shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="z: expected"):
        model.sample(4, z=torch.zeros(3, 3))


def test_conditional_vae_needs_labels_in_range():
    model = vae.VAE(latent_dim=2, hidden=16, layers=1, num_classes=10)
    x, y = _binary_images(3), torch.tensor([0, 4, 9])
    assert model(x, y)["rec"].shape == (3,)
    assert model.sample(3, y=y).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="y: expected 3 labels"):
        model(x, torch.tensor([0, 1, 10]))
    with pytest.raises(TypeError, match="y: a conditional model"):
        model(x, None)
    with pytest.raises(ValueError, match="unconditional"):
        vae.VAE(2, 16, 1)(x, y)


def test_gaussian_decoder_likelihood():
    model = vae.VAE(latent_dim=2, hidden=16, layers=1, likelihood="gaussian")
    x = torch.rand(4, 1, 28, 28, generator=_gen(0))
    out = model(x, generator=_gen(1))
    assert out["rec"].shape == (4,)
    mean = torch.rand(4, 1, 28, 28, generator=_gen(2))
    ref = Normal(mean, math.exp(-1.0)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(vae.gaussian_log_likelihood(x, mean, torch.tensor(-2.0)), ref)


def test_iwae_from_log_weights_is_stable_and_exact():
    log_w = torch.tensor([[-300.0, -1.0], [-302.0, -3.0]])
    got = vae.iwae_from_log_weights(log_w)
    expected = torch.tensor([-300.0 + math.log((1 + math.exp(-2)) / 2),
                             -1.0 + math.log((1 + math.exp(-2)) / 2)])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(vae.iwae_from_log_weights(log_w[:1]), log_w[0])


def test_iwae_is_the_elbo_at_k1_and_increases_with_k():
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=4, hidden=64, layers=1)
    x = _binary_images(40, seed=3)
    elbo = vae.elbo(model, x, samples=4000, generator=_gen(1))["elbo"].mean()
    k1_many = torch.stack([vae.iwae_bound(model, x, 1, generator=_gen(s)).mean()
                           for s in range(20)]).mean()
    assert abs(k1_many - elbo) < 0.5
    bounds = [vae.iwae_bound(model, x, k, chunk=37, generator=_gen(9)).mean().item()
              for k in (1, 10, 100, 1000)]
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False)), bounds
    assert bounds[-1] > elbo.item() + 1


def test_iwae_chunking_is_exact(monkeypatch):
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=3, hidden=32, layers=1)
    x = _binary_images(7)
    a = vae.iwae_bound(model, x, 50, chunk=50, batch_size=7, generator=_gen(4))
    log_w = vae.log_weights(model, x, 50, generator=_gen(4))
    torch.testing.assert_close(vae.iwae_from_log_weights(log_w), a, atol=1e-4, rtol=0)
    # Chunks over samples and batches over images combine exactly: feed fixed log-weights.
    # Image i is marked by pixel (0, i), so the fake knows which columns a batch holds.
    marked = torch.zeros(7, 1, 28, 28)
    marked[torch.arange(7), 0, 0, torch.arange(7)] = 1.0
    fixed = -300 + 5 * torch.randn(50, 7, generator=_gen(5))
    drawn = {}

    def fake(model, xb, k, y=None, generator=None):
        rows = xb[:, 0, 0, :7].argmax(1)
        start = drawn.get(int(rows[0]), 0)
        drawn[int(rows[0])] = start + k
        return fixed[start:start + k][:, rows]

    monkeypatch.setattr(vae, "log_weights", fake)
    got = vae.iwae_bound(model, marked, 50, chunk=7, batch_size=3)
    torch.testing.assert_close(got, vae.iwae_from_log_weights(fixed))


def test_training_lowers_the_negative_elbo_and_autoencoder_mode():
    torch.manual_seed(0)
    g = _gen(0)
    x = torch.rand(200, 1, 28, 28, generator=g) * (torch.rand(1, 1, 28, 28, generator=g) > 0.6)
    model = vae.VAE(latent_dim=4, hidden=64, layers=1)
    before = -vae.elbo(model, x.round(), generator=_gen(1))["elbo"].mean()
    history = vae.train_vae(model, x, 150, batch_size=50, generator=g, warmup=50)
    after = -vae.elbo(model, x.round(), generator=_gen(1))["elbo"].mean()
    assert after < before - 50
    assert set(history) >= {"nelbo", "rec", "kl"}
    ae = vae.VAE(latent_dim=4, hidden=64, layers=1)
    hist = vae.train_vae(ae, x, 20, batch_size=50, deterministic=True, generator=g)
    assert max(hist["kl"]) == 0


# --- 3. the linear-Gaussian model -------------------------------------------------------------

def _random_q(D, seed):
    g = _gen(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    return torch.randn(D, generator=g, dtype=torch.float64), A @ A.T + 0.1 * torch.eye(D,
                                                                                   dtype=torch.float64)


def test_linear_gaussian_evidence_and_posterior_against_joint_gaussian():
    model = vae.LinearGaussian.random(d=6, D=3, sigma=0.7, generator=_gen(0))
    x = model.sample(4, generator=_gen(1))
    C = model.W @ model.W.T + model.sigma2 * torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(model.log_evidence(x), MultivariateNormal(model.b, C).log_prob(x))
    # The posterior by conditioning the joint Gaussian of (z, x).
    m, S = model.posterior(x[0])
    gain = model.W.T @ torch.linalg.inv(C)
    torch.testing.assert_close(m, gain @ (x[0] - model.b))
    torch.testing.assert_close(S, torch.eye(3, dtype=torch.float64) - gain @ model.W)


def test_elbo_plus_kl_is_the_evidence_and_peaks_at_the_posterior():
    model = vae.LinearGaussian.random(d=5, D=2, sigma=0.5, generator=_gen(3))
    x = model.sample(1, generator=_gen(4))[0]
    log_px = model.log_evidence(x)
    for seed in range(5):
        q_mean, q_cov = _random_q(2, seed)
        total = model.elbo(x, q_mean, q_cov) + model.kl_to_posterior(x, q_mean, q_cov)
        assert abs(total - log_px) < 1e-9
        assert model.kl_to_posterior(x, q_mean, q_cov) > 0
        # the KL against torch.distributions
        m, S = model.posterior(x)
        ref = kl_divergence(MultivariateNormal(q_mean, q_cov), MultivariateNormal(m, S))
        torch.testing.assert_close(model.kl_to_posterior(x, q_mean, q_cov), ref)
    m, S = model.posterior(x)
    assert abs(model.elbo(x, m, S) - log_px) < 1e-10
    assert abs(model.kl_to_posterior(x, m, S)) < 1e-10


def test_monte_carlo_elbo_agrees_with_the_closed_form():
    model = vae.LinearGaussian.random(d=5, D=2, sigma=0.5, generator=_gen(5))
    x = model.sample(1, generator=_gen(6))[0]
    q_mean, q_cov = _random_q(2, 7)
    exact = model.elbo(x, q_mean, q_cov).item()
    est, se = model.elbo_monte_carlo(x, q_mean, q_cov, 20_000, generator=_gen(8))
    assert abs(est - exact) < 4 * se
    # The expected log-likelihood term alone, by Monte Carlo with torch.distributions.
    z = MultivariateNormal(q_mean, q_cov).sample((50_000,))
    lik = Independent(Normal(z @ model.W.T + model.b, math.sqrt(model.sigma2)), 1).log_prob(x)
    assert abs(lik.mean() - model.expected_log_likelihood(x, q_mean, q_cov)) < \
        4 * lik.std() / math.sqrt(len(lik))


def test_linear_gaussian_validation():
    with pytest.raises(ValueError, match="sigma"):
        vae.LinearGaussian(torch.zeros(3, 2), torch.zeros(3), 0.0)
    model = vae.LinearGaussian.random(3, 2)
    with pytest.raises(ValueError, match="q_cov"):
        model.elbo(torch.zeros(3), torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="q_mean"):
        model.elbo(torch.zeros(3), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match="x"):
        model.log_evidence(torch.zeros(4))


# --- 4. gradient estimators -------------------------------------------------------------------

def test_both_estimators_are_unbiased_and_reparam_has_lower_variance():
    def f(z):                        # E f = (mu - 2)^2 + sigma^2: grad = (2 (mu - 2), 2 sigma)
        return (z - 2.0) ** 2

    exact = torch.tensor([2 * (0.5 - 2.0), 2 * 1.5], dtype=torch.float64)
    study = vae.gradient_variance_study(f, 0.5, 1.5, (1, 10, 100), repeats=4000,
                                        generator=_gen(0))
    for name in ("reparam", "score"):
        mean, var = study[f"{name}_mean"], study[f"{name}_var"]
        se = (var / 4000).sqrt()
        assert ((mean - exact).abs() < 5 * se).all(), (name, mean)
        ratio = var[:-1] / var[1:]           # variance falls as 1/L
        assert ((ratio > 7) & (ratio < 13)).all(), (name, ratio)
    assert (study["score_var"] > 5 * study["reparam_var"]).all()


def test_estimator_validation():
    def f(z):
        return z

    with pytest.raises(ValueError, match="sigma"):
        vae.reparam_gradient(f, 0.0, 0.0, 10)
    with pytest.raises(ValueError, match="samples"):
        vae.score_function_gradient(f, 0.0, 1.0, 0)


# --- 5. latent space --------------------------------------------------------------------------

def test_normal_grid_and_traversal():
    grid = vae.normal_grid(5)
    assert grid.shape == (25, 2)
    probs = Normal(0.0, 1.0).cdf(grid[:5, 0])
    torch.testing.assert_close(probs, torch.linspace(0.05, 0.95, 5), atol=1e-5, rtol=0)
    assert grid[0, 1] > grid[-1, 1]        # first row is the top (largest z_2)
    model = vae.VAE(latent_dim=3, hidden=16, layers=1)
    imgs = vae.traversal(model, torch.zeros(3), 1, [-2.0, 0.0, 2.0])
    assert imgs.shape == (3, 1, 28, 28) and imgs.min() >= 0 and imgs.max() <= 1
    assert vae.interpolate(model, _binary_images(1)[0], _binary_images(1, 1)[0], 4).shape[0] == 4
    with pytest.raises(ValueError, match="dim"):
        vae.traversal(model, torch.zeros(3), 3, [0.0])


def test_aggregate_density_against_mixture_and_holes():
    mu = torch.randn(30, 2, generator=_gen(0), dtype=torch.float64)
    logvar = torch.randn(30, 2, generator=_gen(1), dtype=torch.float64) * 0.3
    z = torch.randn(11, 2, generator=_gen(2), dtype=torch.float64)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(30, dtype=torch.float64)),
        Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))
    torch.testing.assert_close(vae.aggregate_log_density(z, mu, logvar, chunk=4), mix.log_prob(z))
    # An encoder whose codes cover the prior leaves no holes; one that uses a corner leaves many.
    wide = vae.prior_holes(torch.zeros(1, 2), torch.zeros(1, 2), generator=_gen(3))
    narrow = vae.prior_holes(torch.full((1, 2), 2.0), torch.full((1, 2), -3.0), generator=_gen(3))
    assert wide == 0 and narrow > 0.9


def test_conv_decoder_shapes_conditioning_and_validation():
    model = vae.VAE(latent_dim=4, decoder="conv")
    assert model.decode(torch.zeros(3, 5, 4)).shape == (3, 5, 1, 28, 28)
    cond = vae.VAE(latent_dim=4, decoder="conv", num_classes=10)
    z = torch.randn(2, 4, generator=_gen(0))
    a = cond.decode(z, torch.tensor([1, 1]))
    b = cond.decode(z, torch.tensor([1, 7]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])   # the label reaches the output
    with pytest.raises(ValueError, match="decoder"):
        vae.VAE(decoder="resnet")
    with pytest.raises(ValueError, match="decoder"):
        vae.VAE(decoder="conv", likelihood="gaussian")


def test_cosine_schedule_and_warmup_validation():
    model = vae.VAE(latent_dim=2, hidden=16, layers=1)
    x = torch.rand(20, 1, 28, 28, generator=_gen(0))
    with pytest.raises(ValueError, match="schedule"):
        vae.train_vae(model, x, 2, schedule="linear")
    with pytest.raises(ValueError, match="warmup"):
        vae.train_vae(model, x, 2, warmup=-1)
    history = vae.train_vae(model, x, 4, batch_size=10, schedule="cosine", warmup=2,
                            generator=_gen(1))
    assert len(history["nelbo"]) >= 1


def test_active_units_counts_varying_means():
    mu = torch.zeros(100, 4)
    mu[:, 0] = torch.randn(100, generator=_gen(0))
    mu[:, 2] = 0.01 * torch.randn(100, generator=_gen(1))     # variance 1e-4: inactive
    assert vae.active_units(mu) == 1
    with pytest.raises(ValueError, match="mu"):
        vae.active_units(torch.zeros(1, 3))


def test_far_from_codes_is_scale_free():
    codes = torch.randn(500, 2, generator=_gen(0))
    inside = torch.randn(300, 2, generator=_gen(1)) * 0.5
    assert vae.far_from_codes(inside, codes) < 0.05
    assert vae.far_from_codes(inside * 100, codes * 100) < 0.05          # same geometry, scaled
    assert vae.far_from_codes(inside + 20, codes) == 1.0
    with pytest.raises(ValueError, match="codes"):
        vae.far_from_codes(inside, torch.zeros(1, 2))


def test_reference_vae_loads_and_beats_a_fresh_model():
    model = vae.reference_vae()
    assert not model.training
    x = data.binarized_mnist_test(verbose=False).images[:100]
    g = torch.Generator().manual_seed(0)
    trained = -vae.elbo(model, x, generator=g)["elbo"].mean()
    fresh = -vae.elbo(vae.VAE(latent_dim=32, decoder="conv"), x, generator=g)["elbo"].mean()
    assert trained < 110 < fresh
