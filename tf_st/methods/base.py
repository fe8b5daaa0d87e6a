"""The one ``keras.Model`` wrapper every training method builds on.

A method owns the classifier and implements two pure pieces:

* ``generate(x, y, init=None)`` -> dict of the perturbed inputs it trains on,
* ``training_loss(x, y, generated)`` -> dict with ``loss`` (the differentiated total,
  a mean over *this replica's* examples) and its logged terms.  A method may add
  ``clean_logits`` to the dict; it feeds the training-accuracy metric and is not logged.

``train_step`` (written once, here) composes them with the optimizer update.  It is
responsible for what every method would otherwise get wrong on its own:

* replica scaling: ``fit`` sums gradients across replicas, so the per-replica mean is
  divided by ``num_replicas_in_sync`` (Keras only does this for built-in losses);
* mixed precision: ``optimizer.scale_loss`` before the tape's gradient;
* reproducible, replica-invariant noise: random starts are stateless draws keyed by
  (seed, optimizer step, draw index) over the *global* batch, of which each replica
  takes its slice, so 2 replicas draw exactly what one device would;
* the three BatchNorm modes the references use (see ``forward_*``).
"""

import keras
import tensorflow as tf

from tf_st.attacks import losses


class AdversarialMethod(keras.Model):
    """Base class; subclasses set ``key`` and ``term_names`` and implement
    ``generate`` and ``training_loss``."""

    key = None
    term_names = ("loss",)

    def __init__(self, classifier, *, epsilon=8 / 255, step_size=2 / 255, steps=10, seed=0,
                 name=None, **kwargs):
        super().__init__(name=name or self.key or "method", **kwargs)
        _check_unit_interval("epsilon", epsilon)
        _check_unit_interval("step_size", step_size)
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        self.classifier = classifier
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.seed = int(seed)
        self._trackers = {n: keras.metrics.Mean(name=n) for n in self.term_names}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # ------------------------------------------------------------------ interface
    def generate(self, x, y, init=None):
        raise NotImplementedError

    def training_loss(self, x, y, generated):
        raise NotImplementedError

    def hparams(self):
        """The method's hyperparameters, as written into run directories and model cards."""
        return {"epsilon": self.epsilon, "step_size": self.step_size, "steps": self.steps}

    # --------------------------------------------------------------- forward modes
    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def forward_train(self, x):
        """Train-mode BN: batch statistics, moving statistics updated (PyTorch
        ``model.train()``)."""
        return self.classifier(x, training=True)

    def forward_eval(self, x):
        """Inference-mode BN (PyTorch ``model.eval()``), as the TRADES/MART attacks use."""
        return self.classifier(x, training=False)

    def forward_batch_stats(self, x):
        """Train-mode BN *without* updating moving statistics (PyTorch ``model.train()``
        with ``track_running_stats=False``, ST's inner loop).  ``stateless_call`` returns
        the would-be statistics, which are discarded; gradients still reach both the
        input and, inside a tape, the trainable variables."""
        logits, _ = self.classifier.stateless_call(
            [v.value for v in self.classifier.trainable_variables],
            [v.value for v in self.classifier.non_trainable_variables],
            x, training=True)
        return logits

    # ---------------------------------------------------------------------- noise
    def draw_seed(self, index):
        """Stateless seed for the ``index``-th random draw of the current step."""
        step = tf.constant(0, tf.int64)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and optimizer.built:
            step = tf.cast(optimizer.iterations, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), step * 64 + int(index)])

    def noise(self, x, kind, index, scale):
        """Global-batch noise for this replica's slice of ``x``: ``scale * N(0,1)``
        (``kind='normal'``) or ``U(-scale, scale)`` (``kind='uniform'``)."""
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        replica_id = ctx.replica_id_in_sync_group if ctx is not None else 0
        batch = tf.shape(x)[0]
        shape = tf.concat([[batch * replicas], tf.shape(x)[1:]], axis=0)
        seed = self.draw_seed(index)
        scale = losses.as_dtype(scale, x.dtype)
        if kind == "normal":
            full = scale * tf.random.stateless_normal(shape, seed, dtype=x.dtype)
        elif kind == "uniform":
            full = tf.random.stateless_uniform(shape, seed, -scale, scale, dtype=x.dtype)
        else:
            raise ValueError(f"unknown noise kind {kind!r}")
        start = tf.cast(replica_id, tf.int32) * batch
        return full[start:start + batch]

    # ---------------------------------------------------------------- train step
    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        generated = tf.nest.map_structure(tf.stop_gradient, self.generate(x, y))
        variables = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            terms = dict(self.training_loss(x, y, generated))
            scaled = terms["loss"] / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync,
                                             terms["loss"].dtype)
            scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._update_metrics(y, terms)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.forward_eval(x)
        self._accuracy.update_state(y, logits)
        self._trackers["loss"].update_state(tf.reduce_mean(losses.cross_entropy(logits, y)))
        return {"loss": self._trackers["loss"].result(), "accuracy": self._accuracy.result()}

    def _update_metrics(self, y, terms):
        clean_logits = terms.pop("clean_logits", None)
        for name in self.term_names:
            self._trackers[name].update_state(terms[name])
        out = {name: self._trackers[name].result() for name in self.term_names}
        if clean_logits is not None:
            self._accuracy.update_state(y, clean_logits)
            out["accuracy"] = self._accuracy.result()
        return out

    @property
    def metrics(self):
        return list(self._trackers.values()) + [self._accuracy]


def batch_mean(values):
    """Mean over this replica's examples (``train_step`` divides by the replica count)."""
    return tf.reduce_mean(values)


def _check_unit_interval(name, value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(
            f"{name}={value!r} is outside [0, 1]: perturbation sizes are in [0, 1] image "
            f"units (8/255 = {8 / 255:.5f}, not 8)")
