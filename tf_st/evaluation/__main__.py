"""``python -m tf_st.evaluation``: see ``tf_st.evaluation.cli``."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_st.evaluation.cli import main  # noqa: E402

sys.exit(main(sys.argv))
