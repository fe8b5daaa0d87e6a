"""The run layer: one experiment from settings to an evaluated export, from Python.

    from tf_st import experiment
    reports = experiment.run(experiment.Settings(method="st", dataset="cifar10_mini"))

``Settings`` declares every run setting once (``config``); ``resolve`` fills the paper
presets and validates; ``run`` takes the run directory, trains (resuming), exports the
best model and evaluates the export, returning ``{network: report}``.  The CLIs
(``python -m trainers.train``, ``python -m tf_st.experiment``, ``tf-st train``), the
sweep (``tf_st.analysis.sweep``) and the tests all go through it.
"""

from tf_st.experiment.config import Settings
from tf_st.experiment.runner import (export_best, final_evaluation, fit, prepare_run_dir,
                                     resolve, run)

__all__ = ["Settings", "export_best", "final_evaluation", "fit", "prepare_run_dir", "resolve",
           "run"]
