"""``python -m tf_st.evaluation``: see ``tf_st.evaluation.cli``."""

import sys

from tf_st.evaluation.cli import main

sys.exit(main(sys.argv))
