import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

@pytest.fixture
def float64():
    """Runs a test with Keras' floatx set to float64 (models must be built inside)."""
    # Keras fixes its default dtype policy when the first layer is created, after which
    # set_floatx alone no longer reaches new layers: set both, restore both.
    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old_floatx)
    keras.config.set_dtype_policy(old_policy)
