"""Robustness evaluation of any logits function."""

from tf_st.evaluation.robustness import (AttackResult, AttackSpec, EvaluationResult, evaluate,
                                         parse_attack)

__all__ = ["AttackResult", "AttackSpec", "EvaluationResult", "evaluate", "parse_attack"]
