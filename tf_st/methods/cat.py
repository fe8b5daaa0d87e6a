"""Collaborative Adversarial Training (CAT; Liu et al., "Collaborative Adversarial
Training", 2022/2023): networks trained together, each by its own adversarial method,
each distilling its peers' (detached) predictions on its own adversarial examples.

Reference: liuxingbin/CAT @ 2325fa1, ``train_cat.py``
(docs/reference-implementations.md "CAT").  The released code trains the pair TRADES +
ALP; as coded there, and so here by default (``members='trades,alp'``):
* one network per member, one SGD optimizer per network (the runner builds one
  ``TorchSGD`` per network), one backward of the total loss;
* attacks in inference-mode BN: the TRADES network's KL attack from ``x + 0.001 N(0,1)``,
  the ALP (and AT) network's PGD-CE from ``x + U(-eps, eps)`` clamped to [0, 1];
* train-mode forwards in the coded order: ``c1 = f1(x)``, ``a1 = f1(x_adv1)``,
  ``a2 = f2(x_adv2)``, ``c2 = f2(x)``, then the peer forwards ``f1(x_adv2)``,
  ``f2(x_adv1)`` (which also update BN moving statistics);
* ``L1 = CE(c1, y) + beta KL_bm(p(c1) || p(a1))`` (TRADES, beta 6, target not detached),
  ``L2 = 0.5 (CE(a2, y) + CE(c2, y)) + mean((a2 - c2)^2)`` (ALP),
  ``L3 = KL_bm(sg(p(f2(x_adv1))) || p(a1)) + KL_bm(sg(p(f1(x_adv2))) || p(a2))`` (T = 1),
  ``loss = alpha (L1 + L2) + (1 - alpha) L3`` with alpha = 1/20;
* after the optimizer steps the reference runs ``f1(x)`` once more in train mode (for
  logging), which updates network 1's BN moving statistics with the clean batch again:
  reproduced (``log_forward=True``; ``False`` skips it);
* selection: each network by its own robust accuracy, PGD-10 (step 2/255, random start)
  on the evaluation set, a new best only if strictly better (``model{1,2}_best.pth``).

Generalisation (the paper's AT-TRADES, AT-ALP, TRADES-ALP and AT-ALP-TRADES): members
are any two or three distinct keys of {madry, trades, alp}, in order.  An AT (``madry``)
member is trained on ``CE(f(x_adv), y)`` with the PGD-CE attack above (the paper's
Eq. 1; the released code has no AT member).  The paper gives no formula for three
networks; here each network distils the *mean* of its peers' KL terms, which for two
networks is exactly the coded L3.  Member forwards follow the member order (a member's
own forwards as in the pair above: TRADES clean then adversarial, ALP adversarial then
clean, AT adversarial), then the peer forwards with the evaluating network in member
order.  Each member's attack and loss are its registered method's (``MEMBER_TABLE``:
``madry.madry_loss``, ``trades.trades_loss``, ``alp.alp_loss``, TRADES' attack objective
``losses.kl_from_clean``); CAT adds the weighting and the peer terms.  ``archs`` gives
the networks different architectures (the paper's ResNet-18 + WRN-34-10 setting); empty
means every network uses the run's ``--arch``.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from tf_st.attacks import losses
from tf_st.attacks.specs import PGD
from tf_st.methods.alp import ALP, alp_loss
from tf_st.methods.base import AdversarialMethod, batch_mean
from tf_st.methods.hparams import HParams, hparam
from tf_st.methods.madry import MadryAT, madry_loss
from tf_st.methods.trades import TRADES, trades_loss


@dataclasses.dataclass(frozen=True)
class Member:
    """How CAT trains one network as the registered ``method`` does.

    Attributes:
      method: the method class the member follows (``MadryAT``, ``TRADES``, ``ALP``).
      start: the attack's start (``tf_st.attacks.starts``).
      attack_loss: None for the batch CE; else ``attack_loss(logits_fn, x)`` gives the
        attack's loss (TRADES' KL from the clean logits).
      forwards: the member's own train-mode forwards in the reference order (``'nat'``:
        ``f(x)``, ``'adv'``: ``f(x_adv)``).
      loss: ``loss(cat, logits, y)`` from those logits (``logits[part]``), the method's own
        loss function.
    """
    method: type
    start: str
    attack_loss: Optional[Callable]
    forwards: tuple
    loss: Callable


def _madry_member_loss(cat, z, y):
    return madry_loss([z["adv"]], y)


def _trades_member_loss(cat, z, y):
    return trades_loss(z["nat"], [z["adv"]], y, cat.beta)[0]


def _alp_member_loss(cat, z, y):
    return alp_loss(z["adv"], z["nat"], y)[2]


# CAT's attack_pgd (PGD-CE from a clamped uniform start) for AT and ALP; TRADES' KL
# attack from x + 0.001 N(0, 1).
MEMBER_TABLE = {m.method.key: m for m in (
    Member(MadryAT, "uniform_clamped", None, ("adv",), _madry_member_loss),
    Member(TRADES, "normal", losses.kl_from_clean, ("nat", "adv"), _trades_member_loss),
    Member(ALP, "uniform_clamped", None, ("adv", "nat"), _alp_member_loss),
)}
MEMBERS = tuple(MEMBER_TABLE)


def _members(value):
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _check_members(value):
    members = _members(value)
    if not 2 <= len(members) <= 3 or len(set(members)) != len(members) \
            or not set(members) <= set(MEMBERS):
        raise ValueError(f"members={value!r}: give two or three distinct methods of "
                         f"{list(MEMBERS)}, comma-separated (e.g. 'trades,alp')")


def _check_archs(value):
    if value:
        from tf_st import models
        unknown = [a for a in _members(value) if a not in models.ARCHS]
        if unknown:
            raise ValueError(f"unknown arch {unknown} in archs; choose from {sorted(models.ARCHS)}")


@dataclasses.dataclass(frozen=True)
class CATHParams(HParams):
    members: str = hparam("trades,alp", "Collaborating methods, one network each, of "
                          "madry, trades, alp (the released code: trades,alp).",
                          flag="cat_members", check=_check_members)
    alpha: float = hparam(1 / 20, "Weight of the members' own losses; 1 - alpha weights "
                          "the peer distillation (CAT: 1/20).", unit=True, flag="cat_alpha")
    beta: float = hparam(6.0, "TRADES member's KL weight (CAT code: 6).", minimum=0)
    archs: str = hparam("", "Per-member architectures, comma-separated (default: --arch "
                        "for every network).", flag="cat_archs", check=_check_archs)
    log_forward: bool = hparam(True, "Reproduce the reference's extra train-mode f1(x) "
                               "after the update (BN statistics of network 1).",
                               flag="cat_log_forward")

    def __post_init__(self):
        super().__post_init__()
        archs = _members(self.archs)
        if archs and len(archs) != len(_members(self.members)):
            raise ValueError(f"archs={self.archs!r} names {len(archs)} architectures for "
                             f"{len(_members(self.members))} members")


class CAT(AdversarialMethod):
    """Collaborative Adversarial Training (CAT; module docstring).

    Two or three networks, each trained by its member method, distil each other's outputs on
    their adversarial examples; the networks are named after the members.

    Args:
      networks: ``{member key: network}`` in the order of ``members``.
      **kwargs: the fields of ``CATHParams`` and the constructor options of
        ``AdversarialMethod`` (``seed``, ``group_forwards``, ...).

    Raises:
      ValueError: an unknown hyperparameter, a value out of range, or networks not
        named after the members.
    """
    key = "cat"
    HParams = CATHParams
    selection_attack = "pgd10"
    # L2: every member's PGD steps and projects in the L2 ball (starts in the L2 ball).
    norms = ("Linf", "L2")
    selection_strict = True

    def __init__(self, networks, **kwargs):
        super().__init__(networks, **kwargs)
        if tuple(self.network_names) != self.member_keys:
            raise ValueError(f"CAT with members {self.member_keys} needs networks named "
                             f"{list(self.member_keys)}, got {list(self.network_names)}")
        self.member_specs = {m: MEMBER_TABLE[m] for m in self.member_keys}
        # Each member's attack; a loss given by a function is set per batch.
        self.attacks = {m: PGD(epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                               loss="ce", start=member.start, norm=self.norm)
                        for m, member in self.member_specs.items()}

    @property
    def member_keys(self):
        """The members' method keys, in order (also the network names)."""
        return _members(self.hp.members)

    @property
    def term_names(self):
        """``loss``, one ``<member>_loss`` per member, ``collab``."""
        return ("loss",) + tuple(f"{m}_loss" for m in self.member_keys) + ("collab",)

    @classmethod
    def network_archs(cls, arch, hparams):
        """One network per member.

        Args:
          arch: the run's ``--arch`` (used for every member unless ``archs`` is set).
          hparams: the method's hyperparameters (a dict).

        Returns:
          ``{member key: architecture key}``.
        """
        hp = CATHParams.build(cls.key, dict(hparams))
        members = _members(hp.members)
        archs = _members(hp.archs) or (arch,) * len(members)
        return dict(zip(members, archs))

    def _eval(self, name):
        net = self.networks[name]
        return lambda t: self.forward_eval(t, network=net)

    def generate(self, x, y, init=None):
        """Each member's attack on its own network (inference-mode BN).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{member key: x_adv}``, NHWC in [0, 1].
        """
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        out = {}
        for k, (m, member) in enumerate(self.member_specs.items()):
            forward = self._eval(m)
            if init is not None:
                start = tf.cast(init[m], x.dtype)
            else:
                start = self.start(x, member.start, k)
            attack = self.attacks[m]
            if member.attack_loss is not None:
                attack = dataclasses.replace(attack, loss=member.attack_loss(forward, x))
            out[m] = attack.perturb(forward, x, y, x_init=start)
        return out

    def _member_loss(self, m, x, y, x_adv):
        """``(loss, adversarial logits, clean logits or None)`` of one member, with its
        forwards in the reference order."""
        member, net = self.member_specs[m], self.networks[m]
        inputs = {"nat": x, "adv": x_adv}
        z = {part: net(inputs[part], training=True) for part in member.forwards}
        return member.loss(self, z, y), z["adv"], z.get("nat")

    def training_loss(self, x, y, generated):
        """``alpha * sum of the members' own losses + (1 - alpha) * peer distillation``.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss``, one ``<member>_loss`` per member, ``collab`` and ``clean_logits`` (a
          dict per network).
        """
        own, adv_logits, clean = {}, {}, {}
        for m in self.member_keys:
            own[m], adv_logits[m], z_nat = self._member_loss(m, x, y, generated[m])
            if z_nat is not None:
                clean[m] = z_nat
        peer = {}  # (evaluating network, owner of the adversarial batch) -> logits
        for e in self.member_keys:
            for o in self.member_keys:
                if o != e:
                    peer[(e, o)] = self.networks[e](generated[o], training=True)
        collab = []
        for o in self.member_keys:
            kls = [batch_mean(losses.kl_divergence(tf.stop_gradient(peer[(e, o)]), adv_logits[o]))
                   for e in self.member_keys if e != o]
            collab.append(tf.add_n(kls) / tf.cast(len(kls), kls[0].dtype))
        collab = tf.add_n(collab)
        total_own = tf.add_n(list(own.values()))
        alpha = losses.as_dtype(self.alpha, total_own.dtype)
        terms = {"loss": alpha * total_own + (1 - alpha) * collab, "collab": collab,
                 "clean_logits": clean}
        terms.update({f"{m}_loss": own[m] for m in self.member_keys})
        return terms

    def after_apply(self, x, y, generated):
        """Runs the step hooks, then the reference's extra train-mode ``f1(x)`` (``log_forward``).

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.
        """
        super().after_apply(x, y, generated)
        if self.log_forward:
            self.primary(x, training=True)
