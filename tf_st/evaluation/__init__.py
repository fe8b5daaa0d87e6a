"""Robustness evaluation of any model: ``evaluate(model, x, y, attacks=["clean", "pgd20",
"aa"])`` with a ``keras.Model``, a SavedModel or ``.keras`` path or a logits function
(``tf_st.evaluation.robustness``); reports in ``tf_st.evaluation.report``."""

from tf_st.attacks.specs import parse as parse_attack
from tf_st.evaluation.robustness import AttackAccuracy, EvaluationResult, evaluate

__all__ = ["AttackAccuracy", "EvaluationResult", "evaluate", "parse_attack"]
