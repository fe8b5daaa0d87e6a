"""Adversarial Weight Perturbation (AWP; Wu, Xia & Wang, "Adversarial Weight Perturbation
Helps Robust Generalization", NeurIPS 2020) as a step hook on any method.

Reference: csdongxian/AWP @ a7acf5d, ``AT_AWP/utils_awp.py`` and
``trades_AWP/utils_awp.py`` (docs/reference-implementations.md "AWP / Weight
perturbation").  As coded there:
* after the adversarial examples are made (with the unperturbed weights), a proxy copy
  of the model (weights *and* BN buffers, train mode) takes one plain SGD step (no
  momentum, no weight decay, lr ``proxy_lr``) on the *negated* method loss;
* for every weight tensor with more than one dimension (conv and dense kernels; BN
  scales and all biases excluded) ``d = ||w|| / (||w' - w|| + 1e-20) * (w' - w)``
  (Frobenius norms per tensor, ``w'`` the proxy's weight), and ``w += gamma * d``;
* the method's loss is then differentiated at the perturbed weights and the optimizer
  steps (weight decay also sees the perturbed weights);
* ``w -= gamma * d`` with the same ``d``.
AWP is active from epoch ``warmup`` on, counting the first epoch as ``first_epoch``:
TRADES-AWP's loop counts from 1 (``for epoch in range(args.start_epoch=1, ...)``,
``if epoch >= args.awp_warmup``: warm-up 10 perturbs from the tenth epoch), AT-AWP's
from 0 (``for epoch in range(start_epoch=0, ...)``: warm-up ``k`` perturbs from the
``(k+1)``-th epoch; its CIFAR preset is 0, always on).  The trainer's ``--awp`` presets
give ``first_epoch`` 0 for Madry and 1 for every other method.

What else the two official loops do around the step (forward order, the logging
forward, the train-mode attack) belongs to the method: the trainer's ``--awp`` presets
set those options of Madry and TRADES (their docstrings).  ST+AWP has no released code
(the ST paper's "+AWP" rows): ST keeps its own loop (attack with batch statistics, its
forward order) and takes TRADES-AWP's hook settings (gamma 0.005, warm-up from the
tenth epoch counted from 1, proxy lr 0.1), because ST's outer loss is TRADES-like and
TRADES-AWP is the AWP code closest to it.  MART, the collaborative objective, FAT and
CAT take the same, with no official pairing to follow.

Here the proxy is the model itself: its BN moving statistics are saved before the
proxy forwards and restored after them (the proxy's buffers are discarded in the
reference), and ``w' - w`` is computed as ``(w + proxy_lr * g) - w`` exactly as the
proxy's SGD step would produce it, ``g`` the gradient of the method's
``training_loss``.  The "method's loss" is each method's own outer loss
(Madry: CE(f(x_adv)); TRADES: the reference's ``CE(f(x)) + beta KL``; ST, MART, CAT: theirs;
the ST paper's +AWP rows have no released code,
docs/reference-implementations.md "ST-AT / AWP").

Under ``tf.distribute`` the proxy gradient is summed over replicas before the norms are
taken, so every replica moves its weights by the global-batch direction, as the
reference's ``nn.DataParallel`` proxy does.  Under mixed precision the loss is scaled
by the method's loss-scale optimizer before the gradient (the normalisation cancels
the scale).
"""

import threading

import tensorflow as tf

from tf_st.attacks.losses import as_dtype
from tf_st.methods.base import StepHook

EPS = 1e-20


def perturbable(method):
    """The weights AWP moves: trainable tensors of rank > 1 of every network.

    Args:
      method: the ``AdversarialMethod``.

    Returns:
      A list of variables.
    """
    return [v for net in method.networks.values() for v in net.trainable_variables
            if len(v.shape) > 1]


class AWP(StepHook):
    """Adversarial Weight Perturbation as a step hook (module docstring).

    Before the outer gradient the weights move by ``gamma`` times a normalised ascent
    direction of the method's loss; after the update they move back.

    Args:
      gamma: the relative size of the weight perturbation (>= 0).
      warmup: the first epoch in which the weights move (AWP's ``--awp-warmup``).
      proxy_lr: the proxy's SGD learning rate that makes the direction.
      steps_per_epoch: optimizer steps per epoch, needed to tell the epoch during a
        warm-up.
      first_epoch: 0 or 1: the number the first epoch has in the reference's count.

    Raises:
      ValueError: ``gamma < 0``, ``first_epoch`` not 0 or 1, or a warm-up without
        ``steps_per_epoch``.
    """
    def __init__(self, gamma, warmup=0, proxy_lr=0.01, steps_per_epoch=None, first_epoch=1):
        if gamma < 0:
            raise ValueError(f"awp gamma must be >= 0, got {gamma!r}")
        if first_epoch not in (0, 1):
            raise ValueError(f"awp first_epoch must be 0 or 1, got {first_epoch!r}")
        self.first_epoch = int(first_epoch)
        if warmup > self.first_epoch and not steps_per_epoch:
            raise ValueError("an AWP warm-up needs steps_per_epoch")
        self.gamma, self.warmup = float(gamma), int(warmup)
        self.proxy_lr, self.steps_per_epoch = float(proxy_lr), steps_per_epoch
        # The moves made before the gradient, until after_apply undoes them, per tracing
        # thread: MirroredStrategy traces its replicas' steps in concurrent threads.
        self._moves = {}

    def config(self):
        """The settings, for run directories and model cards.

        Returns:
          ``{'gamma', 'warmup', 'proxy_lr', 'first_epoch'}`` values.
        """
        return {"gamma": self.gamma, "warmup": self.warmup, "proxy_lr": self.proxy_lr,
                "first_epoch": self.first_epoch}

    @property
    def always(self):
        """No warm-up: the first epoch already counts as ``warmup`` or later."""
        return self.warmup <= self.first_epoch

    def _active(self, method):
        if self.always:
            return tf.constant(True)
        epoch = method.optimizer.iterations // self.steps_per_epoch + self.first_epoch
        return epoch >= self.warmup

    def directions(self, method, x, y, generated):
        """The weight perturbation directions, BN moving statistics left as they were.

        Args:
          method: the ``AdversarialMethod``.
          x: a batch of NHWC float images in [0, 1].
          y: its integer labels ``[B]``.
          generated: what the method's ``generate`` returned.

        Returns:
          ``[d]`` for ``perturbable(method)``, each scaled to its weight's norm.
        """
        weights = perturbable(method)
        buffers = [v for net in method.networks.values() for v in net.non_trainable_variables]
        saved = [tf.identity(v) for v in buffers]
        with tf.GradientTape() as tape:
            loss = method.training_loss(x, y, generated)["loss"]
            loss = method.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, weights)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        with tf.control_dependencies([g for g in grads if g is not None]):
            for v, s in zip(buffers, saved):
                v.assign(s)
        out = []
        for w, g in zip(weights, grads):
            g = tf.zeros_like(w) if g is None else tf.cast(g, w.dtype)
            # The proxy's plain SGD step on -loss, then its difference to the model.
            diff = (w + as_dtype(self.proxy_lr, w.dtype) * g) - w
            out.append(tf.norm(w) / (tf.norm(diff) + as_dtype(EPS, w.dtype)) * diff)
        return out

    def before_outer_gradient(self, method, x, y, generated):
        """Moves the weights by ``gamma`` times the directions (zero during a warm-up).

        Args:
          method: the ``AdversarialMethod``.
          x: a batch of NHWC float images in [0, 1].
          y: its integer labels ``[B]``.
          generated: what the method's ``generate`` returned.
        """
        weights = perturbable(method)

        def moves_now():
            return [as_dtype(self.gamma, w.dtype) * d
                    for w, d in zip(weights, self.directions(method, x, y, generated))]

        ctx = tf.distribute.get_replica_context()
        if self.always:
            moves = moves_now()
        elif ctx is not None and ctx.num_replicas_in_sync > 1:
            # Collectives cannot sit inside a tf.cond branch under MirroredStrategy: during
            # the warm-up the direction is computed and multiplied by 0.
            active = tf.cast(self._active(method), weights[0].dtype)
            moves = [active * m for m in moves_now()]
        else:
            moves = tf.cond(self._active(method), moves_now,
                            lambda: [tf.zeros_like(w) for w in weights])
        for w, m in zip(weights, moves):
            w.assign_add(m)
        self._moves[threading.get_ident()] = moves

    def after_apply(self, method, x, y, generated):
        """Moves the weights back by the moves ``before_outer_gradient`` made.

        Args:
          method: the ``AdversarialMethod``.
          x: a batch of NHWC float images in [0, 1].
          y: its integer labels ``[B]``.
          generated: what the method's ``generate`` returned.
        """
        for w, m in zip(perturbable(method), self._moves.pop(threading.get_ident())):
            w.assign_sub(m)
