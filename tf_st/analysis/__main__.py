"""``python -m tf_st.analysis <name> [flags]``: see ``tf_st.analysis``."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_st.analysis.cli import main  # noqa: E402

sys.exit(main(sys.argv))
