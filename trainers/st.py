r"""Squeeze Training (ST) trainer.

  python -m trainers.st --dataset=svhn          # paper settings for SVHN
  python -m trainers.st --dataset=cifar10_mini  # the bundled demo set (README)

Method flags use the names of ``tf_st.methods.squeeze.SqueezeTraining``'s
hyperparameters; unset ones take the ST paper's values for the dataset
(``tf_st.training.presets``).
"""

from absl import app, flags

from trainers import common

common.define_common_flags()
_BETA = common.define_beta("paper: 6 CIFAR-10, 4 CIFAR-100, 8 SVHN")
_REG = flags.DEFINE_enum("reg", None, ["symmetric_kl", "js", "l2"], "Output-gap regulariser.")
_FOLLOW_ROLES = flags.DEFINE_bool(
    "follow_roles", False, "Paper Algorithm 1 (positions always follow roles) instead of the "
    "reference code's behaviour (quirk Q1).")
_INIT = flags.DEFINE_enum("init", "normal", ["normal", "uniform"],
                          "Inner-loop start: x+0.001N(0,1) (ST-AT) or x+U(-eps,eps) (ST-RST).")

main = common.main_for("st", [_BETA, _REG, _FOLLOW_ROLES, _INIT])


if __name__ == "__main__":
    app.run(main)
