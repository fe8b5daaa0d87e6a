r"""MART (``tf_st.methods.mart``).

  python -m trainers.mart --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=mart``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("mart")

if __name__ == "__main__":
    train.run_cli("mart")
