"""The one ``keras.Model`` wrapper every training method builds on.

A method owns one or more networks (``networks``, a dict; single-network methods have
one entry, ``classifier``) and implements two pure pieces:

* ``generate(x, y, init=None)`` -> dict of the perturbed inputs it trains on,
* ``training_loss(x, y, generated)`` -> dict with ``loss`` (the differentiated total,
  a mean over *this replica's* examples) and its logged terms.  A method may add
  ``clean_logits`` (a tensor, or a dict per network); it feeds the training-accuracy
  metrics and is not logged.

Its hyperparameters are one frozen dataclass (``HParams``, see ``hparams``): defaults,
validation, model-card dict and trainer flags all come from that declaration.

``train_step`` (written once, here) composes the pieces with the optimizer update.  It
is responsible for what every method would otherwise get wrong on its own:

* replica scaling: ``fit`` sums gradients across replicas, so the per-replica mean is
  divided by ``num_replicas_in_sync`` (Keras only does this for built-in losses);
* mixed precision: each optimizer's ``scale_loss`` before the tape's gradient;
* one optimizer per network where the reference has one (``compile(optimizer={name:
  opt})``), or one for all; each optimizer applies the gradient of the total loss with
  respect to its own network's variables (methods whose networks learn from each other
  detach the peers inside ``training_loss``);
* step hooks around the outer step: ``before_outer_gradient`` (after ``generate``,
  before the loss is differentiated: AWP moves the weights here) and ``after_apply``
  (after every optimizer step: AWP moves them back), run for every object in
  ``step_hooks`` in order (``after_apply`` in reverse order);
* reproducible, replica-invariant noise: random starts are stateless draws keyed by
  (seed, optimizer step, draw index) over the *global* batch, of which each replica
  takes its slice, so 2 replicas draw exactly what one device would;
* the three BatchNorm modes the references use (see ``forward_*``);
* variable reads and updates in program order: building the train function turns off
  Grappler's dependency optimizer for the process (``keep_variable_access_order``).

How a step is computed (not what it computes) is chosen at construction, by keywords every
method takes besides its hyperparameters: ``group_forwards`` (default True),
``fold_batchnorm`` (default False) and ``keep_variable_access_order`` (default True); they
are read-only afterwards (a traced step would not see a later change).
"""

import dataclasses

import keras
import tensorflow as tf

from tf_st import seeds
from tf_st.attacks import losses, starts
from tf_st.methods import registry
from tf_st.methods.hparams import HParams
from tf_st.models.folding import fold_batchnorm
from tf_st.models.layers import batch_groups, check_batch_groups_reach


class StepHook:
    """Something done around every outer step of any method (e.g. AWP).

    Both calls run inside the traced ``train_step``, under the replica context; the base
    class does nothing in either.
    """

    def before_outer_gradient(self, method, x, y, generated):
        """Called after ``generate``, before the training loss is differentiated.

        Args:
          method: the ``AdversarialMethod`` running the step.
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: the dict ``generate`` returned (gradients stopped).
        """
        pass

    def after_apply(self, method, x, y, generated):
        """Called after every optimizer has applied its update.

        Args:
          method: the ``AdversarialMethod`` running the step.
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: the dict ``generate`` returned (gradients stopped).
        """
        pass


def check_norm_supported(cls, norm):
    """Refuses a threat model the method's inner attack does not implement.

    Args:
      cls: an ``AdversarialMethod`` subclass.
      norm: ``'Linf'`` or ``'L2'`` (any spelling ``tf_st.attacks.checks.check_norm`` takes).

    Raises:
      ValueError: ``norm`` is not in ``cls.norms``, naming the methods that train in it.
    """
    from tf_st.attacks.checks import check_norm
    norm = check_norm(norm)
    if norm not in cls.norms:
        others = sorted(k for k, c in registry.METHODS.items() if norm in c.norms)
        raise ValueError(f"method {cls.key!r} does not train in the {norm} threat model yet "
                         f"(it implements {', '.join(cls.norms)}); --norm={norm.lower()} "
                         f"trains with: {', '.join(others)}")


class AdversarialMethod(keras.Model):
    """Base class of every training method: a ``keras.Model`` whose ``fit`` trains its networks.

    Subclasses set ``key``, ``term_names`` and ``HParams`` and implement ``generate`` and
    ``training_loss``.  Setting ``key`` in a class body of a ``tf_st.methods`` module
    registers the class under it (``registry``).  Build one with ``tf_st.methods.build``.

    Execution options (the same numbers either way, float64 tests in
    tests/test_fast_paths.py and tests/test_cat_alp.py) are fixed at construction; a traced
    step would not see a later change.

    Args:
      networks: one network (a Keras model from NHWC images in [0, 1] to logits) or
        ``{name: network}``; each name becomes an attribute of the method.
      seed: integer key of the method's stateless random draws (starts, noise).
      name: Keras model name; defaults to the method's ``key``.
      step_hooks: ``StepHook`` objects run around every outer step, in order.
      group_forwards: forwards that BatchNorm keeps apart run as one forward of their
        concatenation (``forward_groups``); False: separate forwards.
      fold_batchnorm: inference-mode forwards fold every conv -> BN pair into one biased
        convolution (``forward_eval``).
      keep_variable_access_order: building the train function turns off Grappler's
        dependency optimizer (``keep_variable_access_order``); False leaves it as it is
        (benchmarks measure what it costs).
      **hparams: the fields of the method's ``HParams`` (``epsilon``, ``beta``, ...).

    Raises:
      ValueError: an unknown or invalid hyperparameter, no network, a network name that
        is not a usable attribute name, or a ``norm`` the method does not list in
        ``norms``.
    """

    key = None
    term_names = ("loss",)
    HParams = HParams
    # The threat models the method's inner attack implements (the ``norm`` hyperparameter,
    # the trainer's --norm); a method lists "L2" once its inner loop steps and projects in
    # the L2 ball, and any other norm is refused at construction, before any work.
    norms = ("Linf",)
    # Per-epoch model selection (the runner): the attack of the selection metric and
    # whether only a strictly better epoch replaces the best (ST-AT: PGD-20, ties to the
    # later epoch).
    selection_attack = "pgd20"
    selection_strict = False

    def __init_subclass__(cls, **kwargs):
        """A subclass of a ``tf_st.methods`` module that sets ``key`` in its own body
        registers itself (``tf_st.methods.registry``)."""
        super().__init_subclass__(**kwargs)
        if registry.registers_itself(cls):
            registry.register(cls)

    def __init__(self, networks, *, seed=0, name=None, step_hooks=(), group_forwards=True,
                 fold_batchnorm=False, keep_variable_access_order=True, **hparams):
        """Builds the method; the arguments are documented on the class."""
        super().__init__(name=name or self.key or "method")
        self._group_forwards = bool(group_forwards)
        self._fold_batchnorm = bool(fold_batchnorm)
        self._keep_variable_access_order = bool(keep_variable_access_order)
        self.hp = self.HParams.build(self.key, hparams)
        check_norm_supported(type(self), self.hp.norm)
        for f in dataclasses.fields(self.hp):
            setattr(self, f.name, getattr(self.hp, f.name))
        if not isinstance(networks, dict):
            networks = {"classifier": networks}
        if not networks:
            raise ValueError("a method needs at least one network")
        for net_name, net in networks.items():
            if not net_name.isidentifier() or hasattr(type(self), net_name) \
                    or net_name in self.__dict__:
                raise ValueError(f"network name {net_name!r} is not a usable attribute name")
            setattr(self, net_name, net)
        self.network_names = tuple(networks)
        self.seed = int(seed)
        self.step_hooks = list(step_hooks)
        self._extra_optimizers = {}
        self._trackers = {n: keras.metrics.Mean(name=n) for n in self.term_names}
        self._accuracies = {
            n: keras.metrics.SparseCategoricalAccuracy(
                name="accuracy" if len(networks) == 1 else f"{n}_accuracy")
            for n in self.network_names}

    # ------------------------------------------------------------------ interface
    def generate(self, x, y, init=None):
        """The perturbed inputs the method trains on (subclasses define it).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: a start point for the inner attack, or None for the method's own.

        Returns:
          A dict of tensors (e.g. ``{"x_adv": ...}``), NHWC float in [0, 1].

        Raises:
          NotImplementedError: the subclass does not define it.
        """
        raise NotImplementedError

    def training_loss(self, x, y, generated):
        """The differentiated loss and its logged terms (subclasses define it).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: the dict ``generate`` returned (gradients stopped).

        Returns:
          A dict with ``loss`` (a scalar: the mean over this replica's examples), one entry per
          name of ``term_names``, and optionally ``clean_logits`` (a tensor, or a dict per
          network) for the training-accuracy metrics.

        Raises:
          NotImplementedError: the subclass does not define it.
        """
        raise NotImplementedError

    def on_epoch_begin(self, epoch):
        """Called by the runner before each epoch (per-epoch schedules such as FAT's tau).

        Nothing by default.

        Args:
          epoch: the 1-based epoch about to run.
        """

    def hparams(self):
        """The method's hyperparameters, as written into run directories and model cards.

        Returns:
          ``{field name: value}`` of its ``HParams``.
        """
        return self.hp.as_dict()

    @classmethod
    def network_archs(cls, arch, hparams):
        """The networks the runner builds for this method.

        Args:
          arch: the run's ``--arch``.
          hparams: the method's hyperparameters (a dict).

        Returns:
          ``{network name: architecture key}``; by default one ``classifier`` of ``arch``.
        """
        return {"classifier": arch}

    @property
    def networks(self):
        """``{network name: network}``, in construction order."""
        return {n: getattr(self, n) for n in self.network_names}

    @property
    def primary(self):
        """The first network: what ``call`` and single-network code paths use."""
        return getattr(self, self.network_names[0])

    @property
    def group_forwards(self):
        """Whether ``forward_groups`` runs one forward of the concatenated parts
        (constructor option)."""
        return self._group_forwards

    @property
    def fold_batchnorm(self):
        """Whether inference-mode forwards run with BatchNorm folded into the
        convolutions (constructor option)."""
        return self._fold_batchnorm

    def make_train_function(self, force=False):
        """Keras' train function, after ``keep_variable_access_order`` unless turned off.

        Args:
          force: rebuild it even if it exists.

        Returns:
          What ``keras.Model.make_train_function`` returns.
        """
        if self._keep_variable_access_order:
            keep_variable_access_order()
        return super().make_train_function(force)

    # ---------------------------------------------------------------- optimizers
    def compile(self, optimizer="rmsprop", **kwargs):
        """Compiles the method with one optimizer or one per network.

        Under ``mixed_float16`` the per-network optimizers are wrapped in a
        ``LossScaleOptimizer`` as Keras wraps the first.

        Args:
          optimizer: one optimizer for every network, or ``{network name: optimizer}``.
          **kwargs: passed to ``keras.Model.compile``.

        Raises:
          ValueError: a dict of optimizers not keyed by exactly the network names.
        """
        if isinstance(optimizer, dict):
            missing = set(self.network_names) - set(optimizer)
            extra = set(optimizer) - set(self.network_names)
            if missing or extra:
                raise ValueError(f"optimizers must be given for exactly the networks "
                                 f"{list(self.network_names)} (missing {sorted(missing)}, "
                                 f"unknown {sorted(extra)})")
            first, *rest = self.network_names
            super().compile(optimizer=optimizer[first], **kwargs)
            mixed = self.dtype_policy.name == "mixed_float16"
            self._extra_optimizers = {
                n: keras.optimizers.LossScaleOptimizer(optimizer[n])
                if mixed and not isinstance(optimizer[n], keras.optimizers.LossScaleOptimizer)
                else optimizer[n] for n in rest}
        else:
            super().compile(optimizer=optimizer, **kwargs)
            self._extra_optimizers = {}

    @property
    def optimizers(self):
        """``{network: optimizer}`` (the same object for every network when one
        optimizer was compiled)."""
        return {n: self._extra_optimizers.get(n, self.optimizer) for n in self.network_names}

    def optimizer_groups(self):
        """Which optimizer steps which variables.

        Returns:
          ``[(optimizer, variables)]``: one pair for all networks when one optimizer was
          compiled, else one per network.
        """
        if not self._extra_optimizers:
            return [(self.optimizer, [v for net in self.networks.values()
                                      for v in net.trainable_variables])]
        return [(opt, self.networks[n].trainable_variables) for n, opt in self.optimizers.items()]

    def build_optimizers(self):
        """Creates every optimizer's slots now (checkpoint restore needs them)."""
        for opt, variables in self.optimizer_groups():
            opt.build(variables)

    # --------------------------------------------------------------- forward modes
    def call(self, x, training=False):
        """The primary network's logits: what ``predict`` and evaluation see.

        Args:
          x: NHWC float images in [0, 1].
          training: BatchNorm in training mode.

        Returns:
          Logits ``[B, classes]``.
        """
        return self.primary(x, training=training)

    def forward_train(self, x):
        """Train-mode BN: batch statistics, moving statistics updated (PyTorch ``model.train()``).

        Args:
          x: NHWC float images in [0, 1].

        Returns:
          The primary network's logits.
        """
        return self.primary(x, training=True)

    def forward_eval(self, x, network=None):
        """Inference-mode BN (PyTorch ``model.eval()``), as the TRADES/MART attacks use.

        With ``fold_batchnorm=True`` every conv -> BN pair is folded into one biased
        convolution (``tf_st.models.folding``; the same function and gradients up to
        rounding, float64 test in tests/test_fast_paths.py).  Off by default: on this
        project's CPU it was not faster (benchmarks/RESULTS.md); worth measuring on a GPU.

        Args:
          x: NHWC float images in [0, 1].
          network: the network to run; None for the primary one.

        Returns:
          Its logits.
        """
        net = network or self.primary
        if not self._fold_batchnorm:
            return net(x, training=False)
        folded = self.__dict__.setdefault("_folded_forwards", {})
        if net.name not in folded:
            folded[net.name] = fold_batchnorm(net)
        return folded[net.name](x)

    def forward_batch_stats(self, x):
        """Train-mode BN *without* updating moving statistics.

        PyTorch ``model.train()`` with ``track_running_stats=False``, ST's inner loop.
        ``stateless_call`` returns the would-be statistics, which are discarded; gradients still
        reach both the input and, inside a tape, the trainable variables.

        Args:
          x: NHWC float images in [0, 1].

        Returns:
          The primary network's logits.
        """
        return batch_stats_forward(self.primary, x)

    def forward_groups(self, xs, update_order=None, network=None):
        """``[f(x) for x in xs]`` with train-mode BN, each part with its own batch statistics.

        Each ``x`` is normalised as in separate forwards; the moving statistics are updated by
        the parts listed in ``update_order`` in that order (default: all, in order; ``()``:
        none, as ``forward_batch_stats``; a part listed twice updates twice, as a reference that
        forwards the same batch twice).  Equal-sized parts only.

        With ``group_forwards`` (the default) the parts run as one forward of their
        concatenation with per-part BatchNorm statistics (``batch_groups``): the same numbers,
        larger convolutions; without it, as separate forwards.

        Args:
          xs: a list of equal-sized batches of NHWC float images.
          update_order: part indices whose statistics update the moving ones, in order.
          network: the network to run; None for the primary one.

        Returns:
          A list of logits, one per part.
        """
        net = network or self.primary
        order = tuple(range(len(xs))) if update_order is None else tuple(update_order)
        if not self._group_forwards:
            zs = {}
            for g in order:  # train-mode forwards in update order; a repeat only updates
                z = net(xs[g], training=True)
                zs.setdefault(g, z)
            return [zs[i] if i in zs else batch_stats_forward(net, x) for i, x in enumerate(xs)]
        groups = batch_groups(len(xs), order)
        checked = self.__dict__.setdefault("_batch_groups_checked", set())
        if id(net) not in checked:
            check_batch_groups_reach(net)
            checked.add(id(net))
        joined = tf.concat(xs, axis=0)
        if not order:
            z = batch_stats_forward(net, joined, batch_groups=groups)
        else:
            z = net(joined, training=True, batch_groups=groups)
        return tf.split(z, len(xs), axis=0)

    # ---------------------------------------------------------------------- noise
    def draw_seed(self, index):
        """Stateless seed for the ``index``-th random draw of the current step.

        Keyed by (method seed, optimizer step, ``index``) (``tf_st.seeds.start_noise_key``).

        Args:
          index: the draw's index within the step.

        Returns:
          An int64 ``[2]`` seed tensor.
        """
        step = tf.constant(0, tf.int64)
        optimizer = getattr(self, "optimizer", None)
        # ``iterations`` exists from the optimizer's construction; its value is read when
        # the step runs (a check of ``optimizer.built`` here was made at trace time, and
        # an optimizer first built inside the traced step froze every step's draw at 0).
        if optimizer is not None:
            step = tf.cast(optimizer.iterations, tf.int64)
        return seeds.start_noise_key(self.seed, step, int(index))

    def start(self, x, start, index, std=0.001):
        """``x`` plus the ``index``-th draw of this step as ``start`` names it.

        (``tf_st.attacks.starts.random_start``, over the global batch, at ``epsilon``.)

        Args:
          x: this replica's NHWC float images in [0, 1].
          start: a name of ``tf_st.attacks.starts.STARTS``.
          index: the draw's index within the step.
          std: scale of a Gaussian start.

        Returns:
          The start point, shaped as ``x``.
        """
        return starts.random_start(x, start, epsilon=self.epsilon, std=std,
                                   seed=self.draw_seed(index), global_batch=True,
                                   norm=self.norm)

    def noise(self, x, kind, index, scale):
        """Global-batch noise for this replica's slice of ``x``.

        Args:
          x: this replica's images (the noise has its shape and dtype).
          kind: ``'normal'`` (``scale * N(0,1)``) or ``'uniform'`` (``U(-scale, scale)``).
          index: the draw's index within the step.
          scale: the noise scale.

        Returns:
          The noise, shaped as ``x``.
        """
        return starts.draw_like(x, kind, scale, self.draw_seed(index), global_batch=True)

    # ---------------------------------------------------------------- train step
    def before_outer_gradient(self, x, y, generated):
        """Runs every step hook's ``before_outer_gradient``, in order.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: the dict ``generate`` returned (gradients stopped).
        """
        for hook in self.step_hooks:
            hook.before_outer_gradient(self, x, y, generated)

    def after_apply(self, x, y, generated):
        """Runs every step hook's ``after_apply``, in reverse order.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: the dict ``generate`` returned (gradients stopped).
        """
        for hook in reversed(self.step_hooks):
            hook.after_apply(self, x, y, generated)

    def train_step(self, data):
        """One outer step: ``generate``, the hooks, the loss and every optimizer's update.

        The per-replica mean loss is divided by the replica count (``fit`` sums gradients
        across replicas) and scaled by each optimizer's ``scale_loss``.

        Args:
          data: ``(x, y)`` or ``(x, y, sample_weight)``; sample weights are ignored.

        Returns:
          The logs: each term of ``term_names`` and the training accuracies.
        """
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        generated = tf.nest.map_structure(tf.stop_gradient, self.generate(x, y))
        self.before_outer_gradient(x, y, generated)
        groups = self.optimizer_groups()
        with tf.GradientTape(persistent=len(groups) > 1) as tape:
            terms = dict(self.training_loss(x, y, generated))
            per_replica = terms["loss"] / tf.cast(
                tf.distribute.get_strategy().num_replicas_in_sync, terms["loss"].dtype)
            scaled = [opt.scale_loss(per_replica) for opt, _ in groups]
        for (opt, variables), loss in zip(groups, scaled):
            opt.apply(tape.gradient(loss, variables), variables)
        del tape
        self.after_apply(x, y, generated)
        return self._global_logs(self._update_metrics(y, terms))

    def _global_logs(self, logs):
        """Keras 3.15 averages logs across workers with ``strategy.reduce("MEAN", v,
        axis=0)``, which fails on scalars (one face of the Keras 3 multi-worker gap,
        keras-team/keras#20585): under several workers each log gets a leading axis of
        one, which that reduction averages away."""
        if not _multi_worker():
            return logs
        return {k: tf.expand_dims(v, 0) for k, v in logs.items()}

    def test_step(self, data):
        """Clean accuracy of every network and the primary network's cross-entropy.

        Args:
          data: ``(x, y)`` or ``(x, y, sample_weight)``; sample weights are ignored.

        Returns:
          The logs: ``loss`` and one accuracy per network.
        """
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = {}
        for name, net in self.networks.items():
            logits = net(x, training=False)
            self._accuracies[name].update_state(y, logits)
            if name == self.network_names[0]:
                self._trackers["loss"].update_state(
                    tf.reduce_mean(losses.cross_entropy(logits, y)))
            out[self._accuracies[name].name] = self._accuracies[name].result()
        out["loss"] = self._trackers["loss"].result()
        return self._global_logs(out)

    def _update_metrics(self, y, terms):
        clean_logits = terms.pop("clean_logits", None)
        for name in self.term_names:
            self._trackers[name].update_state(terms[name])
        out = {name: self._trackers[name].result() for name in self.term_names}
        if clean_logits is not None:
            if not isinstance(clean_logits, dict):
                clean_logits = {self.network_names[0]: clean_logits}
            for name, logits in clean_logits.items():
                metric = self._accuracies[name]
                metric.update_state(y, logits)
                out[metric.name] = metric.result()
        return out

    # Overrides a private Keras method (``keras.src.backend.tensorflow.trainer.
    # TensorFlowTrainer._maybe_symbolic_build``, called by ``fit``/``evaluate`` before
    # the first step):
    # Keras has no public hook for how compiled metrics are built.  Its presence and
    # keyword signature are pinned by tests/test_keras_internals.py.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3.15 builds compiled metrics from a first batch, which under a strategy
        it gets with ``strategy.reduce("MEAN", batch)`` -- a call that fails under
        MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...)", the
        Keras 3 multi-worker gap of keras-team/keras#20585).  Only the batch's structure
        and shapes matter there, so this hands it the first local replica's slice."""
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and strategy is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        """The loss-term trackers, then one accuracy per network."""
        return list(self._trackers.values()) + list(self._accuracies.values())


def keep_variable_access_order():
    """Turns off Grappler's dependency optimizer, for the process.

    Why the process and not the train function: TensorFlow's public switch
    (``tf.config.optimizer.set_experimental_options``) is process-wide, and neither
    ``tf.function`` nor Keras' ``compile``/``fit`` takes Grappler options.  A per-call
    ``ConfigProto`` reaches a function's optimizer only through the private, thread-local
    ``tensorflow.python.eager.context.context().function_call_options``, which would have to
    be set around every call Keras' fit loop makes of the train function (and on every
    worker thread); that was not done.  ``AdversarialMethod(...,
    keep_variable_access_order=False)`` leaves the optimizer as it is.

    Why: in the traced step a forward reads a network's weights, and that network's
    optimizer update is ordered after the read only by the control edge TensorFlow's
    automatic control dependencies add (the read's value need not feed that network's
    gradient: CAT's peer forwards feed only the peers' gradients).  The function graph
    has the edge; on TensorFlow 2.21 the optimized graph sometimes let the update run
    first (counts in benchmarks/RESULTS.md): the peer forward then
    read the updated last layer, and the collaborative term and the step changed from
    run to run.  With the dependency optimizer off, the traced step equals the eager
    one (``tests/test_cat_alp.py``).  Any other
    read and update of a variable that only a control edge orders could be hit the same
    way (AWP's weight moves, CAT's logging forward after the update); that was not
    observed, and the switch covers them too."""
    if tf.config.optimizer.get_experimental_options().get("dependency_optimization", True):
        tf.config.optimizer.set_experimental_options({"dependency_optimization": False})


def _multi_worker():
    from tf_st.distribute import num_workers
    return num_workers(tf.distribute.get_strategy()) > 1


def batch_mean(values):
    """Mean over this replica's examples (``train_step`` divides by the replica count).

    Args:
      values: per-example values ``[B]``.

    Returns:
      A scalar.
    """
    return tf.reduce_mean(values)


def batch_stats_forward(network, x, **call_kwargs):
    """``network(x)`` with batch statistics, moving statistics untouched.

    See ``AdversarialMethod.forward_batch_stats``.

    Args:
      network: a Keras model.
      x: NHWC float images in [0, 1].
      **call_kwargs: passed to the network's call (e.g. ``batch_groups``).

    Returns:
      The logits.
    """
    logits, _ = network.stateless_call(
        [v.value for v in network.trainable_variables],
        [v.value for v in network.non_trainable_variables], x, training=True,
        **call_kwargs)
    return logits
