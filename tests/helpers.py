"""Tiny models and numpy references shared by the method tests."""

import os

import keras
import numpy as np

from tf_st.models.layers import TorchBatchNorm


def shared_data(name):
    """Path of ``name`` in the development data (``../shared/data``), or None.

    Looked up in $TF_ST_SHARED_DATA, beside the checkout, then at /work/shared/data, so
    a clone made elsewhere (e.g. CI's clean clone) still finds it.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for base in (os.environ.get("TF_ST_SHARED_DATA"),
                 os.path.join(root, "..", "shared", "data"), "/work/shared/data"):
        if base and os.path.exists(os.path.join(base, name)):
            return os.path.join(base, name)
    return None


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def linear_classifier(shape=(2, 2, 3), classes=3, seed=0):
    """``z = flatten(x) @ w + b`` as a Keras model, with its (w, b) for numpy references."""
    rng = np.random.RandomState(seed)
    inp = keras.Input(shape)
    out = keras.layers.Dense(classes)(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    d = int(np.prod(shape))
    w, b = rng.randn(d, classes) * 2.0, rng.randn(classes) * 0.1
    model.layers[-1].set_weights([w, b])
    return model, w, b


def small_bn_model(bn_seed=None):
    """conv -> TorchBatchNorm -> ReLU -> GAP -> dense, on 4x4x2 inputs.  With ``bn_seed``
    the BatchNorm's gamma, beta and moving statistics are drawn away from their initial
    values (from ``np.random.RandomState(bn_seed)``), so that a statistics update that
    uses the wrong moments or order shows."""
    inp = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inp)
    h = TorchBatchNorm(name="bn")(h)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(3, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    if bn_seed is not None:
        rng = np.random.RandomState(bn_seed)
        model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 3), rng.randn(3) * 0.1,
                                           rng.randn(3) * 0.1, rng.uniform(0.5, 2, 3)])
    return model


# Settings a registered method needs to be testable on the small models here; every
# other method runs at its defaults, so a method registered later is tested unchanged.
METHOD_OVERRIDES = {"fat": {"tau": 1}}


EXECUTION_OPTIONS = ("group_forwards", "fold_batchnorm", "keep_variable_access_order")


def registered_method(key, steps=2, network=None, **hparams):
    """``(networks, method)``: the registered method ``key`` (``METHOD_OVERRIDES`` and
    ``hparams`` over its defaults) with one ``network(index)`` per network it trains
    (CAT: one per member); by default each a fresh :func:`small_bn_model`."""
    network = network or (lambda index: small_bn_model())
    from tf_st import methods
    hparams = {**METHOD_OVERRIDES.get(key, {}), **hparams}
    # Execution options (how a step is computed) are constructor keywords, not fields.
    options = {k: hparams.pop(k) for k in EXECUTION_OPTIONS if k in hparams}
    names = list(methods.METHODS[key].network_archs("small_cnn", hparams))
    nets = {name: network(i) for i, name in enumerate(names)}
    method = methods.build(key, nets if len(nets) > 1 else nets[names[0]], steps=steps,
                           **hparams, **options)
    return nets, method


def numeric_grad(f, w, h=1e-6):
    """Central finite differences of the scalar ``f`` at ``w``."""
    g = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[idx] += h
        wm[idx] -= h
        g[idx] = (f(wp) - f(wm)) / (2 * h)
    return g


def linear_ce_grad(w, b, x, y):
    """d mean CE / d W of the affine classifier ``flatten(x) @ w + b``, by hand."""
    flat = x.reshape(len(x), -1)
    p = softmax(flat @ w + b)
    p[np.arange(len(y)), y] -= 1
    return flat.T @ p / len(y)


def sharded_evaluation_flags(model_strategy, strategies):
    """``{name: {attack: per-example 0/1 flags}}`` of clean, FGSM, PGD-5, CW-5 and a short
    AutoAttack (all four components) on a small conv model built under
    ``model_strategy``'s scope, evaluated under each ``(name, strategy)`` of
    ``strategies`` (None: one device).  37 examples in batches of 8: the 5 batches do not
    split evenly over 2 replicas."""
    from tf_st.attacks import autoattack as aa
    from tf_st.evaluation import evaluate

    with model_strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8, 8, 3)),
                                  keras.layers.Conv2D(8, 3, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (37, 8, 8, 3)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    y[::4] = (y[::4] + 1) % 10  # some clean mistakes too
    fn = lambda t: model(t)  # noqa: E731
    out = {}
    for name, strategy in strategies:
        res = evaluate(fn, (x, y), ["clean", "fgsm", "pgd5", "cw5"], epsilon=8 / 255,
                       batch_size=8, seed=1, verbose=False, strategy=strategy)
        out[name] = {k: v.correct.astype(int).tolist() for k, v in res.attacks.items()}
        r = aa.evaluate(fn, x, y, epsilon=8 / 255, version="custom", seed=0, batch_size=8,
                        attacks=(aa.APGD(steps=4), aa.APGDT(steps=4, targets=2),
                                 aa.FABT(steps=4, targets=2), aa.Square(steps=20)),
                        verbose=False, checks=False, strategy=strategy)
        out[name]["aa"] = r.robust_flags.astype(int).tolist()
        out[name]["aa_clean"] = r.clean_flags.astype(int).tolist()
    return out


def small_cat(**options):
    """``(nets, method)``: CAT with a TRADES and an ALP member, each a small BN model
    (BN statistics seeded apart), K = 3; ``options``: the method's execution options
    (``group_forwards=``, ``fold_batchnorm=``, ...)."""
    from tf_st import methods
    nets = {"trades": small_bn_model(bn_seed=1), "alp": small_bn_model(bn_seed=2)}
    return nets, methods.build("cat", nets, members="trades,alp", steps=3, **options)


def small_cat_step(eager):
    """One step of :func:`small_cat` from seed 0 on a fixed batch of 6 (floatx inputs),
    eager or traced: ``(logged collaborative term, every network's weights after it)``.
    The traced step must equal the eager one (``tests/test_cat_alp.py``)."""
    import tensorflow as tf
    x = tf.constant(np.random.RandomState(0).uniform(0, 1, (6, 4, 4, 2)),
                    dtype=keras.config.floatx())
    y = tf.constant(np.arange(6) % 3)
    keras.utils.set_random_seed(0)
    nets, method = small_cat()
    method.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=eager)
    logs = method.train_on_batch(x, y, return_dict=True)
    return logs["collab"], [v.numpy() for net in nets.values() for v in net.weights]
