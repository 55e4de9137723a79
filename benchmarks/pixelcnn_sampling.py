"""PixelCNN sampling speed: the windowed fast sampler against the naive loop.

Both samplers draw ``n`` 28x28 binary images pixel by pixel from the same Gated PixelCNN (the
lesson-03 smoke architecture, untrained: the cost does not depend on the weights) with the same
seed. The naive loop runs the whole network on the whole image for each of the 784 pixels; the
fast sampler runs it on the window the pixel can see. Prints both times, the ratio, and whether
the images are identical.

    python benchmarks/pixelcnn_sampling.py [--n 64] [--channels 16] [--layers 2] [--repeats 1]
"""
from __future__ import annotations

import argparse

import torch

from companion import pixelcnn as pc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--first-kernel", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = pc.GatedPixelCNN(args.channels, args.layers, first_kernel=args.first_kernel,
                             image_size=28).eval()
    print(f"Gated PixelCNN: {args.channels} channels, {args.layers} layers, first kernel "
          f"{args.first_kernel}, reach {model.reach}; {args.n} samples of 28x28; "
          f"{torch.get_num_threads()} threads")
    times, images = {}, {}
    for name, sampler in (("naive", pc.sample_naive), ("fast", pc.sample_fast)):
        images[name], times[name] = pc.time_sampler(
            sampler, model, args.n, repeats=args.repeats,
            generator=torch.Generator().manual_seed(0))
        print(f"{name:>6}: {times[name]:7.2f} s  ({1e3 * times[name] / 784:.2f} ms per pixel step)")
    print(f"speed-up (naive / fast): {times['naive'] / times['fast']:.1f}x; identical images: "
          f"{torch.equal(images['naive'], images['fast'])}")


if __name__ == "__main__":
    main()
