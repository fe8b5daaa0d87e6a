r"""Madry AT: PGD-10 on cross-entropy, inference-mode BN during the attack, uniform
random start clamped to [0, 1] (``tf_st.methods.madry``).

  python -m trainers.madry --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=madry``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("madry")

if __name__ == "__main__":
    train.run_cli("madry")
