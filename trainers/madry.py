r"""Madry AT: PGD-10 on cross-entropy, inference-mode BN during the
attack, uniform random start clamped to [0, 1] (see ``tf_st.methods.madry``).

  python -m trainers.madry --dataset=cifar10_mini
"""

from absl import app, flags

from trainers import common

common.define_common_flags()
_CLAMP_START = flags.DEFINE_bool("clamp_start", True, "Clamp the random start to [0, 1].")
_ATTACK_BN = common.define_attack_bn()
METHOD_FLAGS = [_CLAMP_START, _ATTACK_BN]
main = common.main_for("madry", METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
