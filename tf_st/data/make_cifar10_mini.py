"""Builds the bundled ``cifar10_mini`` dataset (``tf_st/data/cifar10_mini.npz``).

Source: ``cifar10-lossless-4000.npz``, the canonical CIFAR-10 *training* images 0..3999
(data_batch_1 rows 0..3999), bit-exact uint8.

Carving (fixed, no randomness):
  * ``train``: the first 3,000 images, canonical CIFAR-10 training indices 0..2999;
  * ``test``:  the last 1,000 images, canonical CIFAR-10 training indices 3000..3999.

The mini "test" split is therefore made of CIFAR-10 *training* images held out from the mini
train split: accuracies measured on it are NOT CIFAR-10 test-set numbers.

Usage::

    python -m tf_st.data.make_cifar10_mini --src PATH [--dst PATH]

``--src`` is required (no default: the source file is not part of the repository);
``$TF_ST_SHARED_DATA/cifar10-lossless-4000.npz`` is used when that variable is set.
"""

import argparse
import os

import numpy as np

DEFAULT_DST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_mini.npz")
NUM_TRAIN = 3000
NUM_TEST = 1000


def make(src, dst=DEFAULT_DST):
    with np.load(src) as d:
        images = np.asarray(d["images"])
        labels = np.asarray(d["labels"]).astype(np.int64)
        canonical = np.asarray(d["canonical_index"]).astype(np.int64)
        class_names = np.asarray([str(c) for c in d["class_names"]])
    n = NUM_TRAIN + NUM_TEST
    if images.shape != (n, 32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(f"{src}: expected uint8 images of shape {(n, 32, 32, 3)}, "
                         f"got {images.dtype} {images.shape}")
    if labels.shape != (n,) or not np.array_equal(canonical, np.arange(n)):
        raise ValueError(f"{src}: expected labels/canonical_index for training images 0..{n - 1}")
    if len(class_names) != 10 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{src}: expected 10 classes")
    np.savez_compressed(
        dst,
        train_images=images[:NUM_TRAIN], train_labels=labels[:NUM_TRAIN],
        train_canonical_index=canonical[:NUM_TRAIN],
        test_images=images[NUM_TRAIN:], test_labels=labels[NUM_TRAIN:],
        test_canonical_index=canonical[NUM_TRAIN:],
        class_names=class_names)
    return dst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("TF_ST_SHARED_DATA")
    src = os.path.join(shared, "cifar10-lossless-4000.npz") if shared else None
    p.add_argument("--src", default=src, required=src is None,
                   help="cifar10-lossless-4000.npz (default: in $TF_ST_SHARED_DATA)")
    p.add_argument("--dst", default=DEFAULT_DST)
    args = p.parse_args(argv)
    dst = make(args.src, args.dst)
    print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
