"""Attacks shared by training and evaluation: pure functions of a logits function."""

from tf_st.attacks import apgd, autoattack, losses
from tf_st.attacks.fab import fab_targeted
from tf_st.attacks.pgd import cw_inf, fgsm, pgd, project
from tf_st.attacks.square import square_linf

__all__ = ["apgd", "autoattack", "losses", "cw_inf", "fab_targeted", "fgsm", "pgd", "project",
           "square_linf"]
