"""tf_st: adversarial training (Squeeze Training and its baselines) and robustness
evaluation for TensorFlow 2 / Keras 3.

Conventions shared by every sub-package:
  * images are NHWC float tensors in [0, 1]; any normalisation lives inside the model;
  * epsilons and step sizes are in the same [0, 1] units (8/255, not 8);
  * a "logits function" is any callable mapping such a batch to unnormalised logits.
"""

__version__ = "0.2.0"  # the one version string (pyproject.toml reads it)

import sys as _sys

if _sys.argv[:1] == ["-m"]:
    # ``python -m tf_st.<command>`` is starting: its package imports TensorFlow before the
    # command's own module runs, so the start-up banners are held back here.
    from tf_st.cli import quiet_startup as _quiet_startup
    _quiet_startup(_sys.argv[1:])
