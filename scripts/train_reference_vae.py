"""Retrain the shipped lesson-02 VAE that lesson 03 compares PixelCNN against.

    python scripts/train_reference_vae.py [--seed 0]

Lesson 03 reports the exact PixelCNN likelihood beside lesson 02's VAE bounds on the same
fixed-binarised test set. Training that VAE again would cost lesson 03 a minute, so the package
ships it: this script trains it with lesson 02's smoke recipe (conv decoder, 32 latent dimensions,
Adam 3e-3 with cosine decay, KL warm-up over 400 steps, 2,400 steps of 100 dynamically binarised
images from the offline training split), reports its test negative ELBO and IWAE bound (k = 100),
and writes ``companion/_data/vae_lesson02.pt`` atomically, in half precision to keep the package
small. Lesson 03 evaluates the shipped weights itself; it never reads a stored result.
"""
from __future__ import annotations

import argparse

import torch

from companion import config, data, vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    g = config.seed_everything(args.seed)
    train_set = data.load_mnist("train", source="offline")
    test = data.binarized_mnist_test(source="offline")
    model = vae.VAE(latent_dim=32, decoder="conv")
    vae.train_vae(model, train_set.images, 2_400, lr=3e-3, schedule="cosine", warmup=400,
                  generator=g)
    model.eval()
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in half.items()})   # report what is shipped
    nelbo = -vae.elbo(model, test.images, generator=torch.Generator().manual_seed(0))["elbo"].mean()
    bound = -vae.iwae_bound(model, test.images, 100, generator=torch.Generator().manual_seed(0))
    print(f"offline test: negative ELBO {float(nelbo):.2f} nats, -L_100 {float(bound.mean()):.2f}"
          f" nats (seed {args.seed})")
    path = vae.save_reference(half)
    path.chmod(0o644)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
