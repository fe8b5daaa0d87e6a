"""Attacks shared by training and evaluation: pure functions of a logits function."""

from tf_st.attacks import losses
from tf_st.attacks.pgd import cw_inf, fgsm, normal_start, pgd, project, uniform_start

__all__ = ["losses", "cw_inf", "fgsm", "normal_start", "pgd", "project", "uniform_start"]
