"""companion.data: the offline subset, the cache, downloads that never leave half-written files,
transforms and toy distributions."""
import gzip
import hashlib
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion import data

# --- the embedded offline subset ---------------------------------------------------------------

def test_offline_subset_split_is_fixed_and_stratified(capsys):
    train = data.load_mnist("train", source="offline")
    test = data.load_mnist("test", source="offline")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() < train.images.max() <= 1
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.source == test.source == "offline"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all(line.startswith("MNIST source: embedded offline subset")
                                 for line in out)
    # No digit appears in both splits.
    tr = {hashlib.md5(x.numpy().tobytes()).hexdigest() for x in train.images}
    te = {hashlib.md5(x.numpy().tobytes()).hexdigest() for x in test.images}
    assert not tr & te


def test_smoke_profile_uses_the_offline_subset(capsys):
    assert data.load_mnist("test").source == "offline"
    assert "offline" in capsys.readouterr().out


def test_offline_file_checksum_is_verified(monkeypatch):
    data._load_offline.cache_clear()
    monkeypatch.setattr(data, "OFFLINE_SHA256", "0" * 64)
    with pytest.raises(data.DataUnavailableError, match="SHA-256"):
        data.load_mnist("train", source="offline", verbose=False)
    data._load_offline.cache_clear()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation")
    with pytest.raises(ValueError, match="source"):
        data.load_mnist("train", source="internet")


# --- the cache and downloads (a fake torchvision dataset stands in for the network) -----------

def _idx_bytes(images: np.ndarray | None = None, labels: np.ndarray | None = None) -> bytes:
    if images is not None:
        header = np.array([2051, len(images), 28, 28], dtype=">i4").tobytes()
        return gzip.compress(header + images.astype(np.uint8).tobytes())
    header = np.array([2049, len(labels)], dtype=">i4").tobytes()
    return gzip.compress(header + labels.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A tiny MNIST with known MD5 sums, and a fake torchvision class that 'downloads' it."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": _idx_bytes(images=rng.integers(0, 256, (6, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx_bytes(labels=np.arange(6) % 10),
        "t10k-images-idx3-ubyte.gz": _idx_bytes(images=rng.integers(0, 256, (3, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx_bytes(labels=np.arange(3)),
    }
    resources = [(name, hashlib.md5(blob).hexdigest()) for name, blob in files.items()]
    monkeypatch.setattr(data, "_idx_resources", lambda name: resources)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    state = {"fail_after": None, "calls": 0}

    class FakeMNIST:
        def __init__(self, root, download=False):
            state["calls"] += 1
            raw = pathlib.Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for i, (name, blob) in enumerate(files.items()):
                if state["fail_after"] is not None and i == state["fail_after"]:
                    (raw / name).write_bytes(blob[: len(blob) // 2])  # a half-written file
                    raise OSError("connection reset by peer")
                (raw / name).write_bytes(blob)

    import torchvision

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    return {"files": files, "state": state, "cache": tmp_path / "cache" / "MNIST" / "raw"}


def test_download_fills_the_cache_then_cache_is_used(fake_mnist, capsys):
    d = data.load_mnist("train", source="auto", profile="standard")
    assert d.source == "download" and d.images.shape == (6, 1, 28, 28)
    assert sorted(p.name for p in fake_mnist["cache"].iterdir()) == sorted(fake_mnist["files"])
    d = data.load_mnist("test", source="auto", profile="standard")
    assert d.source == "cache" and d.labels.tolist() == [0, 1, 2]
    assert fake_mnist["state"]["calls"] == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MNIST source: downloaded with torchvision")
    assert lines[1].startswith("MNIST source: local cache")


def test_failed_download_leaves_nothing_half_written(fake_mnist, capsys):
    fake_mnist["state"]["fail_after"] = 2
    d = data.load_mnist("train", source="auto", profile="standard")
    assert d.source == "offline"                      # fell back
    assert "download unavailable" in capsys.readouterr().out
    cache_root = fake_mnist["cache"].parent.parent
    leftovers = [p for p in cache_root.rglob("*") if p.is_file()]
    assert leftovers == []
    with pytest.raises(data.DataUnavailableError, match="connect to the internet once"):
        data.load_mnist("train", source="download")


def test_corrupt_cache_file_is_detected_and_replaced(fake_mnist, capsys):
    data.load_mnist("train", source="download", verbose=False)
    victim = fake_mnist["cache"] / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(data.DataUnavailableError, match="failed its MD5 checksum"):
        data.load_mnist("test", source="cache")
    d = data.load_mnist("test", source="auto", profile="standard")
    assert d.source == "download"                     # re-downloaded over the corrupt file
    assert "cache unavailable" in capsys.readouterr().out
    assert victim.read_bytes() == fake_mnist["files"][victim.name]


def test_offline_flag_skips_downloads(fake_mnist, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    d = data.load_mnist("train", source="auto", profile="standard")
    assert d.source == "offline" and fake_mnist["state"]["calls"] == 0
    assert "COURSE_OFFLINE" in capsys.readouterr().out


def test_fashion_mnist_offline_message_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(data.DataUnavailableError, match="connect to the internet once"):
        data.load_fashion_mnist("train")
    with pytest.raises(data.DataUnavailableError, match="COURSE_OFFLINE"):
        data.load_cifar10("train")


# --- transforms ---------------------------------------------------------------------------------

def test_ranges_round_trip():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(data.from_signed(data.to_signed(x)), x, atol=1e-6)
    assert data.to_signed(x).min() >= -1 and data.to_signed(x).max() <= 1
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert torch.allclose(data.to_unit(u8), torch.tensor([0.0, 128 / 255, 1.0]))


def test_binarisation_fixed_and_dynamic():
    x = torch.rand(200, 1, 28, 28)
    a, b = data.binarize_fixed(x), data.binarize_fixed(x)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(data.binarize_dynamic(x), data.binarize_dynamic(x))
    many = torch.stack([data.binarize_dynamic(x[:2]) for _ in range(2000)]).mean(0)
    assert torch.allclose(many, x[:2], atol=0.06)        # E[Bernoulli(x)] = x


@given(st.floats(min_value=1.001, max_value=1e6) | st.floats(max_value=-0.001, min_value=-1e6))
def test_range_validation(bad):
    x = torch.full((2, 2), bad)
    for fn in (data.to_signed, data.binarize_dynamic, data.binarize_fixed):
        with pytest.raises(ValueError, match=r"images: expected finite values in \[0.0, 1.0\]"):
            fn(x)


def test_transform_type_errors():
    with pytest.raises(TypeError, match="images"):
        data.to_unit(np.zeros(3))
    with pytest.raises(TypeError, match="images"):
        data.to_signed(torch.zeros(3, dtype=torch.int64))


def test_batches_cover_every_item_once():
    x, y = torch.arange(10).float(), torch.arange(10)
    seen = torch.cat([yb for _, yb in data.batches(x, y, batch_size=3)])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(b) for b in data.batches(x, batch_size=3, drop_last=True)] == [3, 3, 3]
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(x, batch_size=0))


# --- toy distributions ----------------------------------------------------------------------------

def test_mixture_log_prob_matches_torch_distributions():
    mix = data.ring_of_gaussians(n_modes=8, radius=2.0, std=0.1)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mix.weights),
        torch.distributions.Independent(
            torch.distributions.Normal(mix.means, mix.stds[:, None].expand_as(mix.means)), 1))
    x = torch.randn(50, 2, dtype=torch.float64) * 2
    assert torch.allclose(mix.log_prob(x), ref.log_prob(x), atol=1e-10)


def test_mixture_samples_follow_the_components():
    mix = data.gaussian_mixture_1d(means=(-2.0, 2.0), stds=(0.5, 0.5), weights=(0.25, 0.75))
    x, comp = mix.sample(20_000, torch.Generator().manual_seed(0), return_components=True)
    assert x.shape == (20_000, 1)
    assert abs(comp.float().mean().item() - 0.75) < 0.02
    assert abs(x[comp == 1].std().item() - 0.5) < 0.02
    dx = 0.01
    grid = torch.arange(-6, 6, dx, dtype=torch.float64)[:, None]
    assert abs(mix.prob(grid).sum().item() * dx - 1) < 1e-6   # the density integrates to 1


def test_grid_and_swiss_roll_shapes():
    grid = data.grid_of_gaussians(side=5)
    assert grid.means.shape == (25, 2) and torch.allclose(grid.means.mean(0), torch.zeros(2,
                                                          dtype=torch.float64))
    roll = data.swiss_roll(500, generator=torch.Generator().manual_seed(0))
    assert roll.shape == (500, 2)


def test_mixture_validation():
    with pytest.raises(ValueError, match="weights"):
        data.GaussianMixture([[0.0], [1.0]], 1.0, weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="stds"):
        data.GaussianMixture([[0.0]], -1.0)
    with pytest.raises(ValueError, match="x: expected shape"):
        data.ring_of_gaussians().log_prob(torch.zeros(3, 3))
