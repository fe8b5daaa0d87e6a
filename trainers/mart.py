r"""MART (see ``tf_st.methods.mart``).

  python -m trainers.mart --dataset=cifar10_mini
"""

from absl import app

from trainers import common

common.define_common_flags()
_BETA = common.define_beta("ST paper comparisons: 5")
_ATTACK_BN = common.define_attack_bn()
METHOD_FLAGS = [_BETA, _ATTACK_BN]
main = common.main_for("mart", METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
