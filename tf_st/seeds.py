"""One seed scheme for every random draw of a run: a stateless key ``[seed, word]`` per
named stream, with the stream and its indices packed into ``word`` bit-exactly, so two
different (stream, indices) never share a key (no hashing, no ``seed + epoch`` sums that
let seed 1's epoch 2 draw what seed 2's epoch 1 draws).

    word = stream (bits 56-62) | a (bits 32-55) | b (bits 8-31) | c (bits 0-7)

=================  ==========================================  =======================
stream             indices                                     used by
=================  ==========================================  =======================
``autoattack``     (0: the AutoAttack runner's own keys,       ``attacks.autoattack``
                   a 56-bit hash of stage and batch, kept so
                   that its per-example results stay those
                   of the official-parity tests)
``start_noise``    optimizer step (40 bits), draw index        ``methods.base`` starts
                   within the step (``start_noise_key``)       and noise
``data_order``     a = epoch                                   ``data.pipelines``
``augment``        a = epoch                                   ``data.pipelines``
``unlabeled``      (seed, stream, epoch) as a numpy seed       ``data.rst`` (batch plans)
                   sequence
``unlabeled_crop`` epoch, batch, example (``example_word``)    ``data.rst`` (crops)
``evaluation``     a = context (0, or the 1-based epoch of     ``evaluation.robustness``
                   the per-epoch evaluation), b = batch,
                   c = attack index
``analysis``       b = batch                                   ``analysis``
``audit``          a = run (one per attack of the audit),      ``evaluation.audit``
                   b = batch
=================  ==========================================  =======================

Every function takes Python ints or int64 tensors (graph-safe) for the indices; Python
ints are range-checked.  The user's seed is the first word as given (``--seed``).
"""

import numpy as np

STREAMS = {"autoattack": 0, "start_noise": 1, "data_order": 2, "augment": 3, "unlabeled": 4,
           "unlabeled_crop": 5, "evaluation": 6, "analysis": 7, "audit": 8}
_BITS = {"a": 24, "b": 24, "c": 8}


def _check(name, value, bits):
    if isinstance(value, (int, np.integer)) and not 0 <= int(value) < (1 << bits):
        raise ValueError(f"seed index {name}={value} is outside [0, 2**{bits})")


def word(stream, a=0, b=0, c=0):
    """The second key word of ``stream`` at indices ``(a, b, c)`` (int64; a tensor if any
    index is one)."""
    code = STREAMS[stream]
    for name, value in (("a", a), ("b", b), ("c", c)):
        _check(name, value, _BITS[name])
    if not any(_is_tensor(v) for v in (a, b, c)):
        return np.int64((code << 56) | (int(a) << 32) | (int(b) << 8) | int(c))
    import tensorflow as tf
    a, b, c = (tf.cast(v, tf.int64) for v in (a, b, c))
    return (tf.constant(code << 56, tf.int64) + a * (1 << 32) + b * (1 << 8) + c)


def key(seed, stream, a=0, b=0, c=0):
    """The stateless key ``[seed, word(stream, a, b, c)]`` as an int64 ``[2]`` tensor."""
    import tensorflow as tf
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(word(stream, a, b, c), tf.int64)])


def start_noise_key(seed, step, index):
    """Key of the ``index``-th draw (< 2**8) of optimizer step ``step`` (< 2**40):
    ``word = stream | step << 8 | index``."""
    _check("step", step, 40)
    _check("index", index, 8)
    import tensorflow as tf
    return tf.stack([tf.cast(seed, tf.int64),
                     tf.constant(STREAMS["start_noise"] << 56, tf.int64)
                     + tf.cast(step, tf.int64) * (1 << 8) + tf.cast(index, tf.int64)])


def example_word(stream, epoch, batch, example):
    """Per-example key word: ``stream | epoch << 32 | batch << 12 | example`` (epoch
    < 2**24, batch < 2**20, example < 2**12); numpy int64."""
    for name, value, bits in (("epoch", epoch, 24), ("batch", batch, 20)):
        _check(name, value, bits)
    example = np.asarray(example, np.int64)
    if example.size and (example.min() < 0 or example.max() >= (1 << 12)):
        raise ValueError("a seed's example index is outside [0, 4096)")
    return (np.int64(STREAMS[stream] << 56) + np.int64(epoch << 32) + np.int64(batch << 12)
            + example)


def scalar(seed, stream, a=0, b=0):
    """One int64 seed for APIs that take a single integer (``tf.data`` shuffles and random
    datasets): the user's seed (at most 2**24) packed with the stream and ``a`` (the
    epoch, at most 2**24) and ``b`` (at most 2**8), again without collisions."""
    _check("seed", seed, 24)
    _check("a", a, 24)
    _check("b", b, 8)
    code = STREAMS[stream]
    if not any(_is_tensor(v) for v in (seed, a, b)):
        return int((code << 56) | (int(seed) << 32) | (int(a) << 8) | int(b))
    import tensorflow as tf
    return (tf.constant(code << 56, tf.int64) + tf.cast(seed, tf.int64) * (1 << 32)
            + tf.cast(a, tf.int64) * (1 << 8) + tf.cast(b, tf.int64))


def numpy_rng(seed, stream, a=0, b=0):
    """A ``numpy.random.RandomState`` for the stream: seeded with the sequence ``(seed,
    stream, a, b)`` (numpy's ``init_by_array``), distinct for distinct tuples."""
    return np.random.RandomState([int(seed) % (1 << 32), STREAMS[stream], int(a), int(b)])


def _is_tensor(v):
    return hasattr(v, "dtype") and not isinstance(v, (int, np.integer))
