"""Attacks shared by training and evaluation: one vocabulary of frozen specs
(``specs``: ``PGD(epsilon, step_size, steps, ...)``, ``parse("pgd20")``, ``spec.perturb``
for training, ``spec.run`` for evaluation) over pure, graph-safe functions of a logits
function (``pgd``, ``apgd``, ``fab``, ``square``) and AutoAttack."""

from tf_st.attacks import apgd, autoattack, losses, specs, starts
from tf_st.attacks.fab import fab_targeted
from tf_st.attacks.pgd import cw_inf, early_stopped_pgd, fgsm, pgd, project
from tf_st.attacks.specs import (APGD, APGDT, ATTACK_NAMES, FABT, FGSM, PGD, AttackResult,
                                 AutoAttack, Clean, EarlyStoppedPGD, EveryIteratePGD, Square,
                                 describe_names, parse)
from tf_st.attacks.square import square_linf

__all__ = ["APGD", "APGDT", "ATTACK_NAMES", "FABT", "FGSM", "PGD", "AttackResult", "AutoAttack", "Clean",
           "EarlyStoppedPGD", "EveryIteratePGD", "Square", "apgd", "autoattack", "cw_inf", "describe_names", "early_stopped_pgd", "fab_targeted", "fgsm",
           "losses", "parse", "pgd", "project", "specs", "square_linf", "starts"]
