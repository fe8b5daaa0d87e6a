"""The bundled offline set ``cifar10_mini`` (``cifar10_mini.npz``, rebuilt by
``make_cifar10_mini``): 3,000 training images and a 1,000-image "test" split that is
*also* CIFAR-10 training images, which every number on it must say (``Split.note``)."""

import functools
import os

import numpy as np

from tf_st.data.splits import DatasetNotFoundError, from_arrays

MINI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_mini.npz")
MINI_TEST_NOTE = ("cifar10_mini 'test' split = 1,000 CIFAR-10 *training* images (canonical "
                  "training indices 3000-3999) held out from the mini train split; numbers on it "
                  "are NOT CIFAR-10 test-set numbers")
MINI_TRAIN_NOTE = ("cifar10_mini 'train' split = 3,000 lossless CIFAR-10 training images "
                   "(canonical training indices 0-2999), a small offline subset")


@functools.lru_cache(maxsize=1)
def _mini_arrays(path=MINI_PATH):
    if not os.path.exists(path):
        raise DatasetNotFoundError(
            f"The bundled cifar10_mini file {path} is missing. Rebuild it with "
            f"`python -m tf_st.data.make_cifar10_mini --src <cifar10-lossless-4000.npz>`.")
    with np.load(path) as d:
        return {k: np.asarray(d[k]) for k in d.files}


def _load_mini(split):
    d = _mini_arrays()
    return from_arrays(d[f"{split}_images"], d[f"{split}_labels"], num_classes=10,
                       class_names=[str(c) for c in d["class_names"]], name="cifar10_mini",
                       split=split, note=MINI_TEST_NOTE if split == "test" else MINI_TRAIN_NOTE)
