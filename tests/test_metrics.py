"""companion.metrics against reference implementations on identical inputs.

torchmetrics (FID, KID, IS, with the shipped classifier as the feature module), SciPy's sqrtm
route for FID, scikit-image's SSIM, SciPy's linear_sum_assignment and POT for exact W1, and the
prdc package for precision, recall, density and coverage.
"""
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import data, metrics
from companion.metrics import scores

torchmetrics = pytest.importorskip("torchmetrics")
from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: E402
from torchmetrics.image.inception import InceptionScore  # noqa: E402
from torchmetrics.image.kid import KernelInceptionDistance  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    train = data.load_mnist("train", source="offline", verbose=False)
    test = data.load_mnist("test", source="offline", verbose=False)
    return train.images[:600], test.images[:600], test.labels[:600]


class FeatureModule(torch.nn.Module):
    """The shipped classifier as torchmetrics' ``feature`` module (float64 outputs)."""

    def __init__(self, logits: bool = False):
        super().__init__()
        self.net = metrics.load_classifier()
        self.logits = logits
        self.num_features = 10 if logits else metrics.FEATURE_DIM

    def forward(self, x):
        f = self.net.features(x.float())
        return (self.net.head(f) if self.logits else f).double()


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# --- the shipped feature network --------------------------------------------------------------

def test_shipped_classifier_loads_and_reaches_its_accuracy():
    test = data.load_mnist("test", source="offline", verbose=False)
    _, probs = metrics.classify(test.images)
    acc = (probs.argmax(1) == test.labels).double().mean().item()
    assert acc >= 0.97, acc
    assert metrics.classifier.WEIGHTS.stat().st_size < 1_000_000


def test_classify_validates_images():
    with pytest.raises(ValueError, match=r"images: expected shape \[N, 1, 28, 28\]"):
        metrics.classify(torch.rand(3, 28, 28))
    with pytest.raises(ValueError, match="from_signed"):
        metrics.classify(torch.rand(3, 1, 28, 28) * 2 - 1)


# --- FID ----------------------------------------------------------------------------------------

def test_fid_matches_torchmetrics(digits):
    train, test, _ = digits
    fid_tm = FrechetInceptionDistance(feature=FeatureModule(),
                                                             normalize=True)
    fid_tm.update(test, real=True)
    fid_tm.update(train, real=False)
    expected = fid_tm.compute().item()
    real_f, _ = metrics.classify(test)
    fake_f, _ = metrics.classify(train)
    assert _rel(metrics.fid(real_f, fake_f), expected) < 1e-6


def test_fid_matches_the_scipy_sqrtm_route():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=g, dtype=torch.float64)
    b = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1.3 + 0.2
    mu1, s1 = a.mean(0).numpy(), np.cov(a.numpy(), rowvar=False)
    mu2, s2 = b.mean(0).numpy(), np.cov(b.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert _rel(metrics.fid(a, b), expected) < 1e-6


def test_fid_identity_and_saved_stats(tmp_path):
    x = torch.randn(300, 8, dtype=torch.float64)
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    mu, sigma = metrics.feature_stats(x)
    path = metrics.save_stats(tmp_path / "stats.npz", mu, sigma)
    y = torch.randn(300, 8, dtype=torch.float64) + 1
    assert metrics.fid_from_stats(*metrics.load_stats(path), *metrics.feature_stats(y)) == \
        pytest.approx(metrics.fid(x, y), rel=1e-12)


def test_fid_warns_when_covariance_is_singular():
    with pytest.warns(UserWarning, match="singular"):
        value = metrics.fid(torch.randn(20, 64), torch.randn(20, 64))
    assert np.isfinite(value) and value > 0


def test_fid_infinity_extrapolates_below_the_finite_n_values():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(1000, 8, generator=g, dtype=torch.float64) + 0.3
    value, info = metrics.fid_infinity(real, fake, generator=g)
    assert value < min(info["fids"]) and info["slope"] > 0
    true = 8 * 0.3**2                                 # same covariance, shifted mean
    assert abs(value - true) < 0.1


# --- KID and IS -----------------------------------------------------------------------------------

def test_kid_matches_torchmetrics(digits):
    train, test, _ = digits
    kid_tm = KernelInceptionDistance(
        feature=FeatureModule(), subsets=5, subset_size=200, normalize=True)
    kid_tm.update(test, real=True)
    kid_tm.update(train, real=False)
    torch.manual_seed(0)
    expected_mean, expected_std = (v.item() for v in kid_tm.compute())
    real_f, _ = metrics.classify(test)
    fake_f, _ = metrics.classify(train)
    torch.manual_seed(0)                               # the same subsets, drawn the same way
    mean, std = metrics.kid(real_f, fake_f, subsets=5, subset_size=200)
    assert _rel(mean, expected_mean) < 1e-6 and _rel(std, expected_std) < 1e-6


def test_kid_is_unbiased_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(1000, 16, generator=g, dtype=torch.float64) for _ in range(2))
    mean, std = metrics.kid(a, b, subsets=20, subset_size=500, generator=g)
    assert abs(mean) < 3 * std / np.sqrt(20) + 1e-4


def test_inception_score_matches_torchmetrics(digits):
    _, test, _ = digits
    # normalize=False: torchmetrics' IS would otherwise turn [0, 1] images into bytes first.
    is_tm = InceptionScore(feature=FeatureModule(logits=True), splits=10, normalize=False)
    is_tm.update(test)
    torch.manual_seed(0)
    expected_mean, expected_std = (v.item() for v in is_tm.compute())
    torch.manual_seed(0)
    perm = torch.randperm(len(test))
    _, probs = metrics.classify(test)
    mean, std = metrics.inception_score(probs[perm], splits=10)
    assert _rel(mean, expected_mean) < 1e-6
    assert _rel(std * np.sqrt(10 / 9), expected_std) < 1e-6      # torchmetrics: ddof=1


def test_is_equals_exp_mutual_information_and_its_extremes():
    probs = torch.softmax(torch.randn(500, 10, dtype=torch.float64) * 3, 1)
    h_y, h_y_x = scores.inception_score_entropy_terms(probs)
    assert np.log(metrics.inception_score(probs, splits=1)[0]) == pytest.approx(h_y - h_y_x)
    one_hot = torch.eye(10, dtype=torch.float64).repeat(50, 1)
    assert metrics.inception_score(one_hot, splits=1)[0] == pytest.approx(10.0)
    assert metrics.inception_score(torch.full((100, 10), 0.1, dtype=torch.float64),
                                   splits=1)[0] == pytest.approx(1.0)


def test_mode_score_penalises_a_wrong_class_marginal():
    real = torch.eye(10, dtype=torch.float64).repeat(50, 1)
    balanced = torch.eye(10, dtype=torch.float64).repeat(20, 1)
    skewed = torch.eye(10, dtype=torch.float64)[torch.tensor([0] * 100 + list(range(10)) * 10)]
    assert metrics.mode_score(balanced, real)[0] == pytest.approx(10.0)
    assert metrics.mode_score(skewed, real)[0] < metrics.mode_score(balanced, real)[0]
    shuffled = balanced[torch.randperm(len(balanced))]
    mean, std = metrics.mode_score(shuffled, real, splits=4)
    assert mean <= 10.0 + 1e-9 and std >= 0.0


# --- precision / recall / density / coverage, 1-NN -----------------------------------------------

def test_prdc_match_the_prdc_package_exactly():
    prdc = pytest.importorskip("prdc")
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 12, generator=g, dtype=torch.float64)
    fake = torch.randn(250, 12, generator=g, dtype=torch.float64) * 1.2 + 0.3
    ref3 = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    ref5 = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    assert metrics.precision_recall(real, fake, k=3) == (ref3["precision"], ref3["recall"])
    assert metrics.density_coverage(real, fake, k=5) == (ref5["density"], ref5["coverage"])


def test_one_nn_accuracy_extremes():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=g, dtype=torch.float64)
    far = real + 100.0
    assert metrics.one_nn_accuracy(real, far)["overall"] == 1.0
    copies = real + 1e-6                              # memorised training data
    result = metrics.one_nn_accuracy(real, copies)
    assert result["real"] == 0.0 and result["fake"] == 0.0
    same = metrics.one_nn_accuracy(real, torch.randn(200, 4, generator=g, dtype=torch.float64))
    assert 0.35 < same["overall"] < 0.65


# --- W1 -----------------------------------------------------------------------------------------

def test_exact_w1_matches_pot():
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.randn(60, 3, generator=g, dtype=torch.float64) + 1
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean")
    w = np.full(60, 1 / 60)
    assert metrics.wasserstein1_exact(x, y) == pytest.approx(ot.emd2(w, w, cost), rel=1e-9)


def test_sliced_w1_in_one_dimension_is_exact_and_a_lower_bound_otherwise():
    x = torch.randn(500, 1, dtype=torch.float64)
    y = torch.randn(500, 1, dtype=torch.float64) + 2
    assert metrics.wasserstein1_sliced(x, y, projections=4) == pytest.approx(
        metrics.wasserstein1_exact(x, y), rel=1e-9)
    x2, y2 = torch.randn(200, 5, dtype=torch.float64), torch.randn(200, 5, dtype=torch.float64) + 1
    assert metrics.wasserstein1_sliced(x2, y2) < metrics.wasserstein1_exact(x2, y2)
    assert metrics.wasserstein1(x2, y2[:150]) > 0          # unequal sizes: sliced


# --- SSIM ---------------------------------------------------------------------------------------

def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    test = data.load_mnist("test", source="offline", verbose=False).images[:8].double()
    noisy = (test + 0.2 * torch.randn(test.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = metrics.ssim(test, noisy)
    for i in range(8):
        ref = structural_similarity(test[i, 0].numpy(), noisy[i, 0].numpy(), data_range=1.0,
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert abs(ours[i].item() - ref) < 1e-4


def test_ms_ssim_properties():
    x = data.load_mnist("test", source="offline", verbose=False).images[:4]
    assert torch.allclose(metrics.ms_ssim(x, x), torch.ones(4, dtype=torch.float64))
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert (metrics.ms_ssim(x, noisy) < 1).all()


# --- class coverage and evaluate -----------------------------------------------------------------

def test_class_coverage_counts_missing_classes():
    probs = torch.eye(10, dtype=torch.float64)[torch.tensor([0, 1, 2] * 30)]
    cov = metrics.class_coverage(probs)
    assert cov["classes_covered"] == 3 and cov["share"][0] == pytest.approx(1 / 3)


def test_evaluate_returns_a_flat_table(digits):
    train, test, _ = digits
    out = metrics.evaluate(train[:200], test[:200], train=train[200:400], n=200,
                           metrics=metrics.ALL_METRICS, generator=torch.Generator().manual_seed(0))
    assert {"fid", "fid_ratio", "kid", "is", "precision", "recall", "density", "coverage",
            "one_nn_overall", "classes_covered"} <= set(out)
    assert all(isinstance(v, (int, float)) for v in out.values())
    assert 0.5 < out["fid_ratio"] < 2.0                 # real vs real: close to 1
    with pytest.raises(ValueError, match="metrics: unknown"):
        metrics.evaluate(train, test, metrics=["bleu"])
    with pytest.raises(ValueError, match="train"):
        metrics.evaluate(train[:50], test[:50], n=50, metrics=["fid_ratio"])


def test_inception_offline_fails_fast_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.models, "inception_v3", offline)
    with pytest.raises(RuntimeError, match="Offline, use the shipped MNIST feature network"):
        metrics.inception_features(torch.rand(2, 1, 28, 28))
    with pytest.raises(RuntimeError, match="Inception-v3 weights are not in the torch hub cache"):
        metrics.evaluate(torch.rand(20, 1, 28, 28), torch.rand(20, 1, 28, 28), n=20,
                         metrics=["fid"], features="inception")
    with pytest.raises(ValueError, match="features"):
        metrics.evaluate(torch.rand(20, 1, 28, 28), torch.rand(20, 1, 28, 28), n=20,
                         features="clip")


# --- validation (property tests) ----------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.sampled_from([metrics.fid, metrics.precision_recall, metrics.density_coverage,
                        metrics.one_nn_accuracy]),
       st.integers(1, 6), st.integers(1, 6))
def test_mismatched_feature_sizes_are_named(fn, d1, d2):
    if d1 == d2:
        d2 += 1
    with pytest.raises(ValueError, match="feature sizes differ"):
        fn(torch.randn(20, d1), torch.randn(20, d2))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_non_finite_features_are_rejected(bad):
    x = torch.randn(20, 4)
    x[3, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.fid(x, torch.randn(20, 4))


def test_too_few_samples_are_rejected():
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.fid(torch.randn(1, 4), torch.randn(10, 4))
    with pytest.raises(ValueError, match="k: expected"):
        metrics.precision_recall(torch.randn(3, 4), torch.randn(3, 4), k=3)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(torch.randn(10, 4), torch.randn(10, 4), subset_size=50)
