r"""TRADES with two neighbouring examples per benign example (TRADES†, ST paper
Appendix C, Table 6); the flags are those of ``trainers.trades``.

  python -m trainers.trades2 --dataset=cifar10_mini
"""

from absl import app

from trainers import common, trades

main = common.main_for("trades2", trades.METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
