r"""Evaluates a SavedModel under attack and writes a JSON report.

  python -m export.evaluate --saved_model=runs/st/export \
      --dataset=cifar10_mini --attacks=clean,fgsm,pgd20,pgd100,cw100

Any SavedModel whose signature maps [0, 1] NHWC float images to logits works, not only
ours (see ``export.saved_model.LoadedClassifier``).
"""

import os
import sys

from absl import app, flags

_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "SavedModel dir (or TF-Serving base dir).")
_DATASET = flags.DEFINE_string("dataset", "cifar10_mini", "Dataset name (as the trainers).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir or image-folder root.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate on.")
_ATTACKS = flags.DEFINE_list("attacks", ["clean", "fgsm", "pgd20", "pgd100", "cw100"],
                             "Comma-separated: clean, fgsm, pgd<N>, cw<N>, aa.")
_EPSILON = flags.DEFINE_float("epsilon", 8 / 255, "L-inf budget in [0, 1] units.")
_STEP_SIZE = flags.DEFINE_float("step_size", 2 / 255, "PGD/CW step size in [0, 1] units.")
_EXAMPLES = flags.DEFINE_integer("examples", None, "Evaluate the first N examples only.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random starts.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON report path (default: beside the model).")
_STATE_FILE = flags.DEFINE_string("state_file", None, "AutoAttack resume state (JSON).")

flags.register_validator("epsilon", lambda v: 0.0 <= v <= 1.0,
                         "--epsilon must be in [0, 1] (8/255 = 0.03137, not 8)")
flags.register_validator("step_size", lambda v: 0.0 < v <= 1.0, "--step_size must be in (0, 1]")
flags.register_validator("batch_size", lambda v: v > 0, "--batch_size must be positive")
flags.register_validator("examples", lambda v: v is None or v > 0, "--examples must be positive")


def main(argv):
    del argv
    if not _SAVED_MODEL.value:
        raise app.UsageError("--saved_model is required")
    from tf_st.evaluation import report
    from export.saved_model import load

    try:
        model = load(_SAVED_MODEL.value)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = _OUTPUT.value or os.path.join(model.path, "evaluation.json")
    result = report.evaluate_and_report(
        model, dataset=_DATASET.value, data_dir=_DATA_DIR.value, split=_SPLIT.value,
        attacks=_ATTACKS.value, epsilon=_EPSILON.value, step_size=_STEP_SIZE.value,
        examples=_EXAMPLES.value, batch_size=_BATCH_SIZE.value, seed=_SEED.value,
        output=output, model_card=model.model_card, state_file=_STATE_FILE.value)
    print(f"report written to {output}")
    return 0 if result is not None else 1


if __name__ == "__main__":
    app.run(main)
