"""Distribution strategy selection.

``auto`` picks MirroredStrategy when more than one GPU is visible, the default
strategy otherwise.  ``multi_worker`` reads ``TF_CONFIG``; multi-worker training under
Keras 3 is experimental upstream (keras-team/keras#20585), so it is offered, not
promised."""

import tensorflow as tf

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")
_MULTI_WORKER = None


def set_threads(intra_op=0, inter_op=0):
    """TensorFlow's thread pools (before its runtime starts; 0 = TensorFlow's default).
    ``inter_op=1`` runs the step's ops one at a time, each on ``intra_op`` threads, as
    PyTorch does; on the 2-core benchmark machine it was not reliably faster
    (``benchmarks/RESULTS.md``), so the default stays TensorFlow's."""
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        raise RuntimeError("thread settings must be made before TensorFlow starts its "
                           "runtime") from None


def split_cpu(devices):
    """Splits the CPU into ``devices`` logical devices (MirroredStrategy on one CPU: tests,
    trying a multi-device run here).  Must run before TensorFlow starts its runtime."""
    if devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(devices))
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise RuntimeError(f"--cpu_devices={devices}: TensorFlow already started with "
                               f"{len(tf.config.list_logical_devices('CPU'))} CPU devices") \
                from None


def make_strategy(name="auto"):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name == "multi_worker":
        # First: collectives must be configured before the runtime starts (listing
        # logical devices starts it), and only once per process.
        global _MULTI_WORKER
        if _MULTI_WORKER is None:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        return _MULTI_WORKER
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        cpus = tf.config.list_logical_devices("CPU")
        name = "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise AssertionError(name)


def num_workers(strategy):
    """Worker processes of ``strategy`` (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def worker_index(strategy):
    """This process's index among the workers (the chief first), 0 on one host."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if num_workers(strategy) == 1:
        return 0
    spec = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + (1 if spec.get("chief") else 0)


def distribute_batches(strategy, dataset, global_batch):
    """``dataset`` (of *global* batches of ``global_batch`` rows) as ``fit`` should get it
    under ``strategy``.

    On one worker it is returned unchanged: Keras splits every global batch across the
    local replicas in contiguous slices.  With several workers every worker reads the
    same global batches and keeps its own contiguous block of every batch (worker ``w``
    of ``W``: rows ``[w B/W, (w+1) B/W)``), exactly what its replicas get in a
    one-process run -- so the stateless noise drawn over the global batch (see
    ``AdversarialMethod.start``) lines up.  tf.data's auto-sharding would deal the
    examples round-robin to the workers instead.  (TF behaviour this relies on, observed:
    with auto-sharding off, each step a worker takes the next ``B/W`` rows of its own
    dataset; ``tests/test_multi_worker.py`` checks the outcome.)  Give ``fit``
    ``steps_per_epoch``: the last batch is padded."""
    workers = num_workers(strategy)
    if workers == 1:
        return dataset
    if global_batch % workers:
        raise ValueError(f"global batch {global_batch} is not divisible by {workers} workers")
    block, first = global_batch // workers, worker_index(strategy) * (global_batch // workers)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    mine = dataset.map(lambda *batch: tuple(t[first:first + block] for t in batch))
    # Padding rows complete the last global batch; they are never trained on when
    # ``fit`` is given ``steps_per_epoch`` (the trainers always give it).
    padding = mine.take(1).unbatch().repeat(workers - 1)
    return mine.unbatch().concatenate(padding).batch(
        global_batch, drop_remainder=True).with_options(options)


def run_sharded(strategy, fn, calls):
    """``[fn(*args) for args in calls]``, ``num_replicas_in_sync`` calls at a time, each
    call whole on one replica (evaluation sharded by batches: every batch keeps its
    examples, padding and seed, so per-example results equal one device's).

    ``strategy`` None or with one replica: plain calls.  Outputs are nests of tensors.

    With several workers (MultiWorkerMirroredStrategy) every worker must make the same
    calls in the same order: each worker runs the calls of its own replicas and then
    all-gathers every output, so every worker returns every result and the caller's
    control flow (which points are still robust, what to attack next) stays the same
    on all workers.  ``fn`` itself must not communicate."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return [fn(*args) for args in calls]
    replicas, workers = strategy.num_replicas_in_sync, num_workers(strategy)
    out = []
    for start in range(0, len(calls), replicas):
        group = list(calls[start:start + replicas])
        padded = group + [group[-1]] * (replicas - len(group))
        args = tuple(
            strategy.experimental_distribute_values_from_function(
                lambda ctx, j=j: padded[ctx.replica_id_in_sync_group][j])
            for j in range(len(padded[0])))
        # A Python function per replica (a tf.function handed to ``run`` directly would
        # be called once with the distributed values).
        results = strategy.run(lambda *a: fn(*a), args=args)
        if workers == 1:
            leaves = [strategy.experimental_local_results(v)
                      for v in tf.nest.flatten(results)]
        else:
            leaves = _all_gather(strategy, results, replicas)
        for r in range(len(group)):
            out.append(tf.nest.pack_sequence_as(results, [v[r] for v in leaves]))
    return out


def _all_gather(strategy, results, replicas):
    """Every replica's output leaves (``results``: a nest of per-replica tensors), on every
    worker, in replica order.  Collectives gather numbers, not booleans: booleans travel
    as int32."""
    flat = tf.nest.flatten(results)
    dtypes = [strategy.experimental_local_results(v)[0].dtype for v in flat]
    wires = [tf.int32 if d == tf.bool else d for d in dtypes]
    stacked = strategy.run(
        lambda *vs: [tf.expand_dims(tf.cast(v, w), 0) for v, w in zip(vs, wires)], args=flat)
    gathered = [strategy.gather(v, axis=0) for v in stacked]
    return [[tf.cast(g[r], d) for r in range(replicas)] for g, d in zip(gathered, dtypes)]
