"""AutoAttack (Croce & Hein 2020), ``standard`` version for L-inf, natively in TensorFlow.

``runner.evaluate`` runs the sequential worst-case evaluation (see its docstring);
``state`` holds the stage schedule and the resumable state file; the component
settings (``APGD``, ``APGDT``, ``FABT``, ``Square``; any ``Component``) are specs of
``tf_st.attacks.specs``, shared with the rest of the attack vocabulary.
"""

from tf_st.attacks.autoattack.runner import (VERSIONS, AttackLog, AutoAttackWarning, Result,
                                             attacks_for, check_state, evaluate)
from tf_st.attacks.specs import APGD, APGDT, FABT, STANDARD, Component, Square

__all__ = ["APGD", "APGDT", "FABT", "STANDARD", "Component", "Square", "VERSIONS", "AttackLog",
           "AutoAttackWarning", "Result", "attacks_for", "check_state",
           "evaluate"]
