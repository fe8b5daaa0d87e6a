r"""Adversarial Logit Pairing as CAT's reference trains it (``tf_st.methods.alp``).

  python -m trainers.alp --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=alp``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("alp")

if __name__ == "__main__":
    train.run_cli("alp")
