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
    key = "natural"
    term_names = ("loss",)

    def hparams(self):
        return {}

    def generate(self, x, y, init=None):
        return {}

    def training_loss(self, x, y, generated):
        z = self.forward_train(x)
        return {"loss": batch_mean(losses.cross_entropy(z, y)), "clean_logits": z}
