"""``python -m tf_st.experiment [flags]``: the training CLI (``tf_st.experiment.cli``)."""


import sys

from tf_st.cli import prepare_environment

prepare_environment(sys.argv[1:])

from tf_st.experiment.cli import run_cli  # noqa: E402

run_cli()
