"""The run layer moved into the library: ``tf_st.experiment`` (``Settings``, ``resolve``,
``prepare_run_dir``, ``fit``, ``export_best``, ``final_evaluation``, ``run``).  Kept so
that ``from trainers import runner`` goes on working."""

from tf_st.experiment.config import Settings  # noqa: F401
from tf_st.experiment.runner import (ATTACK_KEYS, TRAINING_KEYS, Trained,  # noqa: F401
                                     export_best, final_evaluation, fit, holdout,
                                     make_deterministic, method_class, mixed_policy,
                                     prepare_run_dir, resolve, run)
