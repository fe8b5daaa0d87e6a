"""Random draws for attack starts, written once.

Every start in the project (PGD's uniform start, TRADES/MART/ST's ``0.001 N(0, 1)``,
APGD's and FAB's uniform draws that they then shape, the training methods'
replica-invariant noise) is a ``draw``: ``scale * N(0, 1)`` or ``U(-scale, scale)``,
stateless when given a seed (shape [2] ints) so that runs are reproducible.
``random_start`` adds one to ``x`` as an attack's ``start`` setting names it.

``global_batch=True`` draws over the *global* batch ``[B * replicas, ...]`` and returns
this replica's slice, so that under ``tf.distribute`` every replica draws exactly what
one device would for the same examples (training methods; reference: the methods' own
``nn.DataParallel`` runs draw on the whole batch).
"""

import tensorflow as tf

from tf_st.attacks.losses import as_dtype

KINDS = ("normal", "uniform")
STARTS = ("uniform", "uniform_clamped", "normal", "normal_clamped", "none")


def draw(shape, kind, scale, dtype, seed=None):
    """``scale * N(0, 1)`` (``kind='normal'``) or ``U(-scale, scale)`` (``'uniform'``).

    Args:
      shape: the shape of the draw.
      kind: ``'normal'`` or ``'uniform'``.
      scale: the std or half-width.
      dtype: the dtype of the draw.
      seed: None for a stateful draw, or an int ``[2]`` seed for a stateless one.

    Returns:
      A tensor of ``shape`` and ``dtype``.

    Raises:
      ValueError: an unknown ``kind``.
    """
    scale = as_dtype(scale, dtype)
    if kind == "normal":
        z = (tf.random.normal(shape, dtype=dtype) if seed is None
             else tf.random.stateless_normal(shape, seed, dtype=dtype))
        return scale * z
    if kind == "uniform":
        if seed is None:
            return tf.random.uniform(shape, -scale, scale, dtype=dtype)
        return tf.random.stateless_uniform(shape, seed, -scale, scale, dtype=dtype)
    raise ValueError(f"unknown noise kind {kind!r}; choose one of {KINDS}")


def draw_like(x, kind, scale, seed=None, global_batch=False):
    """A draw of ``x``'s shape and dtype.

    Args:
      x: the tensor whose shape and dtype the draw takes.
      kind: ``'normal'`` or ``'uniform'``.
      scale: the std or half-width.
      seed: None for a stateful draw, or an int ``[2]`` seed for a stateless one.
      global_batch: this replica's slice of a draw over the global batch.

    Returns:
      A tensor shaped as ``x``.

    Raises:
      ValueError: an unknown ``kind``.
    """
    if not global_batch:
        return draw(tf.shape(x), kind, scale, x.dtype, seed)
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    replica_id = ctx.replica_id_in_sync_group if ctx is not None else 0
    batch = tf.shape(x)[0]
    shape = tf.concat([[batch * replicas], tf.shape(x)[1:]], axis=0)
    full = draw(shape, kind, scale, x.dtype, seed)
    start = tf.cast(replica_id, tf.int32) * batch
    return full[start:start + batch]


def l2_ball_like(x, epsilon, seed=None, global_batch=False):
    """A draw uniform in the L2 ball of radius ``epsilon``, one per example of ``x``.

    The direction ``N(0, I)`` normalised, the radius ``eps * U(0, 1)^(1/d)`` (cleverhans'
    ``random_lp_vector`` for ``ord=2``); with a seed, the two draws take the two seeds of
    ``tf.random.experimental.stateless_split``.

    Args:
      x: the batch whose shape and dtype the draw takes.
      epsilon: the radius, in [0, 1] units.
      seed: None for a stateful draw, or an int ``[2]`` seed for a stateless one.
      global_batch: this replica's slice of a draw over the global batch.

    Returns:
      A tensor shaped as ``x``.
    """
    seeds = (None, None) if seed is None else tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    direction = draw_like(x, "normal", 1.0, seeds[0], global_batch)
    axes = list(range(1, len(x.shape)))
    norm = tf.sqrt(tf.reduce_sum(tf.square(direction), axis=axes, keepdims=True))
    # One radius per example: a draw shaped [B, 1, ..., 1] (global_batch slices it too).
    u = draw_like(tf.zeros_like(norm), "uniform", 1.0, seeds[1], global_batch)
    d = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    radius = as_dtype(epsilon, x.dtype) * tf.pow(0.5 * (u + 1.0), 1.0 / d)
    return direction / norm * radius


def random_start(x, start, *, epsilon=None, std=0.001, seed=None, global_batch=False,
                 norm="Linf"):
    """``x`` plus the ``start`` noise.

    ``'uniform'`` ``U(-eps, eps)`` (ST-AT/TRADES evaluation: not clamped; with
    ``norm='L2'`` uniform in the L2 ball of radius eps, ``l2_ball_like``),
    ``'uniform_clamped'`` the same clamped to [0, 1] (robust_overfitting, CAT, AWP, FAT),
    ``'normal'`` ``std * N(0, 1)`` (TRADES/MART/ST training: not clamped),
    ``'normal_clamped'`` the same clamped (FAT), ``'none'`` ``x`` itself.

    Args:
      x: NHWC float images in [0, 1].
      start: one of ``STARTS``.
      epsilon: the uniform starts' half-width, in [0, 1] units.
      std: the normal starts' std.
      seed: None for a stateful draw, or an int ``[2]`` seed for a stateless one.
      global_batch: this replica's slice of a draw over the global batch.
      norm: ``'Linf'`` or ``'L2'``: the ball of the uniform starts.

    Returns:
      The start point, shaped as ``x``.

    Raises:
      ValueError: an unknown ``start``.
    """
    if start == "none":
        return x
    if start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose one of {STARTS}")
    if start.startswith("normal"):
        x0 = x + draw_like(x, "normal", std, seed, global_batch)
    elif norm == "L2":
        x0 = x + l2_ball_like(x, epsilon, seed, global_batch)
    else:
        x0 = x + draw_like(x, "uniform", epsilon, seed, global_batch)
    if start.endswith("_clamped"):
        x0 = tf.clip_by_value(x0, tf.zeros([], x.dtype), tf.ones([], x.dtype))
    return x0
