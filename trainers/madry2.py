r"""Madry AT with two neighbouring examples per benign example (AT†, ST paper
Appendix C, Table 6); the flags are those of ``trainers.madry``.

  python -m trainers.madry2 --dataset=cifar10_mini
"""

from absl import app

from trainers import common, madry

main = common.main_for("madry2", madry.METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
