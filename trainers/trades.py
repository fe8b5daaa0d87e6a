r"""TRADES (see ``tf_st.methods.trades``).  ``--trades_reg`` swaps the KL for ST's
regularisers (ST paper Figure 6).

  python -m trainers.trades --dataset=cifar10_mini --trades_reg=kl
"""

from absl import app, flags

from trainers import common

common.define_common_flags()
_BETA = common.define_beta("TRADES: 6")
_REG = flags.DEFINE_enum("trades_reg", None, ["kl", "js", "l2", "symmetric_kl"],
                         "Regulariser of the attack and the outer loss (default kl).")
_ATTACK_BN = common.define_attack_bn()
METHOD_FLAGS = [_BETA, ("reg", _REG), _ATTACK_BN]
main = common.main_for("trades", METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
