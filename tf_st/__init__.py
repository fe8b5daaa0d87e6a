"""tf_st: adversarial training (Squeeze Training and its baselines) and robustness
evaluation for TensorFlow 2 / Keras 3.

Conventions shared by every sub-package:
  * images are NHWC float tensors in [0, 1]; any normalisation lives inside the model;
  * epsilons and step sizes are in the same [0, 1] units (8/255, not 8);
  * a "logits function" is any callable mapping such a batch to unnormalised logits.
"""

__version__ = "0.2.0"  # the one version string (pyproject.toml reads it)
