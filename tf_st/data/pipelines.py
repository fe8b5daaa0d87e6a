"""Input pipelines: seeded per-example augmentation, training epochs (one per iteration,
or several back to back for one ``model.fit``), evaluation batches, numpy arrays."""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_st import seeds

from tf_st.data.splits import _to_float

AUGMENTATIONS = ("none", "crop_flip")


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
    return _epoch_batches(split, ds, batch_size, augment, seed, 0, shuffle,
                          drop_remainder).prefetch(tf.data.AUTOTUNE)


def _epoch_batches(split, ds, batch_size, augment, seed, epoch, shuffle, drop_remainder):
    # The order and the crops of (seed, epoch) come from their own streams
    # (``tf_st.seeds``): no two (seed, epoch) share either.
    if shuffle:
        buffer = split.num_examples if split.num_examples and split.num_examples > 0 else 10000
        ds = ds.shuffle(buffer, seed=seeds.scalar(seed, "data_order", epoch),
                        reshuffle_each_iteration=True)
    if split.uint8_dataset is not None:
        ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment == "crop_flip":
        randoms = tf.data.Dataset.random(seed=seeds.scalar(seed, "augment", epoch),
                                         rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, randoms))
        ds = ds.map(lambda xy, r: (pad_crop_flip(xy[0], tf.stack([r, tf.constant(0, tf.int64)])),
                                   xy[1]),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def train_epochs(split, batch_size, augment, seed, first_epoch, epochs, steps_per_epoch):
    """Epochs ``first_epoch .. epochs - 1`` (0-based) back to back, ``steps_per_epoch``
    batches each, for one ``model.fit`` call: epoch ``e`` is exactly
    ``seed``'s epoch-``e`` streams of ``tf_st.seeds`` (order, crops), so a run resumed at
    any epoch sees the batches an uninterrupted run sees."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown augment {augment!r}; expected one of {AUGMENTATIONS}")
    raw = split.uint8_dataset
    base = (raw if raw is not None else split.dataset).cache()

    def epoch(e):
        return _epoch_batches(split, base, batch_size, augment, int(seed), e, True,
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
