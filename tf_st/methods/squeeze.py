"""Squeeze Training (ST), also published as CoAT.

Paper: Qizhang Li, Yiwen Guo, Wangmeng Zuo, Hao Chen, "Squeeze Training for Adversarial
Robustness", ICLR 2023 (Eq. 6, Algorithm 1).  Reference: qizhangli/ST-AT @ 82fc69f,
``losses.py:stat_loss`` (docs/reference-implementations.md "ST-AT / Training step").

What the reference does, and so what this does by default:
* starts ``x_adv = x + 0.001 N(0,1)`` and ``x_col = x + 0.001 N(0,1)``, independent and
  not clamped; exactly ``steps`` (K = 10) inner iterations;
* each iteration ranks (x, x_col, x_adv) by the true-class probability: ``up`` = lowest
  (the adversarial role), ``low`` = highest (the collaborative role), first index on
  ties; the inner objective is the regulariser between the two, with each KL target
  stop-gradiented;
* if the clean point is selected anywhere in the batch, both positions are re-assigned
  to their roles (adv may restart at x); otherwise positions stay and only gradients
  are routed by role -- quirk Q1: when ``up == col`` the adversarial point is stepped
  with the gradient computed at the collaborative point.  ``follow_roles=True`` gives
  the paper's Algorithm 1 instead (positions always follow roles);
* BatchNorm: batch statistics everywhere; the inner loop and the final collaborative
  forward leave moving statistics untouched, then the clean and the adversarial
  forwards update them, in that order;
* loss ``CE(f(x), y) + beta * reg(f(x_up), f(x_low))`` with roles recomputed on the
  final logits, gradients through all three forwards where a row is selected.

Deviations and additions:
* ``reg='js'`` and ``reg='l2'`` (paper Section 4.1) are not in the released code; see
  ``regularizers`` for their gradient convention.
* The batch-wide "clean point selected anywhere" decision spans the *global* batch
  under ``tf.distribute``, as under ST-AT's ``nn.DataParallel``: it is all-reduced across
  replicas.  Collectives cannot run inside a ``tf.while_loop`` under MirroredStrategy,
  so with more than one replica the K inner iterations are unrolled in the graph.
* Speed, with the same numbers (float64 equality in ``tests/test_fast_paths.py``): the
  clean forward runs once per step under a persistent tape, and an iteration that needs
  the clean point's input gradient back-propagates it (the reference forwards x again);
  the collaborative and adversarial forwards of each iteration run as one forward of
  their concatenation with per-part BatchNorm statistics, as do the three outer forwards
  (``AdversarialMethod.forward_groups``).
* ``init='uniform'`` gives ST-RST's ``x + U(-eps, eps)`` start and
  ``forward_order='adv_nat'`` its adversarial-then-clean outer forwards
  (docs/reference-implementations.md "ST-AT / ST-RST"); both are
  the ``--unlabeled`` (RST) presets.
* ``--awp``: ST-AT releases no AWP code (the paper's "+AWP" rows).  ST keeps its own
  loop under AWP (attack with batch statistics and no update, its forward order, no
  logging forward) and takes TRADES-AWP's hook settings (``tf_st.methods.awp``): ST's
  outer loss is TRADES-like, and TRADES-AWP is the closest official AWP code.
"""

import dataclasses

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.pgd import ascent_direction, project
from tf_st.methods import regularizers
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam


def select_roles(z_nat, z_col, z_adv, y):
    """Per example, which of (nat=0, col=1, adv=2) takes each role.

    ``up``: the lowest true-class probability; ``low``: the highest; first index on ties.

    Args:
      z_nat: clean logits ``[B, classes]``.
      z_col: collaborative logits ``[B, classes]``.
      z_adv: adversarial logits ``[B, classes]``.
      y: integer labels ``[B]``.

    Returns:
      ``(up, low)``: int ``[B]`` indices (gradients stopped).
    """
    p = tf.stack([losses.true_class_probability(z, y) for z in (z_nat, z_col, z_adv)], axis=1)
    p = tf.stop_gradient(p)
    return losses.first_argmin(p, axis=1), losses.first_argmax(p, axis=1)


def gather_role(stacked, role):
    """Row ``i`` of ``stacked[:, role[i]]`` for a ``[B, 3, ...]`` stack.

    Args:
      stacked: ``[B, 3, ...]`` (the nat, col, adv logits stacked on axis 1).
      role: int ``[B]`` indices into axis 1.

    Returns:
      ``[B, ...]``.
    """
    return tf.gather(stacked, role, axis=1, batch_dims=1)


@dataclasses.dataclass(frozen=True)
class STHParams(HParams):
    beta: float = hparam(6.0, "Regulariser weight (paper: 6 CIFAR-10, 4 CIFAR-100, 8 SVHN).",
                         minimum=0)
    reg: str = hparam("symmetric_kl", "Output-gap regulariser (paper Section 4.1).",
                      choices=sorted(regularizers.REGULARIZERS), what="regulariser")
    follow_roles: bool = hparam(False, "Paper Algorithm 1 (positions always follow roles) "
                                "instead of the reference code's behaviour (quirk Q1).")
    init: str = hparam("normal", "Inner-loop start: x + 0.001 N(0,1) (ST-AT) or "
                       "x + U(-eps, eps) (ST-RST).", choices=("normal", "uniform"))
    init_std: float = hparam(0.001, "Standard deviation of the normal start.", minimum=0)
    forward_order: str = hparam("nat_adv", "Order of the BN-updating outer forwards: clean "
                                "then adversarial (ST-AT) or adversarial then clean (ST-RST).",
                                choices=("nat_adv", "adv_nat"))


class SqueezeTraining(AdversarialMethod):
    """Squeeze Training (ST; Li et al., ICLR 2023; module docstring).

    ``generate`` finds the adversarial and the collaborative point of each example;
    ``training_loss`` squeezes the up-role and low-role logits together with ``reg``.

    Args:
      networks: the classifier (a Keras model from NHWC images in [0, 1] to logits).
      **kwargs: the fields of ``STHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter or a value out of range.
    """
    key = "st"
    # ce_upper / ce_lower: CE of the up-role and low-role points (logged, not trained on;
    # train_stat.py's statistics, ST paper Fig. 8).
    term_names = ("loss", "ce", "reg", "ce_upper", "ce_lower")
    HParams = STHParams
    # L2: ``ascent_direction`` (g / ||g||_2) steps projected onto the L2 ball then [0, 1];
    # the normal start stays x + init_std N(0,1), the uniform one is uniform in the L2 ball.
    norms = ("Linf", "L2")

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        self.reg_fn = regularizers.get(self.reg)

    def generate(self, x, y, init=None):
        """The adversarial and collaborative examples of ST's joint inner loop.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{'adv': x_adv, 'col': x_col}``, NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        if init is None:
            init = {name: self.start(x, self.init, k, std=self.init_std)
                    for k, name in enumerate(("adv", "col"))}
        return self._squeeze(x, y, tf.cast(init["adv"], x.dtype), tf.cast(init["col"], x.dtype))

    def _squeeze(self, x, y, x_adv, x_col):
        # The clean forward is the same in every iteration (same weights, same batch, so
        # the same batch statistics): it runs once, its activations are kept, and an
        # iteration that needs the clean point's input gradient runs only the backward
        # pass (the reference forwards x again for it: one forward per iteration saved).
        with tf.GradientTape(persistent=True) as nat_tape:
            nat_tape.watch(x)
            z_nat_live = self.forward_batch_stats(x)
        z_nat = tf.stop_gradient(z_nat_live)
        step = losses.as_dtype(self.step_size, x.dtype)

        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1

        def anywhere(flag):
            if replicas == 1:
                return flag
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(flag, tf.int32)) > 0

        def body(k, x_adv, x_col):
            z_nat_k = tf.identity(z_nat)
            with tf.GradientTape() as tape:
                tape.watch([z_nat_k, x_col, x_adv])
                # Two batch-statistics forwards (no moving-statistic update), as one.
                z_col, z_adv = self.forward_groups([x_col, x_adv], update_order=())
                up, low = select_roles(z_nat, z_col, z_adv, y)
                zs = tf.stack([z_nat_k, z_col, z_adv], axis=1)
                inner = tf.reduce_sum(self.reg_fn(gather_role(zs, up), gather_role(zs, low)))
            g_z_nat, g_col_in, g_adv_in = tape.gradient(
                inner, [z_nat_k, x_col, x_adv], unconnected_gradients=tf.UnconnectedGradients.ZERO)
            use_nat = anywhere(tf.reduce_any((up == 0) | (low == 0)))
            # Where no row selects the clean point its gradient is zero (the reference's
            # else branch); the backward pass is skipped then -- on one replica: with
            # several, it may hold collectives (--sync_batchnorm), which cannot run
            # inside a tf.cond, so it runs and yields exact zeros.
            def nat_gradient():
                return nat_tape.gradient(z_nat_live, x, output_gradients=g_z_nat)
            g_nat = nat_gradient() if replicas > 1 else tf.cond(
                use_nat, nat_gradient, lambda: tf.zeros_like(x))
            gs = tf.stack([g_nat, g_col_in, g_adv_in], axis=1)
            g_adv, g_col = gather_role(gs, up), gather_role(gs, low)
            xs = tf.stack([x, x_col, x_adv], axis=1)
            reassign = tf.logical_or(use_nat, self.follow_roles)
            base_adv = tf.where(reassign, gather_role(xs, up), x_adv)
            base_col = tf.where(reassign, gather_role(xs, low), x_col)
            x_col = project(base_col + step * ascent_direction(g_col, self.norm), x,
                            self.epsilon, self.norm)
            x_adv = project(base_adv + step * ascent_direction(g_adv, self.norm), x,
                            self.epsilon, self.norm)
            return k + 1, x_adv, x_col

        if replicas > 1:
            for k in range(self.steps):
                _, x_adv, x_col = body(k, x_adv, x_col)
        elif self.steps > 0:
            _, x_adv, x_col = tf.while_loop(lambda k, *_: k < self.steps, body,
                                            (tf.constant(0), x_adv, x_col))
        return {"adv": x_adv, "col": x_col}

    def training_loss(self, x, y, generated):
        # One forward: the collaborative part with batch statistics and no update, then
        # the updates of the clean and adversarial parts in the reference's order.
        """ST's outer loss: ``CE(f(x), y) + beta * reg(up-role, low-role)``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, ``ce``, ``reg``, ``ce_upper``, ``ce_lower`` (logged only) and
          ``clean_logits``.
        """
        order = (2, 1) if self.forward_order == "adv_nat" else (1, 2)
        z_col, z_nat, z_adv = self.forward_groups([generated["col"], x, generated["adv"]],
                                                  update_order=order)
        up, low = select_roles(z_nat, z_col, z_adv, y)
        zs = tf.stack([z_nat, z_col, z_adv], axis=1)
        ce = batch_mean(losses.cross_entropy(z_nat, y))
        z_up, z_low = gather_role(zs, up), gather_role(zs, low)
        reg = batch_mean(self.reg_fn(z_up, z_low))
        return {"loss": ce + self.beta * reg, "ce": ce, "reg": reg, "clean_logits": z_nat,
                "ce_upper": batch_mean(losses.cross_entropy(tf.stop_gradient(z_up), y)),
                "ce_lower": batch_mean(losses.cross_entropy(tf.stop_gradient(z_low), y))}
