"""``python -m tf_st.analysis <name> [flags]``: see ``tf_st.analysis``."""

import sys

from tf_st.analysis.cli import main

sys.exit(main(sys.argv))
