"""companion.autoencoders: shapes, the PCA equivalence, corruptions, probes, perceptual loss, SR."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio

from companion import autoencoders as ae
from companion.metrics.classifier import load_classifier


def _low_rank_data(n=600, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    scales = torch.tensor([3.0, 2.0, 1.5] + [0.3] * (d - 3))[:d]
    return (torch.randn(n, d, generator=g) * scales) @ basis.T + 1.0


# --- 1. linear AE and PCA ---------------------------------------------------------------------

def test_pca_matches_covariance_eigendecomposition():
    x = _low_rank_data().double()
    comps, mean, var = ae.pca(x, 3)
    cov = np.cov(x.numpy(), rowvar=False, bias=True)
    evals, evecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(var.numpy(), evals[::-1], rtol=1e-8, atol=1e-10)
    cosines = ae.principal_cosines(comps.T, torch.from_numpy(evecs[:, ::-1][:, :3].copy()))
    np.testing.assert_allclose(cosines.numpy(), 1.0, atol=1e-8)
    # pca_error is the mean squared error of the projection, and no rank-3 map does better.
    recon = ae.pca_reconstruct(x, comps, mean)
    assert ae.pca_error(x, 3) == pytest.approx(float(((recon - x) ** 2).mean()), rel=1e-8)


def test_linear_autoencoder_learns_the_principal_subspace():
    torch.manual_seed(0)
    x = _low_rank_data()
    model = ae.LinearAutoencoder(12, 3)
    ae.train_linear_autoencoder(model, x, steps=1500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = float(F.mse_loss(model(x), x))
    assert err <= 1.02 * ae.pca_error(x, 3)
    comps, _, _ = ae.pca(x, 3)
    cos = ae.principal_cosines(model.decoder.weight.detach(), comps.T)
    assert cos.min() > 0.99


def test_principal_cosines_of_orthogonal_subspaces_are_zero():
    e = torch.eye(4)
    assert torch.allclose(ae.principal_cosines(e[:, :2], e[:, 2:]), torch.zeros(2))
    assert torch.allclose(ae.principal_cosines(e[:, :2], e[:, :2] @ torch.tensor([[1., 2], [3, 4]])),
                          torch.ones(2))


def test_linear_autoencoder_validation():
    with pytest.raises(ValueError, match="k:"):
        ae.LinearAutoencoder(3, 5)
    with pytest.raises(ValueError, match="k:"):
        ae.pca(torch.randn(5, 3), 4)
    with pytest.raises(ValueError, match="x:"):
        ae.pca(torch.randn(5, 3, 2), 1)


# --- 2. convolutional and MLP autoencoders ----------------------------------------------------

@pytest.mark.parametrize("make", [lambda: ae.Autoencoder.conv(7, 16), lambda: ae.Autoencoder.mlp(7, 64)])
def test_autoencoder_shapes_and_range(make):
    model = make()
    x = torch.rand(5, 1, 28, 28)
    x_hat, z = model(x)
    assert z.shape == (5, 7) and x_hat.shape == x.shape
    assert 0 <= x_hat.min() and x_hat.max() <= 1
    assert ae.encode(model, x).shape == (5, 7)
    assert ae.reconstruct(model, x).shape == x.shape


def test_autoencoder_loss_is_per_pixel_mse_and_training_lowers_it():
    torch.manual_seed(0)
    model = ae.Autoencoder.conv(8, 16)
    x = torch.rand(64, 1, 28, 28).round()
    x_hat, loss = ae.autoencoder_loss(model.encoder, model.decoder, x)
    assert torch.isclose(loss, F.mse_loss(x_hat, x))
    before = float(loss.detach())
    ae.train_autoencoder(model, x, steps=30, batch_size=32)
    _, after = ae.autoencoder_loss(model.encoder, model.decoder, x)
    assert float(after.detach()) < before


def test_autoencoder_validation():
    model = ae.Autoencoder.conv(4, 8)
    with pytest.raises(ValueError, match="x:"):
        model(torch.rand(2, 28, 28))
    with pytest.raises(TypeError, match="x:"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="x_in:"):
        ae.autoencoder_loss(model.encoder, model.decoder, torch.rand(2, 1, 28, 28),
                            torch.rand(3, 1, 28, 28))
    with pytest.raises(ValueError, match="code:"):
        ae.ConvEncoder(0)


def test_code_grid_shape():
    dec = ae.ConvDecoder(2, 8)
    assert ae.code_grid(dec, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]), 5).shape == (
        25, 1, 28, 28)


# --- 3. corruptions and PSNR ------------------------------------------------------------------

def test_gaussian_corruption_statistics():
    x = torch.full((20_000,), 0.5)
    noisy = ae.gaussian_corruption(x, 0.1, torch.Generator().manual_seed(0))
    assert abs(float(noisy.std()) - 0.1) < 0.003 and abs(float(noisy.mean()) - 0.5) < 0.003
    assert ae.gaussian_corruption(torch.ones(100), 2.0).max() <= 1.0


def test_masking_corruption_drops_a_share_p():
    x = torch.rand(50_000) * 0.5 + 0.5
    masked = ae.masking_corruption(x, 0.3, torch.Generator().manual_seed(0))
    assert abs(float((masked == 0).float().mean()) - 0.3) < 0.01
    kept = masked != 0
    assert torch.equal(masked[kept], x[kept])
    assert torch.equal(ae.masking_corruption(x, 0.0), x)
    assert (ae.masking_corruption(x, 1.0) == 0).all()


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-6, allow_nan=False), st.floats(min_value=1.000001),
                 st.just(float("nan")), st.booleans(), st.text(max_size=3)))
def test_masking_corruption_rejects_a_bad_p(p):
    with pytest.raises(ValueError, match="p:"):
        ae.masking_corruption(torch.rand(3, 1, 28, 28), p)


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-6, allow_nan=False), st.booleans(), st.none()))
def test_gaussian_corruption_rejects_a_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma:"):
        ae.gaussian_corruption(torch.rand(3, 1, 28, 28), sigma)


def test_psnr_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = np.mean([peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)
                        for a, b in zip(x, y, strict=False)])
    assert float(ae.psnr(y, x)) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="x_hat:"):
        ae.psnr(y[:2], x)


# --- 4. pretraining helpers -------------------------------------------------------------------

def test_labelled_subset_is_stratified_and_seeded():
    labels = torch.arange(10).repeat(20)
    idx = ae.labelled_subset(labels, 3, torch.Generator().manual_seed(1))
    assert torch.equal(torch.bincount(labels[idx]), torch.full((10,), 3))
    again = ae.labelled_subset(labels, 3, torch.Generator().manual_seed(1))
    assert torch.equal(idx, again)
    with pytest.raises(ValueError, match="per_class:"):
        ae.labelled_subset(labels, 21)


def test_fit_classifier_modes():
    torch.manual_seed(0)
    encoder = ae.MLPEncoder(6, 32)
    x = torch.rand(40, 1, 28, 28)
    y = torch.arange(4).repeat(10)
    original = [p.detach().clone() for p in encoder.parameters()]
    probe = ae.fit_classifier(encoder, x, y, "probe", steps=5)
    # the probe keeps the pretrained encoder exactly; fine-tuning changes it; scratch re-draws it
    assert all(torch.equal(a, b) for a, b in zip(original, probe.encoder.parameters(), strict=False))
    tuned = ae.fit_classifier(encoder, x, y, "finetune", steps=5)
    assert not torch.equal(original[0], tuned.encoder.net[1].weight)
    scratch = ae.fit_classifier(encoder, x, y, "scratch", steps=1, lr=1e-9)
    assert not torch.allclose(original[0], scratch.encoder.net[1].weight)
    # the caller's encoder is never modified
    assert all(torch.equal(a, b) for a, b in zip(original, encoder.parameters(), strict=False))
    assert 0.0 <= ae.accuracy(tuned, x, y) <= 100.0
    with pytest.raises(ValueError, match="mode:"):
        ae.fit_classifier(encoder, x, y, "frozen")


def test_linear_probe_step_trains_only_the_head():
    torch.manual_seed(0)
    encoder = ae.MLPEncoder(5, 16)
    head = torch.nn.Linear(5, 3)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    x, y = torch.rand(9, 1, 28, 28), torch.arange(3).repeat(3)
    w = head.weight.detach().clone()
    loss = ae.linear_probe_step(encoder, head, opt, x, y)
    assert not loss.requires_grad and not torch.equal(w, head.weight)
    assert all(p.grad is None for p in encoder.parameters())


# --- 5. perceptual loss and super-resolution ---------------------------------------------------

def test_feature_extractor_is_the_classifier_prefix_and_frozen():
    phi = ae.FeatureExtractor(2)
    x = torch.rand(3, 1, 28, 28)
    body = load_classifier().body
    with torch.no_grad():
        assert torch.allclose(phi(x), body[:2](x - 0.5))
    assert phi(x).shape == (3, 64, 14, 14)
    phi.train()
    assert not phi.training and not any(p.requires_grad for p in phi.parameters())
    with pytest.raises(ValueError, match="blocks:"):
        ae.FeatureExtractor(5)


def test_perceptual_loss_is_the_normalised_feature_distance():
    phi = ae.FeatureExtractor(1)
    y = torch.rand(2, 1, 28, 28)
    y_hat = torch.rand(2, 1, 28, 28, requires_grad=True)
    loss = ae.perceptual_loss(phi, y_hat, y)
    f1, f2 = phi(y_hat), phi(y)
    c, h, w = f1.shape[1:]
    expected = ((f1 - f2) ** 2).flatten(1).sum(1).div(c * h * w).mean()
    assert torch.isclose(loss, expected)
    loss.backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0
    assert float(ae.perceptual_loss(phi, y, y)) == 0.0


def test_upsample_matches_torch_bicubic_and_downsample_is_average_pooling():
    x = torch.rand(2, 1, 28, 28)
    low = ae.downsample(x)
    assert torch.allclose(low[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    up = ae.upsample(low)
    ref = F.interpolate(low, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(up, ref)
    with pytest.raises(ValueError, match="x:"):
        ae.upsample(x)


def test_super_resolution_residual_starts_from_bicubic():
    model = ae.SuperResolution(8, 3, residual=True)
    torch.nn.init.zeros_(model.net[-1].weight)
    torch.nn.init.zeros_(model.net[-1].bias)
    low = torch.rand(2, 1, 14, 14)
    assert torch.allclose(model(low), ae.upsample(low))
    direct = ae.SuperResolution(8, 3, residual=False)
    out = direct(low)
    assert out.shape == (2, 1, 28, 28) and 0 < out.min() and out.max() < 1


def test_train_super_resolution_lowers_the_loss():
    torch.manual_seed(0)
    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0
    model = ae.SuperResolution(8, 3)
    hist = ae.train_super_resolution(model, x, steps=40, batch_size=16, lr=3e-3)
    assert hist["mse"][-1] < hist["mse"][0]
    with pytest.raises(ValueError, match="phi:"):
        ae.train_super_resolution(model, x, steps=1, loss="perceptual")
    with pytest.raises(ValueError, match="loss:"):
        ae.train_super_resolution(model, x, steps=1, loss="l1")
