r"""TRADES with two neighbouring examples per benign example (TRADES†, ST paper
Appendix C, Table 6).

  python -m trainers.trades2 --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=trades2``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("trades2")

if __name__ == "__main__":
    train.run_cli("trades2")
