r"""MART with two neighbouring examples per benign example
(MART†, ST paper Appendix C, Table 6) (see ``tf_st.methods.mart``).

  python -m trainers.mart2 --dataset=cifar10_mini
"""

from absl import app

from trainers import common

common.define_common_flags()
_BETA = common.define_beta("ST paper comparisons: 5")
_ATTACK_BN = common.define_attack_bn()
main = common.main_for("mart2", [_BETA, _ATTACK_BN])

if __name__ == "__main__":
    app.run(main)
