r"""MART with two neighbouring examples per benign example (MART†, ST paper
Appendix C, Table 6); the flags are those of ``trainers.mart``.

  python -m trainers.mart2 --dataset=cifar10_mini
"""

from absl import app

from trainers import common, mart

main = common.main_for("mart2", mart.METHOD_FLAGS)

if __name__ == "__main__":
    app.run(main)
