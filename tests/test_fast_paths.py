"""The speed paths compute what the plain paths compute.

* ``batch_groups`` / ``AdversarialMethod.forward_groups``: one forward of concatenated
  batches with per-part BatchNorm statistics equals separate forwards (float64: logits,
  input gradients, parameter gradients, moving statistics, update order included).
* ST's kept clean forward (input gradient by backward pass only) and grouped inner
  forwards give the same inner trajectory as separate forwards (float64).
* The fused BatchNorm kernel equals the composite one (float32, to rounding).
* Inference-mode BN folded into the convolution before it (``fold_batchnorm``) gives the
  same logits and gradients (float64) and the same training steps.
* A training step traces once per input shape.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import registered_method, small_bn_model, small_cat
from tf_st import methods, models
from tf_st.methods.base import batch_stats_forward
from tf_st.models.layers import TorchBatchNorm, batch_groups, set_batchnorm


def _batches(n, size=4, seed=0):
    rng = np.random.RandomState(seed)
    return [tf.constant(rng.uniform(0, 1, (size, 4, 4, 2))) for _ in range(n)]


def _bn_state(model):
    bn = model.get_layer("bn")
    return np.concatenate([bn.moving_mean.numpy(), bn.moving_variance.numpy()])


def _separate(model, xs, order):
    """Reference: one forward per part, train mode (moving-statistics update) in
    ``order``, batch statistics without update for the parts not in it."""
    zs = {}
    for g in order:
        z = model(xs[g], training=True)
        zs.setdefault(g, z)
    return [zs[i] if i in zs else batch_stats_forward(model, x) for i, x in enumerate(xs)]


def _grouped(model, xs, order):
    groups = batch_groups(len(xs), order)
    joined = tf.concat(xs, axis=0)
    if not order:
        z = batch_stats_forward(model, joined, batch_groups=groups)
    else:
        z = model(joined, training=True, batch_groups=groups)
    return tf.split(z, len(xs), axis=0)


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 2), (2, 1), (0, 1, 0), ()])
def test_grouped_forward_equals_separate_forwards(float64, order):
    results = []
    for forward in (_separate, _grouped):
        keras.utils.set_random_seed(0)
        model = small_bn_model(bn_seed=3)
        xs = _batches(3)
        w = np.random.RandomState(5).randn(3, 3)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xs)
            zs = forward(model, xs, order)
            # A loss that weighs the parts differently, so swapped parts would show.
            loss = sum(tf.reduce_sum(tf.tanh(z) * w[i]) for i, z in enumerate(zs))
        results.append({"logits": [z.numpy() for z in zs],
                        "input_grads": [g.numpy() for g in tape.gradient(loss, xs)],
                        "param_grads": [g.numpy() for g in
                                        tape.gradient(loss, model.trainable_variables)],
                        "moving": _bn_state(model)})
    separate, grouped = results
    for key in separate:
        for a, b in zip(grouped[key], separate[key]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=key)
    keras.utils.set_random_seed(0)
    initial = _bn_state(small_bn_model(bn_seed=3))
    assert np.array_equal(grouped["moving"], initial) == (order == ())


def test_batch_groups_rejects_bad_group_index():
    with pytest.raises(ValueError, match="group index"):
        with batch_groups(2, (0, 2)):
            pass


def _registered_keys(slow=()):
    """Every registered method key; those in ``slow`` (over ~5 s here) marked slow."""
    return [pytest.param(k, marks=pytest.mark.slow) if k in slow else k
            for k in sorted(methods.METHODS)]


def _assert_same_step_with_and_without(key, attribute):
    """One train step (generate, loss, update) of ``key`` with the method's execution
    option ``attribute`` on, then off, from the same weights and batch: the same weights
    and moving statistics."""
    out = []
    for value in (True, False):
        keras.utils.set_random_seed(0)
        kwargs = {"tau": 1} if key.startswith("fat") else {}
        # Networks' BN statistics seeded apart (CAT: as tests.helpers.small_cat).
        _, method = registered_method(key, steps=3,
                                      network=lambda i: small_bn_model(bn_seed=1 + i),
                                      **{attribute: value}, **kwargs)
        assert getattr(method, attribute) is value
        method.compile(optimizer=keras.optimizers.SGD(0.5))
        x, y = _batches(1, size=6)[0], tf.constant(np.arange(6) % 3)
        method.train_on_batch(x, y)
        out.append([v.numpy() for net in method.networks.values() for v in net.weights])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("key", _registered_keys(slow={"cat", "st"}))
def test_method_step_with_and_without_grouped_forwards(float64, key):
    """``group_forwards`` on and off: the same step."""
    _assert_same_step_with_and_without(key, "group_forwards")


def test_st_inner_loop_equals_separate_forwards_with_clean_recomputed(float64):
    """ST's fast inner loop (grouped col/adv forward, the clean forward kept and only
    back-propagated) against a plain transcription of the reference loop."""
    from tf_st.attacks.pgd import project
    from tf_st.methods.squeeze import gather_role, select_roles
    keras.utils.set_random_seed(0)
    model = small_bn_model(bn_seed=2)
    method = methods.build("st", model, steps=4)
    x = _batches(1, size=8)[0]
    y = tf.constant(np.arange(8) % 3)
    rng = np.random.RandomState(1)
    init = {k: x + 0.001 * rng.randn(*x.shape) for k in ("adv", "col")}
    fast = method.generate(x, y, init=init)

    fwd = lambda v: batch_stats_forward(model, v)  # noqa: E731
    x_adv, x_col = init["adv"], init["col"]
    z_nat = fwd(x)
    used_nat = 0
    for _ in range(4):
        x0 = tf.identity(x)
        with tf.GradientTape() as tape:
            tape.watch([x0, x_col, x_adv])
            z_col, z_adv = fwd(x_col), fwd(x_adv)
            up, low = select_roles(z_nat, z_col, z_adv, y)
            use_nat = bool(tf.reduce_any((up == 0) | (low == 0)))
            z_n = fwd(x0) if use_nat else z_nat
            zs = tf.stack([z_n, z_col, z_adv], axis=1)
            inner = tf.reduce_sum(method.reg_fn(gather_role(zs, up), gather_role(zs, low)))
        grads = tape.gradient(inner, [x0, x_col, x_adv],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        used_nat += use_nat
        gs = tf.stack(grads, axis=1)
        xs = tf.stack([x, x_col, x_adv], axis=1)
        base_adv = gather_role(xs, up) if use_nat else x_adv
        base_col = gather_role(xs, low) if use_nat else x_col
        x_col = project(base_col + method.step_size * tf.sign(gather_role(gs, low)), x,
                        method.epsilon)
        x_adv = project(base_adv + method.step_size * tf.sign(gather_role(gs, up)), x,
                        method.epsilon)
    assert used_nat >= 1  # the kept clean forward was exercised
    np.testing.assert_array_equal(fast["adv"].numpy(), x_adv.numpy())
    np.testing.assert_array_equal(fast["col"].numpy(), x_col.numpy())


def test_fused_batchnorm_equals_composite_float32():
    """FusedBatchNormV3 (float32 default) against the composite path: outputs, input and
    parameter gradients in training and inference, moving statistics (unbiased)."""
    rng = np.random.RandomState(0)
    x = tf.constant(rng.normal(1.0, 2.0, (6, 5, 5, 4)).astype("float32"))
    results = []
    for fused in (True, False):
        keras.utils.set_random_seed(0)
        inp = keras.Input((5, 5, 4))
        out = keras.layers.Dense(3)(keras.layers.Flatten()(TorchBatchNorm(name="bn")(inp)))
        model = keras.Model(inp, out)
        bn = model.get_layer("bn")
        bn.set_weights([rng.uniform(0.5, 1.5, 4).astype("float32"),
                        rng.randn(4).astype("float32"), np.zeros(4, "float32"),
                        np.ones(4, "float32")])
        rng = np.random.RandomState(0)  # same draws for both builds
        rng.normal(1.0, 2.0, (6, 5, 5, 4))
        set_batchnorm(model, fused=fused)
        row = {}
        for training in (True, False):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.sin(model(x, training=training)))
            row[f"in_{training}"] = tape.gradient(loss, x).numpy()
            row[f"par_{training}"] = [g.numpy() for g in
                                      tape.gradient(loss, model.trainable_variables)]
            row[f"moving_{training}"] = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
        results.append(row)
    for key in results[0]:
        for a, b in zip(results[0][key], results[1][key]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=key)
    # PyTorch's running-variance rule: unbiased batch variance, momentum 0.1.
    n = 6 * 5 * 5
    var = np.var(x.numpy(), axis=(0, 1, 2)) * n / (n - 1)
    np.testing.assert_allclose(results[0]["moving_True"][1], 0.9 + 0.1 * var, rtol=1e-5)


@pytest.mark.slow
def test_train_step_traces_once_per_shape():
    keras.utils.set_random_seed(0)
    model = models.build("small_cnn", 3, input_shape=(8, 8, 3))
    method = methods.build("st", model, steps=2)
    method.compile(optimizer=keras.optimizers.SGD(0.1))
    traces = []
    step = method.train_step

    def counting_step(data):  # Python runs only while TensorFlow traces
        traces.append(data[0].shape[0])
        return step(data)

    method.train_step = counting_step
    rng = np.random.RandomState(0)
    batch = lambda n: (rng.uniform(0, 1, (n, 8, 8, 3)).astype("float32"),  # noqa: E731
                       rng.randint(0, 3, n))
    for n in (4, 4, 4, 6, 6, 4):
        method.train_on_batch(*batch(n))
    assert len(traces) <= 2, traces


@pytest.mark.slow
def test_mixed_bfloat16_step_trains_float32_master_weights():
    """--mixed_precision off-GPU: bfloat16 compute (fused BN included), float32 variables,
    logits and loss; the master weights move."""
    from trainers.runner import mixed_policy
    from tf_st.training.optim import TorchSGD
    assert mixed_policy("auto") == "mixed_bfloat16"  # no GPU here
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(mixed_policy("bfloat16"))
    try:
        keras.utils.set_random_seed(0)
        model = models.build("small_cnn", 3, input_shape=(16, 16, 3))
        method = methods.build("st", model, steps=2)
        method.compile(optimizer=TorchSGD(0.05, momentum=0.9, coupled_weight_decay=5e-4))
        rng = np.random.RandomState(0)
        x = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
        y = rng.randint(0, 3, 8)
        before = [v.numpy().copy() for v in model.trainable_variables]
        for _ in range(2):
            logs = method.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"]) and logs["loss"] > 0
        assert {v.dtype for v in model.weights} == {"float32"}
        convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
        # The stem reads the images in float32 (tf_st.models._common.stem_dtype).
        assert [la.compute_dtype for la in convs] == ["float32"] + ["bfloat16"] * 3
        assert model(x).dtype == tf.float32
        moved = [float(np.abs(v.numpy() - b).max()) for v, b in
                 zip(model.trainable_variables, before)]
        assert min(moved) > 0  # every variable, BN included, was updated in float32
    finally:
        keras.config.set_dtype_policy(old)


def _float16_step(optimizer, policy):
    """One natural-training step of a small CNN under ``policy`` (no attack, whose sign
    steps would flip between precisions); returns (method, model, weights before)."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = models.build("small_cnn", 3, input_shape=(8, 8, 3))
        method = methods.build("natural", model)
        method.compile(optimizer=optimizer)
        rng = np.random.RandomState(0)
        x = rng.uniform(0, 1, (8, 8, 8, 3)).astype("float32")
        y = rng.randint(0, 3, 8)
        before = [v.numpy().copy() for v in model.trainable_variables]
        method.train_on_batch(x, y)
        return method, model, before
    finally:
        keras.config.set_dtype_policy(old)


def test_mixed_float16_loss_scaling_in_the_custom_train_step():
    """The GPU path, run on the CPU: under mixed_float16 the step scales the float32 loss
    (``scale_loss``), unscales the float16 gradients and updates float32 master weights
    as a float32 run does, to float16 precision; a scale that overflows the float16
    gradients skips the update and halves the scale (dynamic loss scaling)."""
    method, model, before = _float16_step(keras.optimizers.SGD(0.5), "mixed_float16")
    assert isinstance(method.optimizer, keras.optimizers.LossScaleOptimizer)
    assert any(la.compute_dtype == "float16" for la in model.layers
               if isinstance(la, keras.layers.Conv2D))
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    _, reference, _ = _float16_step(keras.optimizers.SGD(0.5), "float32")
    for v, r, b in zip(model.trainable_variables, reference.trainable_variables, before):
        # float16 activations move single entries by up to ~20%; the update's direction
        # and size are those of float32 (a missing unscale would make it 2**15 too large).
        update, expected = (v.numpy() - b).ravel(), (r.numpy() - b).ravel()
        norm = np.linalg.norm(expected)
        assert norm > 0
        assert np.dot(update, expected) / (np.linalg.norm(update) * norm) > 0.99, v.path
        assert np.linalg.norm(update) / norm == pytest.approx(1.0, abs=0.03), v.path

    overflowing = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5),
                                                      initial_scale=2.0 ** 60)
    method, model, before = _float16_step(overflowing, "mixed_float16")
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert float(method.optimizer.dynamic_scale.numpy()) == 2.0 ** 59


def test_random_starts_change_every_step_without_a_prebuilt_optimizer():
    """The stateless start noise is keyed by the optimizer step read when the step runs:
    two steps on the same batch with the weights held still (lr 0) start elsewhere.
    (Where the optimizer is built only while the step is traced -- under
    MultiWorkerMirroredStrategy -- a trace-time check froze the key at 0;
    test_multi_worker catches that.)"""
    keras.utils.set_random_seed(0)
    model = models.build("small_cnn", 3, input_shape=(8, 8, 3))
    seen = tf.Variable(tf.zeros((2, 4, 8, 8, 3)))
    count = tf.Variable(0)

    class Spy(methods.StepHook):
        def before_outer_gradient(self, method, x, y, generated):
            seen.scatter_nd_update([[count]], [generated["adv"] - x])
            count.assign_add(1)

    method = methods.build("madry", model, steps=1, step_hooks=[Spy()])
    method.compile(optimizer=keras.optimizers.SGD(0.0))  # not built before the first step
    x = np.random.RandomState(0).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    y = np.arange(4) % 3
    method.fit(tf.data.Dataset.from_tensors((x, y)).repeat(2), epochs=1, verbose=0)
    first, second = seen.numpy()
    assert np.abs(first).max() > 0 and not np.allclose(first, second)


def _randomize_batchnorms(model, seed):
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, TorchBatchNorm):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.randn(c) * 0.2,
                               rng.randn(c) * 0.2, rng.uniform(0.5, 2, c)])


@pytest.mark.parametrize("arch, pairs", [pytest.param("resnet18", 20, marks=pytest.mark.slow),
                                         pytest.param("preact_resnet18", 8,
                                                      marks=pytest.mark.slow),
                                         ("small_cnn", 4)])
def test_folded_batchnorm_equals_inference_forward(float64, arch, pairs):
    """conv -> BN folded into one biased conv: the same logits, input gradients and
    parameter gradients as Keras' inference-mode BN; a BN after a ReLU stays a BN."""
    from tf_st.models.folding import conv_bn_pairs, fold_batchnorm
    keras.utils.set_random_seed(0)
    model = models.build(arch, 10)
    _randomize_batchnorms(model, seed=1)
    assert len(conv_bn_pairs(model)) == pairs
    folded = fold_batchnorm(model)
    x = tf.constant(np.random.RandomState(2).uniform(0, 1, (3, 32, 32, 3)))
    weights = tf.constant(np.random.RandomState(3).randn(3, 10))
    out = []
    for forward in (lambda t: model(t, training=False), folded):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            z = forward(x)
            loss = tf.reduce_sum(tf.tanh(z) * weights)
        out.append([z.numpy(), tape.gradient(loss, x).numpy()]
                   + [g.numpy() for g in tape.gradient(loss, model.trainable_variables)])
    assert out[0][0].dtype == np.float64
    for a, b in zip(*out):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-11 * max(1.0, np.abs(a).max()))
    # The folded function reads the weights when called: it follows training.
    bn = [la for la in model.layers if isinstance(la, TorchBatchNorm)][0]
    bn.moving_mean.assign(bn.moving_mean + 1.0)
    np.testing.assert_allclose(folded(x).numpy(), model(x, training=False).numpy(), atol=1e-11)


def test_fold_batchnorm_leaves_shared_or_branching_convs_alone():
    from tf_st.models.folding import conv_bn_pairs, fold_batchnorm
    inp = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")
    h = conv(inp)
    branch = TorchBatchNorm(name="bn")(h)
    out = keras.layers.Add()([branch, h])  # the conv's output is used twice: no fold
    model = keras.Model(inp, out)
    assert conv_bn_pairs(model) == {}
    x = tf.constant(np.random.RandomState(0).uniform(0, 1, (2, 4, 4, 2)), tf.float32)
    np.testing.assert_array_equal(fold_batchnorm(model)(x).numpy(),
                                  model(x, training=False).numpy())


@pytest.mark.parametrize("key", _registered_keys(slow={"cat", "mart2", "st"}))
def test_method_step_with_and_without_folded_batchnorm(float64, key):
    """Eval-mode attacks through the folded forward: the same step."""
    _assert_same_step_with_and_without(key, "fold_batchnorm")


def test_cat_attacks_each_network_through_its_folded_forward(float64):
    """CAT attacks every member network in inference mode; folded, each member's own
    BatchNorm is folded.  (Its whole step was not compared here because CAT's traced
    step varied from instance to instance; that was Grappler reordering a peer forward's
    weight read after the update, not the folding: see
    ``tests/test_cat_alp.py::test_cat_traced_step_reads_each_network_before_updating_it``
    and the ``cat`` case of the step comparison above.)"""
    nets, method = small_cat()
    x = _batches(1, size=6)[0]
    plain = {m: method._eval(m)(x).numpy() for m in nets}
    method = methods.get("cat")(nets, members="trades,alp", steps=3, fold_batchnorm=True)
    for m, net in nets.items():
        np.testing.assert_allclose(method._eval(m)(x).numpy(), plain[m], rtol=0, atol=1e-12)
        np.testing.assert_allclose(plain[m], net(x, training=False).numpy(), atol=1e-12)
    assert not np.allclose(plain["trades"], plain["alp"])
    assert set(method.__dict__["_folded_forwards"]) == {net.name for net in nets.values()}



def test_execution_options_are_read_only_constructor_keywords():
    """``group_forwards`` / ``fold_batchnorm`` / ``keep_variable_access_order`` are given
    to the constructor and cannot be flipped afterwards (a traced step would not see it);
    the defaults are grouped forwards, no folding, ordered variable access."""
    from tf_st.methods.base import AdversarialMethod
    method = methods.build("trades", small_bn_model())
    assert (method.group_forwards, method.fold_batchnorm) == (True, False)
    assert method._keep_variable_access_order is True
    for name in ("group_forwards", "fold_batchnorm"):
        assert isinstance(getattr(AdversarialMethod, name), property)
        with pytest.raises(AttributeError):
            setattr(method, name, not getattr(method, name))
    other = methods.build("trades", small_bn_model(), group_forwards=False, fold_batchnorm=True,
                          keep_variable_access_order=False)
    assert (other.group_forwards, other.fold_batchnorm) == (False, True)
    assert other._keep_variable_access_order is False
    assert "group_forwards" not in other.hparams()
