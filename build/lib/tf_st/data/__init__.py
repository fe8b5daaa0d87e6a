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
  agree between splits (for ``/work/shared/data/cifar10-jpeg`` this is the canonical CIFAR-10
  order). All images must have the size of the first image.

TFDS datasets are never downloaded: ``load`` reads prepared data from ``data_dir`` (or
``$TFDS_DATA_DIR`` / ``~/tensorflow_datasets``) and raises :class:`DatasetNotFoundError`
with instructions when it is missing.

Pipelines: :func:`train_pipeline` (cache, seeded full shuffle that changes every epoch, seeded
per-example augmentation, batch, prefetch), :func:`eval_pipeline` (first ``limit`` examples in
order, last partial batch kept) and :func:`as_numpy`.
"""

import dataclasses
import functools
import os
from typing import Optional

import numpy as np
import tensorflow as tf

__all__ = [
    "DATASETS", "PRESET_AUGMENT", "AUGMENTATIONS", "SPLITS", "DatasetSpec", "Split",
    "DatasetNotFoundError", "load", "load_image_folder", "from_arrays", "canonical_name",
    "train_pipeline", "train_epochs", "eval_pipeline", "take", "as_numpy", "crop_flip", "pad_crop_flip",
]

SPLITS = ("train", "test")
AUGMENTATIONS = ("none", "crop_flip")
MINI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_mini.npz")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


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

# Augmentation presets (ST paper / ST-AT protocol: no augmentation on SVHN).
PRESET_AUGMENT = {
    "cifar10": "crop_flip",
    "cifar100": "crop_flip",
    "svhn": "none",
    "svhn_cropped": "none",
    "cifar10_mini": "crop_flip",
    "image_folder": "crop_flip",
}

MINI_TEST_NOTE = ("cifar10_mini 'test' split = 1,000 CIFAR-10 *training* images (canonical "
                  "training indices 3000-3999) held out from the mini train split; numbers on it "
                  "are NOT CIFAR-10 test-set numbers")
MINI_TRAIN_NOTE = ("cifar10_mini 'train' split = 3,000 lossless CIFAR-10 training images "
                   "(canonical training indices 0-2999), a small offline subset")


class DatasetNotFoundError(ValueError):
    """The requested dataset is not available locally (nothing is ever downloaded)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``dataset`` yields ``(image float32 HWC in [0,1], label int64 scalar)``.
    ``uint8_dataset`` (optional) yields the same examples with the uint8 images they were
    decoded from; pipelines cache/shuffle that (4x less memory) and convert afterwards.
    """
    dataset: tf.data.Dataset
    num_classes: int
    num_examples: int
    class_names: Optional[list]
    name: str
    split: str
    note: str = ""
    uint8_dataset: Optional[tf.data.Dataset] = dataclasses.field(default=None, repr=False)

    @property
    def image_shape(self):
        return tuple(self.dataset.element_spec[0].shape)


# ----------------------------------------------------------------------------- helpers

def canonical_name(name):
    """Lower-cased known name with aliases resolved ('svhn_cropped' -> 'svhn')."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}")
    return _ALIASES.get(key, key)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _to_float(image, label):
    return tf.image.convert_image_dtype(image, tf.float32), tf.cast(label, tf.int64)


def _from_uint8(raw, **kwargs):
    """Split from a dataset of (uint8 image, integer label)."""
    raw = raw.map(lambda x, y: (x, tf.cast(y, tf.int64)), num_parallel_calls=tf.data.AUTOTUNE)
    ds = raw.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return Split(dataset=ds, uint8_dataset=raw, **kwargs)


def from_arrays(x, y, *, num_classes=None, class_names=None, name="arrays", split="train",
                note=""):
    """Split from in-memory arrays: ``x`` uint8 [N,H,W,C] (or float in [0,1]), ``y`` [N]."""
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else int(y.max()) + 1
    kwargs = dict(num_classes=int(num_classes), num_examples=int(len(y)),
                  class_names=None if class_names is None else list(class_names),
                  name=name, split=split, note=note)
    if x.dtype == np.uint8:
        return _from_uint8(tf.data.Dataset.from_tensor_slices((x, y)), **kwargs)
    ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y))
    return Split(dataset=ds, **kwargs)


# ----------------------------------------------------------------------------- loaders

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


def _not_found_message(name, tfds_name, split, data_dir, err):
    where = (f"data_dir={data_dir!r}" if data_dir else
             "the TFDS default data dir ($TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    return (
        f"Dataset {name!r} (TFDS name {tfds_name!r}, split {split!r}) is not prepared in "
        f"{where}, and tf_st never downloads. To fix, do one of:\n"
        f"  1. on a machine with internet, run `tfds build {tfds_name} --data_dir=DIR` (or "
        f"`python -c \"import tensorflow_datasets as tfds; tfds.load('{tfds_name}', "
        f"data_dir='DIR')\"`), copy DIR here and pass --data_dir=DIR (the directory that "
        f"contains {tfds_name}/), or set TFDS_DATA_DIR=DIR;\n"
        f"  2. use images on disk: --dataset=image_folder --data_dir=ROOT with "
        f"ROOT/train/<class>/*.png and ROOT/test/<class>/*.png;\n"
        f"  3. use the bundled offline subset: --dataset=cifar10_mini.\n"
        f"(TFDS said: {type(err).__name__}: {str(err).strip()[:500]})")


def _load_tfds(name, spec, split, data_dir):
    import tensorflow_datasets as tfds

    try:
        raw, info = tfds.load(spec.tfds_name, split=split, data_dir=data_dir, download=False,
                              as_supervised=True, with_info=True, shuffle_files=False,
                              try_gcs=False)
    except Exception as err:  # TFDS raises AssertionError/FileNotFoundError/... when missing
        raise DatasetNotFoundError(
            _not_found_message(name, spec.tfds_name, split, data_dir, err)) from err
    label = info.features["label"]
    num_examples = None
    try:
        num_examples = int(info.splits[split].num_examples)
    except (KeyError, ValueError):  # no split metadata (e.g. tfds.testing.mock_data)
        pass
    if not num_examples:
        card = int(raw.cardinality())
        num_examples = card if card >= 0 else int(raw.reduce(0, lambda n, _: n + 1))
    return _from_uint8(raw, num_classes=int(label.num_classes), num_examples=num_examples,
                       class_names=list(label.names), name=name, split=split,
                       note=f"TFDS {spec.tfds_name} {split}")


def _list_images(directory):
    return sorted(e.name for e in os.scandir(directory)
                  if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _class_dirs(directory):
    return {e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")}


def load_image_folder(data_dir, split, *, cache=False, name="image_folder"):
    """Split from ``data_dir/split/<class>/<file>`` (jpg/jpeg/png/bmp).

    Classes: sorted union of the class folders under ``train/`` and ``test/`` (labels are
    consistent across splits).  Examples are ordered round-robin over classes (files
    sorted within a class), so any prefix of the split is class-balanced. Images are decoded to 3 channels; every image must have the
    height/width of the first one, otherwise iteration fails with an error naming the file.
    """
    if not data_dir:
        raise ValueError("dataset 'image_folder' needs data_dir=<folder containing "
                         "train/<class>/... and test/<class>/...>")
    root = os.path.expanduser(str(data_dir))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"image_folder: data_dir {root!r} is not a directory")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        present = sorted(_class_dirs(root))
        raise DatasetNotFoundError(
            f"image_folder: split folder {split_dir!r} does not exist (expected layout "
            f"{root}/{split}/<class>/<image>; subfolders present: {present})")
    classes = set()
    for s in SPLITS:
        if os.path.isdir(os.path.join(root, s)):
            classes |= _class_dirs(os.path.join(root, s))
    class_names = sorted(classes)
    if not class_names:
        raise DatasetNotFoundError(f"image_folder: no class folders in {split_dir!r}")
    per_class = []
    for i, c in enumerate(class_names):
        cdir = os.path.join(split_dir, c)
        if os.path.isdir(cdir):
            per_class.append([(os.path.join(cdir, f), i) for f in _list_images(cdir)])
    # Classes are interleaved (1st file of every class, then the 2nd, ...), so that the
    # first N examples -- what --eval_examples and --train_examples take -- are balanced.
    order = sorted(((rank, label, path) for files in per_class
                    for rank, (path, label) in enumerate(files)))
    paths = [path for _, _, path in order]
    labels = [label for _, label, _ in order]
    if not paths:
        raise DatasetNotFoundError(
            f"image_folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {split_dir!r}")

    first = tf.io.decode_image(tf.io.read_file(paths[0]), channels=3, dtype=tf.uint8,
                               expand_animations=False)
    shape = [int(first.shape[0]), int(first.shape[1]), 3]
    expected = tf.constant(shape, tf.int32)

    def decode(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8,
                                 expand_animations=False)
        ok = tf.reduce_all(tf.equal(tf.shape(img), expected))
        check = tf.debugging.Assert(
            ok, ["image_folder: image", path, "has shape", tf.shape(img),
                 "but the first image", paths[0], "has shape", expected,
                 "(all images must share one size)"], summarize=8)
        with tf.control_dependencies([check]):
            img = tf.identity(img)
        img = tf.ensure_shape(img, shape)
        return img, label

    files = tf.data.Dataset.from_tensor_slices((tf.constant(paths),
                                                tf.constant(labels, tf.int64)))
    raw = files.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        raw = raw.cache()
    return _from_uint8(raw, num_classes=len(class_names), num_examples=len(paths),
                       class_names=class_names, name=name, split=split,
                       note=f"image folder {split_dir}")


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


# ----------------------------------------------------------------------------- augmentation

def crop_flip(image, dy, dx, flip, pad=4):
    """Zero-pads ``image`` (HWC) by ``pad`` on each side, crops the original size at offset
    (``dy``, ``dx``) in [0, 2*pad] of the padded image, then mirrors left-right if ``flip``.
    (dy, dx) = (pad, pad) and flip=False is the identity."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    out = tf.slice(padded, tf.stack([dy, dx, 0]), tf.stack([h, w, -1]))
    out = tf.cond(tf.cast(flip, tf.bool), lambda: tf.reverse(out, axis=[1]), lambda: out)
    return tf.ensure_shape(out, image.shape)


def pad_crop_flip(image, seed, pad=4):
    """Random crop_flip of one image from a stateless ``seed`` (shape [2] int)."""
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    offsets = tf.random.stateless_uniform([2], seeds[0], minval=0, maxval=2 * pad + 1,
                                          dtype=tf.int32)
    flip = tf.random.stateless_uniform([], seeds[1]) < 0.5
    return crop_flip(image, offsets[0], offsets[1], flip, pad=pad)


# ----------------------------------------------------------------------------- pipelines

def train_pipeline(split, batch_size, augment, seed, shuffle=True, drop_remainder=True,
                   cache=True):
    """Batched, prefetched training dataset for one epoch per iteration.

    The full-size shuffle is seeded and differs every epoch (every new iterator, which is
    what ``model.fit`` and a ``for`` loop per epoch create); the per-example augmentation
    uses stateless ops seeded from ``tf.data.Dataset.random(seed)``, which is also redrawn
    every epoch. Two pipelines built with the same seed give the same sequence of epochs.
    ``seed`` may be a scalar int64 tensor (``train_epochs`` builds one pipeline per epoch).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown augment {augment!r}; expected one of {AUGMENTATIONS}")
    raw = split.uint8_dataset
    ds = raw if raw is not None else split.dataset
    if cache:
        ds = ds.cache()
    return _epoch_batches(split, ds, batch_size, augment, seed, shuffle,
                          drop_remainder).prefetch(tf.data.AUTOTUNE)


def _epoch_batches(split, ds, batch_size, augment, seed, shuffle, drop_remainder):
    seed = seed if tf.is_tensor(seed) else int(seed)
    if shuffle:
        buffer = split.num_examples if split.num_examples and split.num_examples > 0 else 10000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if split.uint8_dataset is not None:
        ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment == "crop_flip":
        randoms = tf.data.Dataset.random(seed=seed + 1000003, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, randoms))
        ds = ds.map(lambda xy, r: (pad_crop_flip(xy[0], tf.stack([r, tf.constant(0, tf.int64)])),
                                   xy[1]),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def train_epochs(split, batch_size, augment, seed, first_epoch, epochs, steps_per_epoch):
    """Epochs ``first_epoch .. epochs - 1`` (0-based) back to back, ``steps_per_epoch``
    batches each, for one ``model.fit`` call: epoch ``e`` is exactly
    ``train_pipeline(split, batch_size, augment, seed=seed * 100003 + e)``'s first
    iteration, so a run resumed at any epoch sees the batches an uninterrupted run sees."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown augment {augment!r}; expected one of {AUGMENTATIONS}")
    raw = split.uint8_dataset
    base = (raw if raw is not None else split.dataset).cache()

    def epoch(e):
        return _epoch_batches(split, base, batch_size, augment,
                              tf.constant(int(seed) * 100003, tf.int64) + e, True,
                              True).take(steps_per_epoch)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def take(split, n):
    """The first ``n`` examples of ``split`` as a new Split (all of them if ``n`` is None)."""
    if n is None or n >= split.num_examples:
        return split
    n = int(n)
    return dataclasses.replace(
        split, dataset=split.dataset.take(n),
        uint8_dataset=None if split.uint8_dataset is None else split.uint8_dataset.take(n),
        num_examples=n, note=(split.note + "; " if split.note else "") + f"first {n} examples")


def eval_pipeline(split, batch_size, limit=None):
    """First ``limit`` examples (all if None), in order, batched, last partial batch kept."""
    ds = split.dataset
    if limit is not None:
        ds = ds.take(int(limit))
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


def as_numpy(split, limit=None, batch_size=1000):
    """(x float32 [N,H,W,C] in [0,1], y int64 [N]) of the first ``limit`` examples."""
    xs, ys = [], []
    for x, y in eval_pipeline(split, batch_size, limit=limit).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        shape = tuple(split.dataset.element_spec[0].shape)
        return np.zeros((0,) + shape, np.float32), np.zeros((0,), np.int64)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)
