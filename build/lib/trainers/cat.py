r"""Collaborative Adversarial Training (``tf_st.methods.cat``): one network per member
method, ``--cat_members=trades,alp`` (the released pair), ``--cat_alpha=0.05``.

  python -m trainers.cat --dataset=cifar10_mini --cat_members=madry,alp,trades

Alias of ``python -m trainers.train --method=cat``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("cat")

if __name__ == "__main__":
    train.run_cli("cat")
