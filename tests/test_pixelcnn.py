"""companion.pixelcnn: masks and causality, the blind spot, exact likelihood, samplers."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Categorical

from companion import pixelcnn as pc

SIZE = 10


def _models():
    torch.manual_seed(0)
    return {
        "pixelcnn": pc.PixelCNN(8, 3),
        "pixelcnn-k5": pc.PixelCNN(8, 2, first_kernel=5),
        "pixelcnn-4-levels": pc.PixelCNN(8, 3, levels=4),
        "gated": pc.GatedPixelCNN(8, 3),
        "gated-k5": pc.GatedPixelCNN(8, 2, kernel_size=5),
        "gated-conditional": pc.GatedPixelCNN(8, 3, num_classes=10),
        "gated-4-levels": pc.GatedPixelCNN(8, 2, levels=4),
    }


# --- masks and masked convolutions ------------------------------------------------------------


def test_causal_mask_by_hand():
    a = torch.tensor([[1., 1., 1.], [1., 0., 0.], [0., 0., 0.]])
    b = torch.tensor([[1., 1., 1.], [1., 1., 0.], [0., 0., 0.]])
    assert torch.equal(pc.causal_mask(3, "A"), a)
    assert torch.equal(pc.causal_mask(3, "B"), b)
    assert torch.equal(pc.causal_mask(1, "A"), torch.zeros(1, 1))
    assert torch.equal(pc.causal_mask(1, "B"), torch.ones(1, 1))


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_causal_mask_keeps_exactly_the_earlier_taps(k):
    # raster order inside the kernel: a tap is kept iff it comes before the centre (A) or at it (B)
    order = torch.arange(k * k).view(k, k)
    centre = (k * k) // 2
    assert torch.equal(pc.causal_mask(k, "A"), (order < centre).float())
    assert torch.equal(pc.causal_mask(k, "B"), (order <= centre).float())


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_causality_by_gradients(k, mask_type):
    torch.manual_seed(k)
    conv = pc.MaskedConv2d(1, 4, k, mask_type)
    order = torch.arange(SIZE * SIZE).view(SIZE, SIZE)
    for r in range(SIZE):
        for c in range(SIZE):
            deps = pc.dependency_map(conv, (r, c), SIZE)
            i = r * SIZE + c
            assert not (deps & (order > i)).any(), (r, c)
            assert bool(deps[r, c]) == (mask_type == "B"), (r, c)


def test_masked_conv_equals_a_plain_conv_with_masked_weights():
    torch.manual_seed(0)
    conv = pc.MaskedConv2d(2, 3, 5, "B")
    ref = torch.nn.Conv2d(2, 3, 5, padding=2)
    with torch.no_grad():
        ref.weight.copy_(conv.weight * pc.causal_mask(5, "B"))
        ref.bias.copy_(conv.bias)
    x = torch.randn(4, 2, 9, 9)
    torch.testing.assert_close(conv(x), ref(x))


# --- whole models: causality, blind spot, reach ------------------------------------------------


@pytest.mark.parametrize("name", list(_models()))
def test_every_model_is_causal_at_every_pixel(name):
    model = _models()[name]
    assert pc.causality_violations(model, SIZE) == 0


def test_a_leaky_model_is_caught():
    class Leaky(torch.nn.Module):       # a 3x3 unmasked convolution sees the pixel it predicts
        levels = 2

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x, labels=None):
            return self.conv(x)

    # each output sees itself, its right neighbour and up to three pixels below it
    expected = sum(1 + (c < 5) + (r < 5) * (1 + (c > 0) + (c < 5))
                   for r in range(6) for c in range(6))
    assert pc.causality_violations(Leaky(), 6) == expected


def test_pixelcnn_has_a_blind_spot_and_the_gated_model_has_none():
    torch.manual_seed(0)
    plain, gated = pc.PixelCNN(8, 4), pc.GatedPixelCNN(8, 4)
    field = pc.receptive_field(plain, (12, 10), 20)
    assert pc.blind_spot_size(plain, (12, 10), 20) > 0
    # the blind spot is up and to the right of the pixel
    rows, cols = (field == 2).nonzero(as_tuple=True)
    assert (rows < 12).all() and (cols > 10).all()
    assert pc.blind_spot_size(gated, (12, 10), 20) == 0
    g_field = pc.receptive_field(gated, (12, 10), 20)
    # the gated field covers the whole rectangle above, reaching as far right as left
    above = g_field[:12] == 1
    cols = above.any(0).nonzero().flatten()
    assert 10 - cols.min() == cols.max() - 10


@pytest.mark.parametrize("name", list(_models()))
def test_reach_bounds_the_measured_receptive_field(name):
    model = _models()[name]
    up, left, right = model.reach
    size = 24
    deps = pc.dependency_map(model, (20, 12), size)
    rows, cols = deps.nonzero(as_tuple=True)
    assert 20 - rows.min() <= up and 12 - cols.min() <= left and cols.max() - 12 <= right


# --- likelihood -----------------------------------------------------------------------------


def test_log_likelihood_against_torch_distributions():
    torch.manual_seed(0)
    logits = torch.randn(5, 1, 6, 6)
    x = torch.bernoulli(torch.full((5, 1, 6, 6), 0.4))
    ref = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(pc.log_likelihood(logits, x), ref)
    k_logits = torch.randn(5, 4, 6, 6)
    x4 = torch.randint(0, 4, (5, 1, 6, 6)).float() / 3
    ref4 = Categorical(logits=k_logits.permute(0, 2, 3, 1)).log_prob(
        (x4[:, 0] * 3).round().long()).flatten(1).sum(1)
    torch.testing.assert_close(pc.log_likelihood(k_logits, x4, levels=4), ref4)


def test_nll_is_batch_independent_and_matches_the_logits():
    torch.manual_seed(0)
    model = pc.GatedPixelCNN(8, 2)
    x = torch.bernoulli(torch.full((7, 1, 8, 8), 0.3))
    whole = pc.nll(model, x)
    torch.testing.assert_close(pc.nll(model, x, batch_size=2), whole)
    torch.testing.assert_close(whole, -pc.log_likelihood(model(x), x))


def test_bits_per_dim():
    assert pc.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert pc.bits_per_dim(81.3, 784) == pytest.approx(81.3 / 784 / math.log(2))
    torch.testing.assert_close(pc.bits_per_dim(torch.tensor([543.4]), 784),
                               torch.tensor([543.4 / 784 / math.log(2)]))


def test_gated_activation():
    h = torch.randn(3, 8, 4, 4)
    torch.testing.assert_close(pc.gated_activation(h),
                               torch.tanh(h[:, :4]) * torch.sigmoid(h[:, 4:]))


def test_conditioning_changes_the_logits_and_no_label_is_a_token():
    torch.manual_seed(0)
    model = pc.GatedPixelCNN(8, 2, num_classes=3)
    with torch.no_grad():
        model.embed.weight.normal_()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.3))
    a = model(x, torch.tensor([0, 0, 0]))
    b = model(x, torch.tensor([1, 1, 1]))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(model(x), model(x, torch.tensor([3, 3, 3])))


# --- the fully visible sigmoid belief net: the chain rule, checked by enumeration ------------


def test_fully_visible_model_is_a_normalised_density():
    torch.manual_seed(0)
    model = pc.FullyVisibleSigmoid(9)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    every = pc.all_binary_images(9)
    assert every.shape == (512, 9) and len(every.unique(dim=0)) == 512
    logp = model.log_prob(every).detach()
    assert torch.logsumexp(logp, 0).abs() < 1e-5
    # the first conditional is the marginal of x_1, obtained here by brute-force summation
    p1 = logp[every[:, 0] == 1].exp().sum()
    assert p1 == pytest.approx(torch.sigmoid(model.bias[0]).item(), abs=1e-6)
    # sampling follows the same density
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(0))
    index = (samples * 2 ** torch.arange(8, -1, -1)).sum(1).long()
    freq = torch.bincount(index, minlength=512).float() / 20_000
    assert (freq - logp.exp()).abs().max() < 0.02


def test_fully_visible_model_ignores_later_variables():
    model = pc.FullyVisibleSigmoid(5)
    with torch.no_grad():
        model.weight.normal_()
    x = torch.zeros(1, 5, requires_grad=True)
    model(x)[0, 2].backward()
    assert (x.grad[0, 2:] == 0).all()


# --- sampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(_models()))
def test_fast_sampler_equals_the_naive_loop(name):
    model = _models()[name]
    labels = torch.arange(4) if "conditional" in name else None
    size = 12
    naive = pc.sample_naive(model, 4, size=size, labels=labels,
                            generator=torch.Generator().manual_seed(1))
    fast = pc.sample_fast(model, 4, size=size, labels=labels,
                          generator=torch.Generator().manual_seed(1))
    assert torch.equal(naive, fast)
    levels = model.levels
    assert set((naive * (levels - 1)).round().unique().tolist()) <= set(range(levels))


def test_draw_pixel_follows_the_probabilities():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(40_000, generator=g)
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0]).expand(40_000, 4)
    drawn = pc.draw_pixel(logits, u, levels=4)
    freq = torch.bincount((drawn * 3).round().long(), minlength=4).float() / 40_000
    assert (freq - torch.softmax(logits[0], 0)).abs().max() < 0.01
    binary = pc.draw_pixel(torch.full((40_000,), 1.0), u, levels=2)
    assert binary.mean() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.01)


def test_completion_keeps_the_given_rows_and_varies_the_rest():
    torch.manual_seed(0)
    model = pc.GatedPixelCNN(8, 2)
    top = torch.bernoulli(torch.full((2, 1, 10, 10), 0.5))
    out = pc.complete(model, top, rows=4, samples=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 1, 10, 10)
    assert torch.equal(out[:, :, :, :4], top[:, None, :, :4].expand(2, 3, 1, 4, 10))
    assert not torch.equal(out[0, 0], out[0, 1])
    slow = pc.complete(model, top, rows=4, samples=3, fast=False,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, slow)


def test_training_lowers_the_nll():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(64, 1, 8, 8)
    images[:, :, 2:6, 3:5] = 0.9                     # a bar: easy to learn
    model = pc.GatedPixelCNN(8, 2)
    before = pc.nll(model, (images > 0.5).float()).mean()
    history = pc.train_pixelcnn(model, images, 60, batch_size=16, lr=1e-2, generator=g)
    after = pc.nll(model, (images > 0.5).float()).mean()
    assert after < before - 10 and history["nll"][-1] < history["nll"][0]


# --- input validation -------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(-3, 10).filter(lambda k: k < 1 or k % 2 == 0),
                 st.floats(), st.booleans(), st.text(max_size=2)))
def test_bad_kernel_sizes_are_rejected(k):
    with pytest.raises(ValueError, match="kernel_size"):
        pc.causal_mask(k, "A")


@settings(max_examples=20, deadline=None)
@given(st.text(max_size=3).filter(lambda s: s not in ("A", "B")))
def test_bad_mask_types_are_rejected(mask_type):
    with pytest.raises(ValueError, match="mask_type"):
        pc.causal_mask(3, mask_type)


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.integers(-5, 1), st.floats(), st.booleans()))
def test_bad_levels_are_rejected(levels):
    with pytest.raises(ValueError, match="levels"):
        pc.PixelCNN(4, 2, levels=levels)


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.integers(-5, 0), st.floats(), st.booleans()))
def test_bad_sample_counts_are_rejected(n):
    with pytest.raises(ValueError, match="n"):
        pc.sample_fast(pc.GatedPixelCNN(4, 1), n, size=4)


def test_other_bad_inputs_name_the_argument():
    gated = pc.GatedPixelCNN(4, 1)
    with pytest.raises(ValueError, match="labels"):
        gated(torch.zeros(2, 1, 5, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        pc.PixelCNN(4, 1)(torch.zeros(2, 1, 5, 5), torch.tensor([0, 1]))
    cond = pc.GatedPixelCNN(4, 1, num_classes=3)
    with pytest.raises(TypeError, match="labels"):
        cond(torch.zeros(2, 1, 5, 5), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        cond(torch.zeros(2, 1, 5, 5), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="x"):
        pc.nll(gated, torch.zeros(2, 3, 5, 5))
    with pytest.raises(TypeError, match="x"):
        pc.nll(gated, torch.zeros(2, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="start"):
        pc.sample_naive(gated, 2, size=4, start=17)
    with pytest.raises(ValueError, match="x"):
        pc.sample_fast(gated, 2, size=4, x=torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="rows"):
        pc.complete(gated, torch.zeros(1, 1, 4, 4), rows=5, samples=1)
    with pytest.raises(ValueError, match="pixel"):
        pc.dependency_map(gated, (4, 0), 4)
    with pytest.raises(ValueError, match="dim"):
        pc.all_binary_images(21)
    with pytest.raises(ValueError, match="h"):
        pc.gated_activation(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="label_dropout"):
        pc.train_pixelcnn(gated, torch.zeros(4, 1, 5, 5), 1, label_dropout=1.5)
    with pytest.raises(TypeError, match="nll_nats"):
        pc.bits_per_dim("81", 784)


def test_conditional_position_maps_are_per_label():
    torch.manual_seed(0)
    model = pc.GatedPixelCNN(4, 2, num_classes=3, image_size=8)
    assert model.position.shape == (4, 8, 8, 8)
    with torch.no_grad():
        model.position.normal_()
    x = torch.bernoulli(torch.full((2, 1, 8, 8), 0.3))
    a, b = model(x, torch.tensor([0, 0])), model(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(model(x), model(x, torch.tensor([3, 3])))
    assert pc.causality_violations(model, 8) == 0
    labels = torch.tensor([0, 2])
    naive = pc.sample_naive(model, 2, size=8, labels=labels, generator=torch.Generator().manual_seed(0))
    fast = pc.sample_fast(model, 2, size=8, labels=labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(naive, fast)
