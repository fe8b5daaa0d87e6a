r"""Friendly Adversarial Training (early-stopped PGD-K-tau, ``tf_st.methods.fat``).

  python -m trainers.fat --dataset=cifar10 --data_dir=...   # WRN-32-10, 120 epochs

Alias of ``python -m trainers.train --method=fat``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("fat")

if __name__ == "__main__":
    train.run_cli("fat")
