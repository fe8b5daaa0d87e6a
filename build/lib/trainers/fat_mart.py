r"""FAT for MART (``tf_st.methods.fat``).

  python -m trainers.fat_mart --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=fat_mart``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("fat_mart")

if __name__ == "__main__":
    train.run_cli("fat_mart")
