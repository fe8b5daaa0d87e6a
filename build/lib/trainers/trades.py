r"""TRADES (``tf_st.methods.trades``); ``--trades_reg`` swaps the KL for ST's
regularisers (ST paper Figure 6).

  python -m trainers.trades --dataset=cifar10_mini --trades_reg=kl

Alias of ``python -m trainers.train --method=trades``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("trades")

if __name__ == "__main__":
    train.run_cli("trades")
