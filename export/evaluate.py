r"""``python -m export.evaluate`` = ``python -m tf_st.evaluation`` (kept for existing
scripts; see ``tf_st.evaluation.cli`` for the flags)."""

import sys

from tf_st.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
