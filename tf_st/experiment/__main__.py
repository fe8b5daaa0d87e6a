"""``python -m tf_st.experiment [flags]``: the training CLI (``tf_st.experiment.cli``)."""

from tf_st.experiment.cli import run_cli

run_cli(program="python -m tf_st.experiment")
