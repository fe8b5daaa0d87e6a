r"""Natural (standard) training: the ~0% robust-accuracy reference point.

  python -m trainers.natural --dataset=cifar10_mini
"""

from absl import app

from trainers import common

common.define_common_flags()
main = common.main_for("natural")

if __name__ == "__main__":
    app.run(main)
