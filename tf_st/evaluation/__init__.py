"""Robustness evaluation of any model: ``evaluate(model, x, y, attacks=["clean", "pgd20",
"aa"])`` with a ``keras.Model``, a SavedModel or ``.keras`` path or a logits function
(``tf_st.evaluation.robustness``); reports in ``tf_st.evaluation.report``;
``audit(model, x, y)`` checks an evaluation for gradient masking
(``tf_st.evaluation.audit``: the name ``tf_st.evaluation.audit`` is the function, its
module is imported with ``from tf_st.evaluation.audit import ...``)."""

from tf_st.attacks.specs import parse as parse_attack
from tf_st.evaluation.audit import AuditResult, Check, audit
from tf_st.evaluation.robustness import AttackAccuracy, EvaluationResult, evaluate

__all__ = ["AttackAccuracy", "AuditResult", "Check", "EvaluationResult", "audit", "evaluate",
           "parse_attack"]
