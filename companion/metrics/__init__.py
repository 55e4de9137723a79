"""Evaluation metrics for generative models (lesson 06, and every GAN lesson's gates).

- :mod:`~companion.metrics.classifier`: the shipped MNIST feature network (features and class
  probabilities), and optionally torchvision's Inception-v3 features for users who are online.
- :mod:`~companion.metrics.scores`: IS, Mode Score, FID (and from saved statistics, and
  FID-infinity), KID, precision/recall, density/coverage, the 1-NN test, W1, class coverage.
- :mod:`~companion.metrics.ssim`: SSIM and MS-SSIM adapted to 28x28.
- :func:`evaluate`: several metrics at once as one flat dict, including the FID ratio
  FID(generated, test) / FID(train, test) that the GAN lessons' gates use.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from companion.metrics.classifier import FEATURE_DIM, MNISTClassifier, classify, load_classifier
from companion.metrics.scores import (
    class_coverage,
    density_coverage,
    feature_stats,
    fid,
    fid_from_stats,
    fid_infinity,
    inception_score,
    kid,
    load_stats,
    mode_score,
    one_nn_accuracy,
    precision_recall,
    save_stats,
    wasserstein1,
    wasserstein1_exact,
    wasserstein1_sliced,
)
from companion.metrics.ssim import ms_ssim, ssim

ALL_METRICS = ("fid", "fid_ratio", "kid", "is", "mode_score", "precision", "recall", "density",
               "coverage", "one_nn", "classes_covered")
DEFAULT_METRICS = ("fid", "fid_ratio", "kid", "is", "precision", "recall", "coverage",
                   "classes_covered")

__all__ = [
    "FEATURE_DIM", "MNISTClassifier", "classify", "load_classifier", "inception_features",
    "class_coverage", "density_coverage", "feature_stats", "fid", "fid_from_stats",
    "fid_infinity", "inception_score", "kid", "load_stats", "mode_score", "one_nn_accuracy",
    "precision_recall", "save_stats", "wasserstein1", "wasserstein1_exact", "wasserstein1_sliced",
    "ssim", "ms_ssim", "evaluate", "Evaluator", "sweep", "ALL_METRICS", "DEFAULT_METRICS",
]


def inception_features(images: torch.Tensor, batch_size: int = 64, timeout: float = 20.0
                       ) -> torch.Tensor:
    """Inception-v3 pool features ``[N, 2048]`` (float64) of ``[N, 1 or 3, H, W]`` in [0, 1].

    Needs torchvision's ImageNet weights: from the torch hub cache, or downloaded once (online).
    Offline without a cached copy this raises ``RuntimeError`` quickly with the fix, never hangs.
    """
    import socket

    import torch.nn.functional as F
    import torchvision

    weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        model = torchvision.models.inception_v3(weights=weights)
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise RuntimeError(
            f"Inception-v3 weights are not in the torch hub cache ({torch.hub.get_dir()}) and "
            f"could not be downloaded ({type(exc).__name__}: {exc}). Offline, use the shipped "
            f"MNIST feature network (features='classifier', the default), or download the "
            f"weights once while online."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    model.fc = torch.nn.Identity()
    model.eval().requires_grad_(False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].float()
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(model((x - mean) / std).double())
    return torch.cat(out)


def _images(samples, n: int) -> torch.Tensor:
    if callable(samples) and not isinstance(samples, torch.Tensor):
        with torch.no_grad():
            samples = samples(n)
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples: expected images [N, 1, 28, 28] or a function n -> images, "
                        f"got {type(samples).__name__}")
    return samples.detach()[:n]


class Evaluator:
    """Metrics of generated digits against one fixed real set, whose features are computed once.

    ``real``: held-out real images ``[N, 1, 28, 28]`` in [0, 1] (the test split); ``train``:
    real training images for the FID ratio's baseline FID(train, real). ``evaluator(samples)``
    returns the same flat dict as :func:`evaluate`.
    """

    def __init__(self, real: torch.Tensor, train: torch.Tensor | None = None, n: int | None = None,
                 metrics: Sequence[str] = DEFAULT_METRICS, kid_subsets: int = 10,
                 features: str = "classifier"):
        if features not in ("classifier", "inception"):
            raise ValueError(f"features: expected 'classifier' or 'inception', got {features!r}")
        self.features = features
        unknown = sorted(set(metrics) - set(ALL_METRICS))
        if unknown:
            raise ValueError(f"metrics: unknown {unknown}; choose from {', '.join(ALL_METRICS)}")
        if "fid_ratio" in metrics and train is None:
            raise ValueError("train: fid_ratio needs real training images (the baseline "
                             "FID(train, test))")
        self.n = n or len(real)
        self.metrics, self.kid_subsets = tuple(metrics), kid_subsets
        real_x = _images(real, self.n)
        if len(real_x) < self.n:
            raise ValueError(f"n: asked for {self.n} real images, got {len(real_x)}")
        self.real_f, self.real_p = self._embed(real_x)
        self.fid_train = None
        if train is not None and "fid_ratio" in metrics:
            train_f, _ = self._embed(_images(train, self.n))
            self.fid_train = fid(self.real_f, train_f)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features for the distance-based metrics and class probabilities (always from the MNIST
        classifier: ImageNet's classes mean nothing for digits)."""
        feats, probs = classify(x)
        if self.features == "inception":
            feats = inception_features(x)
        return feats, probs

    def __call__(self, samples, generator: torch.Generator | None = None) -> dict:
        fake_x = _images(samples, self.n)
        if len(fake_x) < self.n:
            raise ValueError(f"samples: expected {self.n} images, got {len(fake_x)}")
        fake_f, fake_p = self._embed(fake_x)
        return self.from_features(fake_f, fake_p, generator)

    def from_features(self, fake_f, fake_p, generator=None) -> dict:
        m, real_f, out = self.metrics, self.real_f, {}
        if "fid" in m or "fid_ratio" in m:
            out["fid"] = fid(real_f, fake_f)
        if "fid_ratio" in m:
            out["fid_train_test"] = self.fid_train
            out["fid_ratio"] = out["fid"] / self.fid_train
        if "kid" in m:
            out["kid"], out["kid_std"] = kid(real_f, fake_f, subsets=self.kid_subsets,
                                             subset_size=min(len(fake_f), len(real_f), 500),
                                             generator=generator)
        if "is" in m:
            out["is"], out["is_std"] = inception_score(fake_p, splits=10 if len(fake_p) >= 100
                                                       else 1)
        if "mode_score" in m:
            out["mode_score"], out["mode_score_std"] = mode_score(
                fake_p, self.real_p, splits=10 if len(fake_p) >= 100 else 1)
        if "precision" in m or "recall" in m:
            out["precision"], out["recall"] = precision_recall(real_f, fake_f, k=3)
        if "density" in m or "coverage" in m:
            out["density"], out["coverage"] = density_coverage(real_f, fake_f, k=5)
        if "one_nn" in m:
            for key, value in one_nn_accuracy(real_f, fake_f).items():
                out[f"one_nn_{key}"] = value
        if "classes_covered" in m:
            out["classes_covered"] = class_coverage(fake_p)["classes_covered"]
        return out


def evaluate(samples: torch.Tensor | Callable[[int], torch.Tensor], real: torch.Tensor,
             train: torch.Tensor | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
             n: int = 1000, kid_subsets: int = 10, generator: torch.Generator | None = None,
             features: str = "classifier") -> dict:
    """Evaluate generated digits against real ones with the shipped feature network.

    ``samples``: images ``[N, 1, 28, 28]`` in [0, 1], or a function ``n -> images``;
    ``real``: held-out real images (the test split); ``train``: real training images, needed for
    ``fid_ratio`` = FID(samples, real) / FID(train, real), all with ``n`` images each.
    Returns a flat dict ``{metric: float}`` (``one_nn`` gives ``one_nn_real/fake/overall``).
    ``features="inception"`` uses torchvision's Inception-v3 pool features (online, or cached)
    for the distance-based metrics instead of the shipped classifier's.
    """
    return Evaluator(real, train=train, n=n, metrics=metrics, kid_subsets=kid_subsets,
                     features=features)(samples, generator=generator)


def sweep(evaluator: Evaluator, images: torch.Tensor, disturb: Callable, levels: Sequence,
          generator: torch.Generator | None = None) -> dict:
    """Evaluate ``disturb(images, level)`` at each level; returns ``{metric: [value per level]}``."""
    table: dict = {}
    for level in levels:
        for key, value in evaluator(disturb(images, level), generator=generator).items():
            table.setdefault(key, []).append(value)
    return table
