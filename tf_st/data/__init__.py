"""Datasets and input pipelines.

Every loader returns a :class:`Split` whose ``dataset`` yields ``(image, label)`` pairs:
``image`` float32 HWC in [0, 1], ``label`` an int64 scalar. Known datasets (``DATASETS``):

* ``cifar10``, ``cifar100``: TFDS ``cifar10`` / ``cifar100`` (fine labels).
* ``svhn``: TFDS ``svhn_cropped`` (the name ``svhn_cropped`` is accepted too); train/test only,
  the ``extra`` split is not used.
* ``cifar10_mini``: bundled, offline (``cifar10_mini.npz``, built by ``make_cifar10_mini.py``
  from 4,000 lossless CIFAR-10 *training* images, canonical indices 0..3999).
  ``train`` = canonical training indices 0..2999 (3,000 images); ``test`` = canonical training
  indices 3000..3999 (1,000 images). The mini "test" split is CIFAR-10 *training* images held
  out from the mini train split, so numbers on it are NOT CIFAR-10 test-set numbers
  (``Split.note`` says so).
* ``image_folder``: ``data_dir`` must contain ``<split>/<class>/<image file>`` (jpg/png/bmp);
  classes are the sorted union of the class folders of ``train/`` and ``test/``, so labels
  agree between splits (for CIFAR-10 folders named by class, the sorted names are the
  canonical CIFAR-10 order). All images must have the size of the first image.

TFDS datasets are never downloaded: ``load`` reads prepared data from ``data_dir`` (or
``$TFDS_DATA_DIR`` / ``~/tensorflow_datasets``) and raises :class:`DatasetNotFoundError`
with instructions when it is missing.

Modules: ``splits`` (the ``Split`` type), ``tfds_source``, ``image_folder``, ``mini``
(the bundled set), ``pipelines``, ``rst`` (robust self-training batches); this package
keeps the registry (``DATASETS``, ``load``) and re-exports their public names.

Pipelines: :func:`train_pipeline` (cache, seeded full shuffle that changes every epoch, seeded
per-example augmentation, batch, prefetch), :func:`eval_pipeline` (first ``limit`` examples in
order, last partial batch kept) and :func:`as_numpy`.
"""

import contextlib
import dataclasses
import os
from typing import Optional

import tensorflow as tf

from tf_st.data.image_folder import load_image_folder
from tf_st.data.mini import MINI_PATH, MINI_TEST_NOTE, MINI_TRAIN_NOTE, _load_mini
from tf_st.data.pipelines import (AUGMENTATIONS, as_numpy, crop_flip, eval_pipeline,
                                  pad_crop_flip, take, train_epochs, train_pipeline)
from tf_st.data.splits import (IMAGE_EXTENSIONS, SPLITS, DatasetNotFoundError, Split,
                               from_arrays)
from tf_st.data.tfds_source import _load_tfds

__all__ = [
    "DATASETS", "register_dataset", "AUGMENTATIONS", "SPLITS", "DatasetSpec", "Split",
    "DatasetNotFoundError", "load", "load_image_folder", "from_arrays", "canonical_name",
    "train_pipeline", "train_epochs", "eval_pipeline", "take", "as_numpy", "crop_flip",
    "pad_crop_flip", "IMAGE_EXTENSIONS", "MINI_PATH", "MINI_TEST_NOTE", "MINI_TRAIN_NOTE",
]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What ``load`` knows about a dataset name."""
    kind: str  # 'tfds' | 'mini' | 'folder'
    tfds_name: Optional[str]
    num_classes: Optional[int]  # None: read from the data
    description: str


DATASETS = {
    "cifar10": DatasetSpec("tfds", "cifar10", 10, "CIFAR-10 via TFDS (50k train / 10k test)"),
    "cifar100": DatasetSpec("tfds", "cifar100", 100,
                            "CIFAR-100 via TFDS, fine labels (50k train / 10k test)"),
    "svhn": DatasetSpec("tfds", "svhn_cropped", 10,
                        "SVHN cropped digits via TFDS svhn_cropped (73,257 train / 26,032 test)"),
    "svhn_cropped": DatasetSpec("tfds", "svhn_cropped", 10, "alias of 'svhn'"),
    "cifar10_mini": DatasetSpec("mini", None, 10,
                                "bundled offline subset: 3,000 train / 1,000 held-out CIFAR-10 "
                                "training images"),
    "image_folder": DatasetSpec("folder", None, None,
                                "images in <data_dir>/<split>/<class>/<file>"),
}
_ALIASES = {"svhn_cropped": "svhn"}


def register_dataset(name, spec, *, alias_of=None):
    """Adds a dataset ``name`` (lower case) that ``load`` reads as ``spec`` says: another
    TFDS dataset is ``register_dataset("fashion_mnist", DatasetSpec("tfds",
    "fashion_mnist", 10, "..."))``.  Training it also needs its row in the preset table
    (``tf_st.training.presets.PRESETS[(name, "*")]``).  Register before the trainer CLI
    is imported: its ``--dataset`` choices are read when its flags are defined."""
    if name != name.lower() or name in DATASETS:
        raise ValueError(f"dataset name {name!r} must be lower case and new")
    if spec.kind not in ("tfds", "mini", "folder"):
        raise ValueError(f"unknown dataset kind {spec.kind!r}; use tfds, mini or folder")
    DATASETS[name] = spec
    if alias_of:
        _ALIASES[name] = alias_of



def canonical_name(name):
    """Lower-cased known name with aliases resolved ('svhn_cropped' -> 'svhn')."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}")
    return _ALIASES.get(key, key)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}")


@contextlib.contextmanager
def naming_bad_images(name, data_dir):
    """Turns a TF decode error raised while ``name`` is being read (in a training epoch,
    a data pipeline) into a ``DatasetNotFoundError`` naming the first image folder file
    that does not decode; other datasets and other errors pass unchanged."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
        if name != "image_folder" or not data_dir:
            raise
        from tf_st.data.image_folder import first_undecodable
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(str(data_dir))
                       for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        bad = first_undecodable(paths)
        if bad is None:
            raise
        raise DatasetNotFoundError(f"image_folder: {bad[0]} cannot be decoded ({bad[1]}); "
                                   "fix or remove it") from e


def load(name, split, data_dir=None):
    """Loads ``split`` ('train' or 'test') of dataset ``name`` (a key of ``DATASETS``)."""
    key = canonical_name(name)
    _check_split(split)
    spec = DATASETS[key]
    if spec.kind == "mini":
        return _load_mini(split)
    if spec.kind == "folder":
        return load_image_folder(data_dir, split)
    return _load_tfds(key, spec, split, data_dir)
