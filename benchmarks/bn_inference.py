r"""Inference-mode BatchNorm under mixed precision: the fused kernel against Keras' form.

  python -m benchmarks.bn_inference --batch_size=32,128 --mixed_precision=bfloat16

What it times is the inner attack loop of TRADES-style methods (TRADES, MART, the
per-epoch PGD evaluation): K inference-mode forwards of the network and their input
gradients, sign steps in between.  Under a mixed policy each ``TorchBatchNorm`` either
takes TensorFlow's fused inference kernel on the 16-bit activations (tf_st's default,
``fused=True``) or Keras' affine form (``fused=False``), which casts the activations to
float32 and back in every BatchNorm, forward and gradient.  Both are traced in one
process on the same weights (non-trivial moving statistics), warmed up, and timed in
rounds (each path first in every other round); reported per batch size: the median
seconds of each, the speed-up, the graph's ``Cast`` ops on tensors larger than 4096
elements (activations and conv weights), and each path's logits error relative to the
float32 network of the same weights (both round once, so the errors should agree).
"""

import time

from absl import flags

_ARCH = flags.DEFINE_string("arch", "resnet18", "Architecture.")
_BATCHES = flags.DEFINE_list("batch_size", ["32", "128"], "Batch sizes.")
_K = flags.DEFINE_integer("inner_steps", 10, "Inner iterations K.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed loops per path (alternating).")
_DTYPE = flags.DEFINE_enum("mixed_precision", "bfloat16", ["bfloat16", "float16"],
                           "Compute dtype of the mixed policy.")

PATHS = (("keras affine (fused=False)", False), ("fused kernel (fused=True)", True))


def _network(arch, policy, weights=None):
    import keras
    import tensorflow as tf
    from tf_st import models
    from tf_st.models.layers import TorchBatchNorm, all_layers
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    net = models.build(arch, 10)
    if weights is not None:
        net.set_weights(weights)
        return net
    for layer in all_layers(net):  # statistics as after training, not 0 and 1
        if isinstance(layer, TorchBatchNorm):
            layer.moving_mean.assign(tf.random.normal(layer.moving_mean.shape, stddev=0.1))
            layer.moving_variance.assign(tf.random.uniform(layer.moving_variance.shape,
                                                           0.5, 2.0))
    return net


def _inner_loop(net, y, steps):
    import tensorflow as tf

    def loop(x):
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = tf.cast(net(x, training=False), tf.float32)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, z))
            x = tf.clip_by_value(x + 2 / 255 * tf.sign(tape.gradient(loss, x)), 0.0, 1.0)
        return x
    return tf.function(loop)


def _large_casts(fn, x):
    graph = fn.get_concrete_function(x).graph
    return sum(op.type == "Cast" and (op.outputs[0].shape.num_elements() or 0) > 4096
               for op in graph.get_operations())


def measure(arch, batch, steps, repeats, dtype):
    """Times both inference paths on one batch; returns a dict per path.

    Args:
      arch: architecture key.
      batch: batch size.
      steps: inner iterations K.
      repeats: timed loops per path, alternating between the paths.
      dtype: ``'bfloat16'`` or ``'float16'``.

    Returns:
      ``{path name: {"seconds": [...], "large_casts": n, "logits_rel_error": e}}``.
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from tf_st.models.layers import set_batchnorm
    old = keras.config.dtype_policy()
    try:
        net = _network(arch, f"mixed_{dtype}")
        rng = np.random.RandomState(0)
        x = tf.constant(rng.uniform(0, 1, (batch, 32, 32, 3)).astype("float32"))
        y = tf.constant(rng.randint(0, 10, batch))
        exact = _network(arch, "float32", net.get_weights())(x, training=False)
        out = {}
        for name, fused in PATHS:
            set_batchnorm(net, fused=fused)  # read when the loop is traced, just below
            fn = _inner_loop(net, y, steps)
            fn(x).numpy()  # traced
            fn(x).numpy()  # and warm
            z = tf.cast(net(x, training=False), tf.float32)
            out[name] = {"fn": fn, "seconds": [], "large_casts": _large_casts(fn, x),
                         "logits_rel_error": float(tf.norm(z - exact) / tf.norm(exact))}
        for r in range(repeats):
            # each path goes first in every other round, so neither always follows the other
            for row in (list(out.values()) if r % 2 == 0 else list(out.values())[::-1]):
                start = time.perf_counter()
                row["fn"](x).numpy()
                row["seconds"].append(time.perf_counter() - start)
        for row in out.values():
            del row["fn"]
        return out
    finally:
        keras.config.set_dtype_policy(old)


def main(argv):
    del argv
    import numpy as np
    print(f"{_ARCH.value}, K={_K.value} inference-mode forwards + input gradients, "
          f"mixed_{_DTYPE.value}, median of {_REPEATS.value} alternating loops")
    print("| batch | path | s per loop | speed-up | Casts > 4096 elements | logits rel. error vs float32 |")
    print("|---|---|---|---|---|---|")
    for batch in (int(b) for b in _BATCHES.value):
        rows = measure(_ARCH.value, batch, _K.value, _REPEATS.value, _DTYPE.value)
        base = np.median(rows[PATHS[0][0]]["seconds"])
        for name, row in rows.items():
            t = np.median(row["seconds"])
            print(f"| {batch} | {name} | {t:.3f} | {base / t:.2f}x | {row['large_casts']} | "
                  f"{row['logits_rel_error']:.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
