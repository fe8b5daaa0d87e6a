r"""Natural (standard) training: the ~0% robust-accuracy reference point.

  python -m trainers.natural --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=natural``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("natural")

if __name__ == "__main__":
    train.run_cli("natural")
