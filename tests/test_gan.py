"""companion.gan (first part): the game on discrete distributions, losses, slerp, minibatch std."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from companion import gan


def _random_distribution(n, seed, zeros=0):
    p = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    p[:zeros] = 0
    return p / p.sum()


@pytest.mark.parametrize("seed", range(5))
def test_value_at_the_optimal_discriminator_is_2_jsd_minus_log_4(seed):
    p, q = _random_distribution(12, seed), _random_distribution(12, seed + 100, zeros=3)
    d_star = gan.optimal_discriminator(p, q)
    v = gan.value(p, q, d_star)
    torch.testing.assert_close(v, 2 * gan.jsd(p, q) - gan.LOG_4, atol=1e-12, rtol=0)
    # D* maximises V: random discriminators do worse
    g = torch.Generator().manual_seed(seed)
    for _ in range(20):
        d = torch.rand(12, generator=g, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        assert gan.value(p, q, d) <= v + 1e-12


def test_jsd_against_scipy_and_its_range():
    p, q = _random_distribution(7, 0), _random_distribution(7, 1)
    ref = jensenshannon(p.numpy(), q.numpy()) ** 2           # scipy returns the square root
    assert float(gan.jsd(p, q)) == pytest.approx(ref, rel=1e-9)
    disjoint_p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    disjoint_q = torch.tensor([0.0, 0.0, 0.3, 0.7], dtype=torch.float64)
    assert float(gan.jsd(disjoint_p, disjoint_q)) == pytest.approx(math.log(2))
    assert float(gan.jsd(p, p)) == pytest.approx(0.0, abs=1e-12)


def test_optimal_discriminator_values():
    d = gan.optimal_discriminator(torch.tensor([0.2, 0.0, 0.0, 0.5]),
                                  torch.tensor([0.2, 0.3, 0.0, 0.0]))
    torch.testing.assert_close(d, torch.tensor([0.5, 0.0, 0.5, 1.0]))


def test_discriminator_loss_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    by_hand = -(d_real.log().mean() + (1 - d_fake).log().mean())
    torch.testing.assert_close(gan.discriminator_loss(real, fake), by_hand)
    smoothed = -((0.9 * d_real.log() + 0.1 * (1 - d_real).log()).mean()
                 + (1 - d_fake).log().mean())
    torch.testing.assert_close(gan.discriminator_loss(real, fake, real_target=0.9), smoothed)
    # stable where D rounds to 0 or 1
    assert torch.isfinite(gan.discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_generator_losses_by_hand_and_their_gradients():
    logits = torch.tensor([-4.0, 0.0, 3.0])
    d = torch.sigmoid(logits)
    torch.testing.assert_close(gan.generator_loss("minimax", logits), (1 - d).log().mean())
    torch.testing.assert_close(gan.generator_loss("non_saturating", logits), -d.log().mean())
    torch.testing.assert_close(gan.generator_loss("maximum_likelihood", logits),
                               -(d / (1 - d)).mean())
    # saturation: where D rejects the fake (D -> 0) the minimax gradient vanishes, the
    # non-saturating one does not
    rejected = torch.tensor([-8.0], requires_grad=True)
    gan.generator_loss("minimax", rejected).backward()
    g_minimax = rejected.grad.abs().item()
    rejected.grad = None
    gan.generator_loss("non_saturating", rejected).backward()
    assert g_minimax < 1e-3 < rejected.grad.abs().item()


def test_generator_loss_registry():
    assert {"minimax", "non_saturating", "maximum_likelihood"} <= set(gan.GENERATOR_LOSSES)
    with pytest.raises(ValueError, match="already registered"):
        gan.register_generator_loss("minimax")(lambda logits: logits.mean())
    with pytest.raises(ValueError, match="name"):
        gan.generator_loss("wasserstein_typo", torch.zeros(3))


def test_slerp():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 64, generator=g), torch.randn(5, 64, generator=g)
    torch.testing.assert_close(gan.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(gan.slerp(z0, z1, 1.0), z1)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(gan.slerp(e0, e1, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))
    # equal norms stay equal along the path; the straight line dips in the middle
    u0, u1 = F.normalize(z0, dim=-1) * 8, F.normalize(z1, dim=-1) * 8
    for t in np.linspace(0, 1, 7):
        torch.testing.assert_close(gan.slerp(u0, u1, float(t)).norm(dim=-1), torch.full((5,), 8.0))
    assert (((u0 + u1) / 2).norm(dim=-1) < 7).all()
    # parallel codes fall back to the line
    torch.testing.assert_close(gan.slerp(e0, 2 * e0, 0.5), 1.5 * e0)


def test_minibatch_stddev():
    x = torch.randn(6, 3, 4, 4)
    out = gan.MinibatchStdDev()(x)
    assert out.shape == (6, 4, 4, 4)
    torch.testing.assert_close(out[:, :3], x)
    expected = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean()
    torch.testing.assert_close(out[:, 3], expected.expand(6, 4, 4))
    collapsed = gan.MinibatchStdDev()(x[:1].repeat(6, 1, 1, 1))
    assert collapsed[:, 3].max() < 1e-3


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 1), st.booleans()))
def test_bad_real_targets_are_rejected(target):
    with pytest.raises(ValueError, match="real_target"):
        gan.discriminator_loss(torch.zeros(2), torch.zeros(2), real_target=target)


def test_other_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="p_data"):
        gan.value(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="p_g"):
        gan.optimal_discriminator(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="z1"):
        gan.slerp(torch.zeros(2, 3), torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="x"):
        gan.MinibatchStdDev()(torch.zeros(1, 3, 2, 2))
    with pytest.raises(TypeError, match="fake_logits"):
        gan.generator_loss("minimax", [0.0])


@pytest.mark.parametrize("conditional", [False, True])
def test_generators_and_discriminators_shapes_and_ranges(conditional):
    torch.manual_seed(0)
    k = 10 if conditional else None
    labels = torch.arange(6) % 10 if conditional else None
    z = torch.randn(6, 16)
    for G in (gan.MLPGenerator(16, hidden=(32, 64), num_classes=k),
              gan.DCGANGenerator(16, channels=8, num_classes=k)):
        x = G(z, labels)
        assert x.shape == (6, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    for D in (gan.MLPDiscriminator(hidden=(32,), num_classes=k),
              gan.DCGANDiscriminator(8, num_classes=k),
              gan.DCGANDiscriminator(8, num_classes=k, minibatch_std=True)):
        assert D(torch.rand(6, 1, 28, 28) * 2 - 1, labels).shape == (6,)


def test_conditional_networks_use_the_label():
    torch.manual_seed(0)
    G = gan.DCGANGenerator(16, channels=8, num_classes=10).eval()
    z = torch.randn(1, 16).repeat(2, 1)
    out = G(z, torch.tensor([3, 7]))
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(TypeError, match="labels"):
        G(z)
    with pytest.raises(ValueError, match="labels"):
        G(z, torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="labels"):
        gan.DCGANGenerator(16, channels=8)(z, torch.tensor([3, 7]))


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    D = gan.DCGANDiscriminator(64).apply(gan.dcgan_init)
    conv = D.features[2].weight
    assert abs(conv.mean().item()) < 2e-3 and conv.std().item() == pytest.approx(0.02, rel=0.05)
    bn = D.features[3]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01) and (bn.bias == 0).all()
