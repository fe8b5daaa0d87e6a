"""Robustness evaluation of any logits function."""

from tf_st.attacks.specs import parse as parse_attack
from tf_st.evaluation.robustness import AttackAccuracy, EvaluationResult, evaluate

__all__ = ["AttackAccuracy", "EvaluationResult", "evaluate", "parse_attack"]
