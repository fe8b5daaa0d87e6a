r"""How often CAT's traced step differs from its eager step, with Grappler's dependency
optimizer on (TensorFlow's default) or off (what training does,
``tf_st.methods.base.keep_variable_access_order``).

  python -m benchmarks.cat_step_order --instances=16 --dependency_optimization=true

Each instance builds the two networks afresh (same seeds), compiles CAT with one SGD
optimizer and runs one ``train_on_batch`` (float64; ``tests.helpers.small_cat_step``, the
step the test compares too); it counts the instances whose weights differ from the eager
step's by more than 1e-12.
"""

import os

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_INSTANCES = flags.DEFINE_integer("instances", 16, "Traced steps compared.", lower_bound=1)
_DEP_OPT = flags.DEFINE_bool("dependency_optimization", True,
                             "Leave Grappler's dependency optimizer on (TensorFlow's default).")


def main(argv):
    del argv
    import keras
    import numpy as np
    from tests.helpers import small_cat_step
    from tf_st.methods import base

    if _DEP_OPT.value:
        base.keep_variable_access_order = lambda: None
    keras.config.set_floatx("float64")
    _, reference = small_cat_step(eager=True)
    differ = sum(any(np.abs(a - b).max() > 1e-12
                     for a, b in zip(small_cat_step(eager=False)[1], reference))
                 for _ in range(_INSTANCES.value))
    state = "on" if _DEP_OPT.value else "off"
    print(f"dependency optimizer {state}: {differ} of {_INSTANCES.value} traced CAT steps "
          "differ from the eager step")


if __name__ == "__main__":
    app.run(main)
