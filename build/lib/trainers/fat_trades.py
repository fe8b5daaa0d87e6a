r"""FAT for TRADES (``tf_st.methods.fat``).

  python -m trainers.fat_trades --dataset=cifar10_mini --tau_schedule=''

Alias of ``python -m trainers.train --method=fat_trades``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("fat_trades")

if __name__ == "__main__":
    train.run_cli("fat_trades")
