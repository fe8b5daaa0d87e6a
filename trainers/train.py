r"""The one trainer: ``python -m trainers.train --method=st --dataset=svhn``.

The CLI lives in the library (``tf_st.experiment.cli``; also ``python -m
tf_st.experiment`` and the console script ``tf-st train``); this module keeps the
documented entry point and the names older code imports from it.
"""

from tf_st.experiment.cli import (FLAGS, UsageError, _ATTACK, _METHOD,  # noqa: F401
                                  _METHOD_FLAG_OWNERS, _METHOD_FLAGS, _OVERWRITE, _RUN,
                                  cli_main, flagfile_text, main_for, run_cli, run_in_process,
                                  settings_from_flags)

if __name__ == "__main__":
    run_cli()
