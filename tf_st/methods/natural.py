"""Natural (standard) training: cross-entropy on the clean batch.

The "normally trained" ResNet-18 of the ST paper (Li et al., ICLR 2023, Sections 3.1
and 3.2, Figure 4).  No reference repository; it is the ``CE(f(x), y)`` term every
method below shares: one train-mode forward (batch statistics, moving statistics
updated once), batch-mean cross-entropy.  ``generate`` returns ``{}``.

The attack hyperparameters of the base class are accepted (so every method takes the
same flags) but unused, and not reported by ``hparams``.
"""

from tf_st.attacks import losses
from tf_st.methods.base import AdversarialMethod, batch_mean


class NaturalTraining(AdversarialMethod):
    """Natural (non-adversarial) training: cross-entropy on the clean batch."""
    key = "natural"
    term_names = ("loss",)
    # No inner attack: --norm=l2 only makes the per-epoch selection and the final
    # evaluation L2 (an undefended baseline for an L2 table).
    norms = ("Linf", "L2")

    def hparams(self):
        """No hyperparameters are recorded.

        Returns:
          ``{}``.
        """
        return {}

    def generate(self, x, y, init=None):
        """Nothing to generate.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          init: start points ``{name: images}`` for the inner attacks, or None to draw them.

        Returns:
          ``{}``.
        """
        return {}

    def training_loss(self, x, y, generated):
        """The clean cross-entropy.

        Args:
          x: a batch of NHWC float images in [0, 1] (this replica's slice).
          y: its integer labels ``[B]``.
          generated: what ``generate`` returned.

        Returns:
          ``loss`` and ``clean_logits``.
        """
        z = self.forward_train(x)
        return {"loss": batch_mean(losses.cross_entropy(z, y)), "clean_logits": z}
