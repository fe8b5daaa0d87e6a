r"""Collaborative-only training, ST paper Eq. 5: CE(f(x), y) + beta * KL(f(x_col) || f(x))
with x_col from the descending PGD of Eq. 4 (``tf_st.methods.collaborative``).

  python -m trainers.col --dataset=cifar10_mini

Alias of ``python -m trainers.train --method=col``; flags: ``--helpfull``.
"""

from trainers import train

main = train.main_for("col")

if __name__ == "__main__":
    train.run_cli("col")
