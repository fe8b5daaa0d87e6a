r"""Madry AT with two neighbouring examples per benign example (AT†, ST paper
Appendix C, Table 6).

  python -m trainers.madry2 --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=madry2``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("madry2")

if __name__ == "__main__":
    train.run_cli("madry2")
