r"""Collaborative-only training, ST paper Eq. 5: CE(f(x), y) + beta * KL(f(x_col) || f(x))
with x_col from the descending PGD of Eq. 4 (see ``tf_st.methods.collaborative``).

  python -m trainers.col --dataset=cifar10_mini
"""

from absl import app, flags

from trainers import common

common.define_common_flags()
_BETA = common.define_beta("default 6")
_INIT = flags.DEFINE_enum("init", "normal", ["normal", "uniform", "none"],
                          "Start of the collaborative descent.")
_ATTACK_BN = common.define_attack_bn()
main = common.main_for("col", [_BETA, _INIT, _ATTACK_BN])

if __name__ == "__main__":
    app.run(main)
