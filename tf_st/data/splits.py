"""What every loader returns: a ``Split`` (a ``tf.data`` pipeline of (float image in
[0, 1], int64 label) plus its metadata), built from uint8 sources or arrays."""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


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
