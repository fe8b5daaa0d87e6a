r"""MART with two neighbouring examples per benign example (MART†, ST paper
Appendix C, Table 6).

  python -m trainers.mart2 --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=mart2``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("mart2")

if __name__ == "__main__":
    train.run_cli("mart2")
