"""The course's MNIST feature network: a small CNN classifier shipped with its weights.

Its penultimate activations (128 numbers per image, after global average pooling) are the
features behind FID, KID, precision/recall, density/coverage and the 1-NN test on MNIST; its class
probabilities drive the Inception Score, the Mode Score and class coverage. A domain network sees
what matters for digits (strokes, shapes), where ImageNet features would see textures of objects
that digits do not have.

Architecture (input ``[N, 1, 28, 28]`` in [0, 1]):

    conv 3x3, 32  -> BN -> ReLU                  28x28
    conv 3x3, 64, stride 2 -> BN -> ReLU         14x14
    conv 3x3, 64  -> BN -> ReLU                  14x14
    conv 3x3, 128, stride 2 -> BN -> ReLU         7x7
    global average pool -> features [N, 128]
    linear 128 -> 10 logits

Retrain reproducibly with ``python scripts/train_feature_net.py`` (on the offline training split,
with small random shifts and rotations as augmentation).
"""
from __future__ import annotations

import pathlib
from functools import lru_cache

import torch
from torch import nn

WEIGHTS = pathlib.Path(__file__).resolve().parents[1] / "_data" / "mnist_classifier.pt"
FEATURE_DIM = 128


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MNISTClassifier(nn.Module):
    """Small CNN digit classifier; ``features(x)`` gives the ``[N, 128]`` penultimate features."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(_block(1, 32), _block(32, 64, 2), _block(64, 64),
                                  _block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(FEATURE_DIM, 10)

    @staticmethod
    def _check(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"images: expected shape [N, 1, 28, 28], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"images: expected float values in [0, 1], got {x.dtype}")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._check(x) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@lru_cache(maxsize=4)
def _load(device: str) -> MNISTClassifier:
    if not WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the feature network's weights {WEIGHTS} are missing; reinstall the package or "
            f"retrain them with `python scripts/train_feature_net.py`")
    model = MNISTClassifier()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False).to(device)


def load_classifier(device: torch.device | str = "cpu") -> MNISTClassifier:
    """The shipped, trained classifier (eval mode, no gradients), cached per device."""
    return _load(str(torch.device(device)))


@torch.no_grad()
def classify(images: torch.Tensor, batch_size: int = 1000, device=None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[N, 128]`` and class probabilities ``[N, 10]`` (float64, on the CPU) of images
    ``[N, 1, 28, 28]`` in [0, 1]."""
    MNISTClassifier._check(images)
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"images: expected values in [0, 1], got range [{lo:.3g}, {hi:.3g}] "
                         f"(images in [-1, 1] need companion.data.from_signed first)")
    device = torch.device(device) if device is not None else images.device
    model = load_classifier(device)
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(images[start:start + batch_size].to(device).float())
        feats.append(f.double().cpu())
        probs.append(torch.softmax(model.head(f).double(), dim=1).cpu())
    return torch.cat(feats), torch.cat(probs)
