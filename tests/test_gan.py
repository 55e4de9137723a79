"""companion.gan: the game on discrete distributions, losses, slerp, minibatch std, networks, training."""
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


# ---------------------------------------------------------------------------------------------
# Toy networks, mode coverage, training pieces
# ---------------------------------------------------------------------------------------------

from companion import data, train  # noqa: E402


def test_toy_networks_shapes_and_minibatch_std_at_the_input():
    G, D = gan.ToyGenerator(latent_dim=5, out_dim=2), gan.ToyDiscriminator(minibatch_std=True)
    x = G(torch.randn(7, 5))
    assert x.shape == (7, 2) and D(x).shape == (7,)
    assert D.net[1].in_features == 3                      # 2 coordinates + the batch's std
    # A collapsed batch (all points equal) and a spread one differ only through that feature.
    same = torch.ones(4, 2)
    feats = D.net[0](same)
    assert torch.allclose(feats[:, 2], torch.full((4,), 1e-4), atol=1e-6)
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))


def test_mode_coverage_by_hand():
    ring = data.ring_of_gaussians(n_modes=8, radius=2.0, std=0.05)
    centres = ring.means.float()
    on_modes = centres.repeat(10, 1)                                   # 80 points, 10 per mode
    cov = gan.mode_coverage(on_modes, ring)
    assert cov["modes_covered"] == 8 and cov["high_quality"] == 1.0
    assert cov["per_mode"] == pytest.approx([1 / 8] * 8)
    # Half the samples at the origin (far from every mode), the rest on two modes.
    pts = torch.cat([torch.zeros(50, 2), centres[0].expand(30, 2), centres[3].expand(20, 2)
                     + torch.tensor([0.14, 0.0])])                      # 0.14 < 3 * 0.05
    cov = gan.mode_coverage(pts, ring)
    assert cov["modes_covered"] == 2 and cov["high_quality"] == pytest.approx(0.5)
    assert cov["per_mode"][0] == pytest.approx(0.3) and cov["per_mode"][3] == pytest.approx(0.2)
    just_out = centres[:1] + torch.tensor([[0.16, 0.0]])               # 0.16 > 3 * 0.05
    assert gan.mode_coverage(just_out, ring)["high_quality"] == 0.0
    with pytest.raises(ValueError, match="samples"):
        gan.mode_coverage(torch.zeros(5, 3), ring)


def test_replay_buffer():
    buf = gan.ReplayBuffer(capacity=6, fraction=1.0)
    first = torch.arange(4.0)[:, None]
    out, labels = buf.push_and_sample(first)
    assert torch.equal(out, first) and labels is None and len(buf) == 4    # empty pool: as is
    second = 10 + torch.arange(4.0)[:, None]
    out, _ = buf.push_and_sample(second, generator=torch.Generator().manual_seed(0))
    assert set(out.flatten().tolist()) <= set(first.flatten().tolist())    # all from the pool
    assert len(buf) == 6                                                   # capacity
    keep = gan.ReplayBuffer(fraction=0.0)
    keep.push_and_sample(first)
    assert torch.equal(keep.push_and_sample(second)[0], second)
    # Labels travel with their images.
    lab = gan.ReplayBuffer(fraction=1.0)
    lab.push_and_sample(first, torch.arange(4))
    out, y = lab.push_and_sample(second, torch.arange(4) + 10)
    assert torch.equal(out.flatten().long(), y)
    with pytest.raises(ValueError, match="capacity"):
        gan.ReplayBuffer(capacity=0)
    with pytest.raises(ValueError, match="fraction"):
        gan.ReplayBuffer(fraction=1.5)


def test_unrolled_loss_matches_an_explicit_unroll():
    torch.manual_seed(0)
    G, D = gan.ToyGenerator(3, 2, 8, 1), gan.ToyDiscriminator(2, 8, 1)
    real, z = torch.randn(16, 2), torch.randn(16, 3)
    before = [p.detach().clone() for p in D.parameters()]
    zero = gan.unrolled_generator_loss(G, D, real, z, unroll=0)
    torch.testing.assert_close(zero, gan.non_saturating_generator_loss(D(G(z))))
    # One plain gradient step on a copy of D, written out by hand.
    lr = 0.05
    copy_d = gan.ToyDiscriminator(2, 8, 1)
    copy_d.load_state_dict(D.state_dict())
    d_loss = gan.discriminator_loss(copy_d(real), copy_d(G(z).detach()))
    grads = torch.autograd.grad(d_loss, list(copy_d.parameters()))
    with torch.no_grad():
        for p, g in zip(copy_d.parameters(), grads, strict=True):
            p -= lr * g
    expected = gan.non_saturating_generator_loss(copy_d(G(z)))
    got = gan.unrolled_generator_loss(G, D, real, z, unroll=1, lr=lr)
    torch.testing.assert_close(got, expected)
    # D is untouched, and the generator's gradient also flows through the unrolled step.
    assert all(torch.equal(a, b) for a, b in zip(before, D.parameters(), strict=True))
    (g_unrolled,) = torch.autograd.grad(got, [G.net[0].weight])
    (g_first_order,) = torch.autograd.grad(expected, [G.net[0].weight])
    assert not torch.allclose(g_unrolled, g_first_order)


def _algorithm_1(G, D, opt_g, opt_d, real, k, seed):
    gen = torch.Generator().manual_seed(seed)
    for x in real.chunk(k):
        z = torch.randn(len(x), G.latent_dim, generator=gen)
        d_loss = gan.discriminator_loss(D(x), D(G(z).detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    z = torch.randn(len(real) // k, G.latent_dim, generator=gen)
    g_loss = gan.non_saturating_generator_loss(D(G(z)))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss, g_loss


@pytest.mark.parametrize("k", [1, 3])
def test_train_step_is_algorithm_1(k):
    pairs = []
    for _ in range(2):
        torch.manual_seed(0)
        G, D = gan.ToyGenerator(3, 2, 8, 1), gan.ToyDiscriminator(2, 8, 1)
        pairs.append((G, D, torch.optim.SGD(G.parameters(), lr=0.1),
                      torch.optim.SGD(D.parameters(), lr=0.1)))
    real = torch.randn(6 * k, 2, generator=torch.Generator().manual_seed(1))
    out = gan.train_step(*pairs[0], real, d_steps=k, generator=torch.Generator().manual_seed(7))
    d_loss, g_loss = _algorithm_1(*pairs[1], real, k, seed=7)
    torch.testing.assert_close(out["d_loss"], d_loss.detach())
    torch.testing.assert_close(out["g_loss"], g_loss.detach())
    for a, b in zip([*pairs[0][0].parameters(), *pairs[0][1].parameters()],
                    [*pairs[1][0].parameters(), *pairs[1][1].parameters()], strict=True):
        torch.testing.assert_close(a, b)
    assert all(p.requires_grad for p in pairs[0][1].parameters())    # D is trainable again
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1


def test_train_step_options_run_and_validate():
    torch.manual_seed(0)
    G, D = gan.ToyGenerator(3, 2, 8, 1), gan.ToyDiscriminator(2, 8, 1)
    opt_g, opt_d = gan.gan_optimizers(G, D, lr_g=1e-3)
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    real = torch.randn(8, 2)
    out = gan.train_step(G, D, opt_g, opt_d, real, unroll=2, replay=gan.ReplayBuffer(),
                         real_target=0.9, loss="minimax", ema=train.EMA(G, 0.9))
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    with pytest.raises(ValueError, match="d_steps"):
        gan.train_step(G, D, opt_g, opt_d, real, d_steps=0)
    with pytest.raises(ValueError, match="real"):
        gan.train_step(G, D, opt_g, opt_d, real, d_steps=3)
    with pytest.raises(ValueError, match="loss"):
        gan.train_step(G, D, opt_g, opt_d, real, loss="hinge_typo")


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(0, 12), k=st.integers(-1, 5))
def test_train_step_batch_validation_property(batch, k):
    torch.manual_seed(0)
    G, D = gan.ToyGenerator(2, 2, 4, 1), gan.ToyDiscriminator(2, 4, 1)
    opt_g, opt_d = gan.gan_optimizers(G, D)
    real = torch.randn(batch, 2)
    if k < 1:
        with pytest.raises(ValueError, match="d_steps"):
            gan.train_step(G, D, opt_g, opt_d, real, d_steps=k)
    elif batch % k or batch < 2 * k:
        with pytest.raises(ValueError, match="real"):
            gan.train_step(G, D, opt_g, opt_d, real, d_steps=k)
    else:
        gan.train_step(G, D, opt_g, opt_d, real, d_steps=k)


def test_train_gan_history_snapshots_ema_and_nan_guard():
    ring = data.ring_of_gaussians()
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    G, D = gan.ToyGenerator(4, 2, 16, 1), gan.ToyDiscriminator(2, 16, 1)
    run = gan.train_gan(G, D, lambda: [ring.sample(32, generator=g) for _ in range(5)], steps=12,
                        lr_g=1e-3, schedule="cosine", ema_decay=0.9, log_every=4,
                        snapshot=lambda G: G(torch.zeros(3, 4)), snapshot_every=6)
    assert run.history["steps"] == [4, 8, 12] and len(run.history["d_loss"]) == 3
    assert [s for s, _ in run.snapshots] == [6, 12] and run.snapshots[0][1].shape == (3, 2)
    assert run.ema is not None and run.ema.updates == 12 and run.seconds > 0
    assert not G.training

    class NaNGenerator(gan.ToyGenerator):
        def forward(self, z, labels=None):
            return super().forward(z) * float("nan")

    bad = NaNGenerator(4, 2, 16, 1)
    with pytest.raises(train.NonFiniteLossError, match="not finite"):
        gan.train_gan(bad, gan.ToyDiscriminator(2, 16, 1),
                      lambda: [ring.sample(32, generator=g)], steps=3)
    with pytest.raises(ValueError, match="schedule"):
        gan.train_gan(G, D, lambda: [ring.sample(8)], steps=1, schedule="linear")


def test_conditional_train_gan_runs_with_labels():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    y = torch.arange(16) % 10
    G = gan.DCGANGenerator(8, 4, num_classes=10)
    D = gan.DCGANDiscriminator(4, num_classes=10, condition="projection")
    run = gan.train_gan(G, D, lambda: data.batches(x, y, batch_size=8), steps=2, log_every=1,
                        replay=gan.ReplayBuffer(), d_steps=2)
    assert len(run.history["g_loss"]) == 2


def test_fit_discriminator_approaches_d_star():
    p_data = data.gaussian_mixture_1d(means=(-1.0,), stds=(0.5,))
    p_g = data.gaussian_mixture_1d(means=(1.0,), stds=(0.5,))
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    D = gan.ToyDiscriminator(in_dim=1, hidden=32)
    losses = gan.fit_discriminator(D, lambda n: p_data.sample(n, generator=g),
                                   lambda n: p_g.sample(n, generator=g), steps=300, lr=3e-3)
    assert losses[-1] < losses[0]
    xs = torch.linspace(-1.5, 1.5, 31)[:, None]
    with torch.no_grad():
        d = torch.sigmoid(D(xs)).double()
    # Equal variances: D* is logistic in x, log(p_data / p_G) = ((x - 1)^2 - (x + 1)^2) / (2 * 0.25) = -8x.
    d_star = gan.optimal_discriminator(p_data.prob(xs), p_g.prob(xs))
    torch.testing.assert_close(d_star, torch.sigmoid(-8 * xs[:, 0].double()))
    assert (d - d_star).abs().max() < 0.1
    with pytest.raises(ValueError, match="steps"):
        gan.fit_discriminator(D, lambda n: p_data.sample(n), lambda n: p_g.sample(n), steps=0)


def test_generate_range_shape_and_validation():
    G = gan.DCGANGenerator(8, 4, num_classes=10)
    G.train()
    x = gan.generate(G, 5, torch.arange(5), generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert G.training                                              # mode restored
    z = torch.randn(5, 8)
    torch.testing.assert_close(gan.generate(G, 5, torch.arange(5), z=z),
                               gan.generate(G, 5, torch.arange(5), z=z))
    with pytest.raises(ValueError, match="z"):
        gan.generate(G, 5, torch.arange(5), z=torch.randn(4, 8))
    with pytest.raises(ValueError, match="n"):
        gan.generate(G, 0)


def test_projection_discriminator_starts_unconditional_and_validates():
    torch.manual_seed(0)
    D = gan.DCGANDiscriminator(4, num_classes=10, condition="projection").eval()
    x = torch.rand(6, 1, 28, 28)
    a, b = D(x, torch.zeros(6, dtype=torch.long)), D(x, torch.full((6,), 3))
    torch.testing.assert_close(a, b)                   # zero-initialised class embedding
    with torch.no_grad():
        D.embed.weight.normal_()
    assert not torch.allclose(D(x, torch.zeros(6, dtype=torch.long)), D(x, torch.full((6,), 3)))
    with pytest.raises(ValueError, match="condition"):
        gan.DCGANDiscriminator(4, num_classes=10, condition="film")
    with pytest.raises(TypeError, match="labels"):
        D(x, torch.zeros(6))
