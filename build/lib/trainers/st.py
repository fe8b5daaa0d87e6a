r"""Squeeze Training (ST), ``tf_st.methods.squeeze``.

  python -m trainers.st --dataset=svhn          # paper settings for SVHN

Alias of ``python -m trainers.train --method=st``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("st")

if __name__ == "__main__":
    train.run_cli("st")
