"""Robust self-training (RST) data: a pseudo-labelled extra set mixed into every batch.

Reference: yaircarmon/semisup-adv, ``datasets.py:SemiSupervisedSampler`` and
``robust_self_training.py``
(docs/reference-implementations.md "RST / Data mixing").  As coded there:
* each batch of ``B`` holds ``B - int(B * unsup_fraction)`` labelled examples taken in
  order from a fresh random permutation of the labelled set (a new permutation starts
  when one is used up; the chunk that ends a permutation is shorter, and the batch is
  filled up with more pseudo-labelled examples), plus pseudo-labelled examples drawn
  uniformly *with replacement*; the batch is then shuffled ("without it batch-norm /
  DataParallel hell ensues").  With ``unsup_fraction = 0`` nothing is filled up (the
  sampler fills only while the labelled share is smaller than the batch): the chunk that
  ends a permutation is a short batch, as in the reference;
* an "epoch" is ``ceil(50000 / B)`` batches for CIFAR-10's 50,000 labelled images, i.e.
  about half of the labelled set per epoch at ``unsup_fraction = 0.5``; here
  ``ceil(N_labelled / B)`` for a labelled set of ``N_labelled``;
* pseudo-labels are ordinary labels.

Deviations: draws come from ``tf_st.seeds.numpy_rng(seed, "unlabeled", epoch)`` per
epoch (not torch's global generator), so a resumed run redraws exactly the batches of
an uninterrupted one; augmentation is this project's per-example pad-crop-flip.

The pseudo-labelled set is an ``.npz`` with ``images`` (uint8 or float in [0, 1], NHWC)
and ``labels`` (``python -m trainers.pseudo_label`` writes one), or an image folder
``<dir>/<class>/<image>`` whose sorted class folders are the label indices.
"""

import math
import os

import numpy as np
import tensorflow as tf

from tf_st import seeds

from tf_st.data import IMAGE_EXTENSIONS, pad_crop_flip


def load_unlabeled(path):
    """``(images uint8 [N, H, W, C], labels int64 [N])`` of a pseudo-labelled set."""
    if os.path.isdir(path):
        classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
        files, labels = [], []
        for label, c in enumerate(classes):
            names = sorted(f for f in os.listdir(os.path.join(path, c))
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            files += [os.path.join(path, c, f) for f in names]
            labels += [label] * len(names)
        if not files:
            raise ValueError(f"no images under {path}/<class>/ (extensions {IMAGE_EXTENSIONS})")
        images = np.stack([tf.io.decode_image(tf.io.read_file(f), channels=3,
                                              expand_animations=False).numpy() for f in files])
        return images.astype(np.uint8), np.asarray(labels, np.int64)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no pseudo-labelled set at {path} (an .npz with 'images' and "
                                f"'labels', or an image folder <dir>/<class>/<image>)")
    with np.load(path) as f:
        missing = {"images", "labels"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)} (has {sorted(f.files)})")
        images, labels = f["images"], f["labels"].astype(np.int64)
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{path}: images {images.shape} and labels {labels.shape} do not "
                         "form a non-empty NHWC set")
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 1:
            raise ValueError(f"{path}: float images must be in [0, 1]")
        images = np.round(images * 255).astype(np.uint8)
    return images, labels


def batches_per_epoch(n_labelled, batch_size):
    return int(math.ceil(n_labelled / batch_size))


def batch_plan(n_labelled, n_unlabeled, batch_size, unsup_fraction, num_batches, rng):
    """``[num_batches, batch_size]`` indices into ``labelled ++ unlabeled`` (an index
    ``>= n_labelled`` is pseudo-labelled), drawn as SemiSupervisedSampler draws them."""
    sup_size = batch_size - int(batch_size * unsup_fraction)
    plan = []
    while len(plan) < num_batches:
        perm = rng.permutation(n_labelled)
        for k in range(0, n_labelled, sup_size) if sup_size else [0] * num_batches:
            if len(plan) == num_batches:
                break
            batch = list(perm[k:k + sup_size]) if sup_size else []
            if sup_size < batch_size:
                batch += list(n_labelled + rng.randint(n_unlabeled, size=batch_size - len(batch)))
            rng.shuffle(batch)
            plan.append(batch)
    if all(len(b) == batch_size for b in plan):
        return np.asarray(plan, np.int64)
    return [np.asarray(b, np.int64) for b in plan]


def rst_epochs(labelled, unlabeled, batch_size, unsup_fraction, augment, seed, first_epoch,
               epochs, steps_per_epoch):
    """Epochs ``first_epoch .. epochs - 1`` of mixed batches for one ``model.fit``.

    ``labelled``: ``(images uint8, labels)`` of the labelled training set;
    ``unlabeled``: the same for the pseudo-labelled set."""
    x_l, y_l = labelled
    x_u, y_u = unlabeled
    if x_l.shape[1:] != x_u.shape[1:]:
        raise ValueError(f"pseudo-labelled images are {x_u.shape[1:]}, labelled ones "
                         f"{x_l.shape[1:]}")
    pool_x, pool_y = np.concatenate([x_l, x_u]), np.concatenate([y_l, y_u])
    num_batches = batches_per_epoch(len(x_l), batch_size)

    def generate():
        for epoch in range(first_epoch, epochs):
            rng = seeds.numpy_rng(seed, "unlabeled", epoch)
            plan = batch_plan(len(x_l), len(x_u), batch_size, unsup_fraction, num_batches, rng)
            for b, idx in enumerate(plan[:steps_per_epoch]):
                keys = np.stack([np.zeros(len(idx), np.int64),
                                 seeds.example_word("unlabeled_crop", epoch, b,
                                                    np.arange(len(idx)))], 1)
                yield pool_x[idx], pool_y[idx], keys

    # Only a batch without pseudo-labelled share can be short (the end of a permutation).
    whole = batch_size - int(batch_size * unsup_fraction) < batch_size or \
        len(x_l) % batch_size == 0
    rows = batch_size if whole else None
    ds = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((rows,) + x_l.shape[1:], tf.uint8), tf.TensorSpec((rows,), tf.int64),
        tf.TensorSpec((rows, 2), tf.int64)))

    def prepare(x, y, keys):
        x = tf.cast(x, tf.float32) / 255.0
        if augment == "crop_flip":
            x = tf.map_fn(lambda a: pad_crop_flip(a[0], a[1] + tf.constant([int(seed), 0], tf.int64)),
                          (x, keys), fn_output_signature=tf.float32)
        return x, y

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def split_arrays(split):
    """``(images uint8, labels int64)`` of a loaded split, in its order."""
    ds = split.uint8_dataset
    if ds is None:
        ds = split.dataset.map(lambda x, y: (tf.cast(tf.round(x * 255.0), tf.uint8), y))
    xs, ys = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)
