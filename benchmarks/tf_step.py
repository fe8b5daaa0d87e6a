"""tf_st's side of the speed benchmarks: the ResNet-18 training step that
``benchmarks.vs_reference`` races against the official code and ``benchmarks.op_profile``
profiles, with the levers those benchmarks switch (``--tf_options``)."""

EPS, STEP, BETA, LR = 8 / 255, 2 / 255, 6.0, 0.1


def parse_options(items):
    """``["key=value", ...]`` -> ``{key: value}`` (``true``/``false`` as booleans)."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"tf_st options are key=value, got {item!r}")
        options[name] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def describe_options(items, mixed=None):
    """The tf_st side's settings as a table header names them: the ``--tf_options``
    items, then ``mixed_<dtype>``, or ``defaults``."""
    return ", ".join(list(items) + ([f"mixed_{mixed}"] if mixed else [])) or "defaults"


def build_tf_st(key, k, jit_compile, options, threads=0, inter_op=0):
    """``(resnet18, method)``: tf_st's side of the race, compiled as the trainers compile
    it, with the ``--tf_options`` levers applied.  Sets TensorFlow's thread pools first
    (``threads`` intra-op, ``inter_op`` unless the options give ``inter_op_threads``), so
    it must run before any TensorFlow op in the process."""
    import keras
    import tensorflow as tf
    from tf_st import methods, models
    from tf_st.models.layers import set_batchnorm
    from tf_st.training.optim import TorchSGD
    from tf_st.distribute import set_threads

    options = dict(options)
    set_threads(threads, int(options.pop("inter_op_threads", inter_op)))
    pad_layers = bool(options.pop("pad_layers", False))
    keras.utils.set_random_seed(1)
    clf = models.build("resnet18", 10, pad_at_stride_1=pad_layers)
    set_batchnorm(clf, fused=options.pop("fused_bn", True))
    jit_compile = options.pop("jit_compile", jit_compile)
    jit_attack = options.pop("jit_attack", False)
    # The method's execution options (tf_st.methods.base.AdversarialMethod):
    # dependency_optimization=true leaves Grappler's dependency optimizer on (training
    # turns it off: it reordered a variable read after the variable's update).
    method = methods.build(
        key, clf, steps=k, epsilon=EPS, step_size=STEP, beta=BETA,
        group_forwards=options.pop("group_forwards", True),
        fold_batchnorm=options.pop("fold_bn", False),
        keep_variable_access_order=not options.pop("dependency_optimization", False),
        **options)
    if jit_attack:
        # XLA on the inner attack alone (the rest of the step stays on TensorFlow's kernels).
        method.generate = tf.function(method.generate, jit_compile=True)
    method.compile(optimizer=TorchSGD(LR, momentum=0.9, coupled_weight_decay=5e-4),
                   jit_compile=jit_compile)
    return clf, method


def random_batch(b):
    """The batch both sides train on: uniform [0, 1] images (NHWC here, the same numbers as
    the reference's NCHW batch) and labels, from seeds ``b`` and ``b + 1``."""
    import numpy as np
    import tensorflow as tf
    x = np.random.RandomState(b).uniform(0, 1, (b, 3, 32, 32)).astype("float32")
    return (tf.constant(x.transpose(0, 2, 3, 1)),
            tf.constant(np.random.RandomState(b + 1).randint(0, 10, b)))
