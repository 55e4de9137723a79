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
    "ssim", "ms_ssim", "evaluate", "ALL_METRICS", "DEFAULT_METRICS",
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


def evaluate(samples: torch.Tensor | Callable[[int], torch.Tensor], real: torch.Tensor,
             train: torch.Tensor | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
             n: int = 1000, kid_subsets: int = 10, generator: torch.Generator | None = None
             ) -> dict:
    """Evaluate generated digits against real ones with the shipped feature network.

    ``samples``: images ``[N, 1, 28, 28]`` in [0, 1], or a function ``n -> images``;
    ``real``: held-out real images (the test split); ``train``: real training images, needed for
    ``fid_ratio`` = FID(samples, real) / FID(train, real), all with ``n`` images each.
    Returns a flat dict ``{metric: float}`` (``one_nn`` gives ``one_nn_real/fake/overall``).
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; choose from {', '.join(ALL_METRICS)}")
    if "fid_ratio" in metrics and train is None:
        raise ValueError("train: fid_ratio needs real training images (the baseline "
                         "FID(train, test))")
    fake_x = _images(samples, n)
    real_x = _images(real, n)
    if len(fake_x) < n or len(real_x) < n:
        raise ValueError(f"n: asked for {n} images, got {len(fake_x)} generated and "
                         f"{len(real_x)} real")
    fake_f, fake_p = classify(fake_x)
    real_f, real_p = classify(real_x)
    out: dict = {}
    if "fid" in metrics or "fid_ratio" in metrics:
        out["fid"] = fid(real_f, fake_f)
    if "fid_ratio" in metrics:
        train_f, _ = classify(_images(train, n))
        out["fid_train_test"] = fid(real_f, train_f)
        out["fid_ratio"] = out["fid"] / out["fid_train_test"]
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kid(real_f, fake_f, subsets=kid_subsets,
                                         subset_size=min(n, 500), generator=generator)
    if "is" in metrics:
        out["is"], out["is_std"] = inception_score(fake_p, splits=10 if n >= 100 else 1)
    if "mode_score" in metrics:
        out["mode_score"] = mode_score(fake_p, real_p)
    if "precision" in metrics or "recall" in metrics:
        out["precision"], out["recall"] = precision_recall(real_f, fake_f, k=3)
    if "density" in metrics or "coverage" in metrics:
        out["density"], out["coverage"] = density_coverage(real_f, fake_f, k=5)
    if "one_nn" in metrics:
        for key, value in one_nn_accuracy(real_f, fake_f).items():
            out[f"one_nn_{key}"] = value
    if "classes_covered" in metrics:
        out["classes_covered"] = class_coverage(fake_p)["classes_covered"]
    return out
