"""Retrain the shipped MNIST feature network reproducibly.

    python scripts/train_feature_net.py [--epochs 40] [--seed 0]

Trains :class:`companion.metrics.classifier.MNISTClassifier` on the offline training split
(4,000 digits) with random shifts of up to 2 pixels and rotations of up to 10 degrees, reports the
accuracy on the offline test split, and writes ``companion/_data/mnist_classifier.pt`` atomically.
Deterministic for a given seed on one machine (torch's CPU kernels, one thread).
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from companion import config, data, train
from companion.metrics.classifier import WEIGHTS, MNISTClassifier


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation (|angle| <= 10 degrees) and shift (|dx|, |dy| <= 2 pixels) per image."""
    n = len(x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / 14)   # in [-1, 1] grid units
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (model(images).argmax(1) == labels).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    g = config.seed_everything(args.seed)
    tr = data.load_mnist("train", source="offline")
    te = data.load_mnist("test", source="offline")
    model = MNISTClassifier()
    steps_per_epoch = math.ceil(len(tr) / 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3,
                                                total_steps=args.epochs * steps_per_epoch)

    def step(batch):
        model.train()
        x, y = batch
        loss = F.cross_entropy(model(augment(x, g)), y, label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss}

    history = train.fit(step, lambda: data.batches(tr.images, tr.labels, batch_size=64,
                                                   generator=g),
                        steps=args.epochs * steps_per_epoch, log_every=steps_per_epoch,
                        desc="feature net")
    acc = accuracy(model, te.images, te.labels)
    print(f"final training loss {history.last('loss'):.4f}; offline test accuracy {acc:.4f}")
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tmp = WEIGHTS.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(WEIGHTS)
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
