r"""Evaluates a SavedModel under attack and writes a JSON report.

  python -m tf_st.evaluation --saved_model=runs/st/export \
      --dataset=cifar10_mini --attacks=clean,fgsm,pgd20,pgd100,cw100,aa

(``python -m export.evaluate`` is the same command.)  Any SavedModel whose signature maps
[0, 1] NHWC float images to logits works, not only ours
(``tf_st.saved_model.LoadedClassifier``).  Attack names are those of
``tf_st.attacks.parse``.  Everything that can be checked is checked before any attack
runs (attack names, the output path, the model's input shape against the data); an
expected failure prints one ``error:`` line and exits with status 2.

The flags live in their own registry, so this module can be imported next to the
trainers (one process, tests) without defining ``--dataset`` twice.
"""

import os
import sys

from absl import flags

from tf_st import cli
from tf_st.attacks.specs import describe_names

FLAGS = flags.FlagValues()
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "SavedModel dir (or TF-Serving base "
                                   "dir).", flag_values=FLAGS)
_DATASET = flags.DEFINE_string("dataset", "cifar10_mini", "Dataset name (as the trainers).",
                               flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir or image-folder root.",
                                flag_values=FLAGS)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate on.", flag_values=FLAGS)
_ATTACKS = flags.DEFINE_list(
    "attacks", ["clean", "fgsm", "pgd20", "pgd100", "cw100"],
    f"Comma-separated, each one of: {describe_names()}.",
    flag_values=FLAGS)
_EPSILON = cli.define_float("epsilon", 8 / 255, "Perturbation budget (with --norm=l2 the L2 "
                            "radius, e.g. 0.5).", flag_values=FLAGS)
_NORM = flags.DEFINE_enum("norm", "linf", ["linf", "l2"],
                          "Threat model of the attacks: linf or l2 (aa in l2 needs FAB-T and "
                          "Square in L2, not implemented yet: the L2 attacks are fgsm, pgd<N>, "
                          "cw<N>, pgd_rst, apgd-ce, apgd-t).", flag_values=FLAGS)
_STEP_SIZE = cli.define_float("step_size", 2 / 255, "PGD/CW step size.", flag_values=FLAGS)
_EXAMPLES = flags.DEFINE_integer("examples", None, "Evaluate the first N examples only.",
                                 flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.",
                                   flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random starts.", flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "JSON report path (default: beside the model).",
                              flag_values=FLAGS)
_STATE_FILE = flags.DEFINE_string("state_file", None, "AutoAttack resume state (JSON; with "
                                  "--strategy=multi_worker on a file system every worker "
                                  "reads, only the chief writing it).",
                                  flag_values=FLAGS)
_STRATEGY = flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multi_worker"],
                              "Replicas that attack different batches at once (auto: every "
                              "GPU, or the --cpu_devices; multi_worker: the workers of "
                              "TF_CONFIG, the chief writing the report); per-example results "
                              "as one device.", flag_values=FLAGS)
_AUDIT = flags.DEFINE_boolean(
    "audit", False, "After the attacks, audit the evaluation for gradient masking "
    "(tf_st.evaluation.audit: large epsilon, more PGD steps and restarts, Square vs PGD, "
    "input gradients, determinism, logits): an 'audit' block in the report and "
    "<report stem>_audit.png; a warning (exit status still 0) when a check fails.",
    flag_values=FLAGS)
_AUDIT_EXAMPLES = flags.DEFINE_integer("audit_examples", 100, "Audit the first N of the "
                                       "evaluated examples.", lower_bound=1,
                                       flag_values=FLAGS)
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into N logical devices.",
                                    lower_bound=1, flag_values=FLAGS)


_VERBOSE = cli.define_verbose_errors(FLAGS)

# An L-inf budget is at most 1 (a pixel's range); an L2 radius over the whole image may
# exceed 1, so with --norm=l2 only a negative budget is refused.
flags.register_multi_flags_validator(
    ["epsilon", "norm"],
    lambda f: 0.0 <= f["epsilon"] and (f["norm"] == "l2" or f["epsilon"] <= 1.0),
    "--epsilon must be in [0, 1] (8/255 = 0.03137, not 8); with --norm=l2 it is an L2 "
    "radius and must be >= 0 (e.g. 0.5)", flag_values=FLAGS)
flags.register_multi_flags_validator(
    ["step_size", "norm"],
    lambda f: 0.0 < f["step_size"] and (f["norm"] == "l2" or f["step_size"] <= 1.0),
    "--step_size must be in (0, 1] (with --norm=l2: > 0)", flag_values=FLAGS)
flags.register_validator("batch_size", lambda v: v > 0, "--batch_size must be positive",
                         flag_values=FLAGS)
flags.register_validator("examples", lambda v: v is None or v > 0, "--examples must be positive",
                         flag_values=FLAGS)


_GROUPS = (
    ("model and data", ["saved_model", "dataset", "data_dir", "split", "examples"]),
    ("attacks", ["attacks", "norm", "epsilon", "step_size", "seed", "batch_size"]),
    ("audit", ["audit", "audit_examples"]),
    ("output", ["output", "state_file"]),
    ("devices", ["strategy", "cpu_devices"]),
    ("messages", ["verbose", "verbose_errors"]),
)


def help_page(full=False, program="python -m tf_st.evaluation"):
    """The ``--help`` page (``full`` adds nothing: every flag is this command's own)."""
    summary = ("Evaluates a SavedModel (any whose signature maps [0, 1] NHWC float images to "
               "logits) under attack, prints a table with the worst case and writes a JSON "
               "report with provenance and 95% intervals.")
    footer = ("Example: python -m tf_st.evaluation --saved_model=runs/demo/export "
              "--dataset=cifar10_mini --attacks=clean,pgd20,aa --examples=500 --audit\n"
              "L2: --norm=l2 --epsilon=0.5 --step_size=0.1 --attacks=clean,pgd20,apgd-ce,apgd-t")
    return cli.help_text(program, summary, _GROUPS, FLAGS,
                         {"epsilon": cli.UNIT_NOTE, "step_size": cli.UNIT_NOTE}, footer)


def main(argv, program="python -m tf_st.evaluation"):
    """Runs the evaluation command line.

    Args:
      argv: the command line, program name first.
      program: how the user runs it (for ``--help``).

    Returns:
      The exit status (``tf_st.cli``'s policy: 0, 2 for bad input, 130 when interrupted,
      the report then saying ``"partial": true`` if any attack had finished).
    """
    return cli.run_command(_main, argv, FLAGS, lambda full: help_page(full, program),
                           _VERBOSE)


def _main(argv):
    from tf_st import data
    from tf_st.attacks.specs import parse
    from tf_st.evaluation import report
    from tf_st.saved_model import load

    from tf_st.distribute import make_strategy, num_workers, split_cpu, worker_index
    if _STRATEGY.value == "multi_worker":
        if _CPU_DEVICES.value > 1:
            raise ValueError("--cpu_devices splits one host's CPU; with --strategy=multi_worker "
                             "every worker uses its GPUs (or its CPU) as its replicas")
        make_strategy("multi_worker")  # reads TF_CONFIG; before any op runs
    split_cpu(_CPU_DEVICES.value)
    if not _SAVED_MODEL.value:
        raise ValueError("--saved_model is required")
    norm = {"linf": "Linf", "l2": "L2"}[_NORM.value]
    specs = [parse(a, epsilon=_EPSILON.value, step_size=_STEP_SIZE.value, norm=norm)
             for a in _ATTACKS.value if a]
    if not specs:
        raise ValueError("--attacks is empty: name at least one attack (e.g. clean,pgd20)")
    if _DATASET.value not in data.DATASETS:
        raise ValueError(f"unknown --dataset {_DATASET.value!r}; use one of "
                         f"{sorted(data.DATASETS)}")
    if _SPLIT.value not in data.SPLITS:
        raise ValueError(f"unknown --split {_SPLIT.value!r}; use one of {list(data.SPLITS)}")
    if _STATE_FILE.value:
        from tf_st.attacks.autoattack.state import StateFile
        StateFile(_STATE_FILE.value, 0).load()  # unreadable state: refused now
    strategy = make_strategy(_STRATEGY.value)
    with strategy.scope():  # variables replicated on every device
        model = load(_SAVED_MODEL.value)
    output = _OUTPUT.value or os.path.join(model.path, "evaluation.json")
    # Several workers evaluate together, each attacking its share of the batches and
    # receiving everyone's results; only the chief writes (see --state_file for resuming).
    worker = worker_index(strategy)
    if worker:
        output = None
    report.check_output_writable(output)
    split = data.load(_DATASET.value, _SPLIT.value, data_dir=_DATA_DIR.value)
    image_shape = tuple(split.dataset.element_spec[0].shape)
    if any(m is not None and m != d for m, d in zip(model.image_shape, image_shape)) \
            or len(model.image_shape) != len(image_shape):
        raise ValueError(f"the SavedModel takes images of shape {model.image_shape}, "
                         f"{_DATASET.value}/{_SPLIT.value} has {image_shape}")
    with data.naming_bad_images(_DATASET.value, _DATA_DIR.value):
        probe, _ = data.as_numpy(split, limit=16)
        for message in report.sanity_warnings(model, probe):
            print(f"warning: {message}", file=sys.stderr)
        try:
            result = report.evaluate_and_report(
                model, dataset=_DATASET.value, data_dir=_DATA_DIR.value, split=_SPLIT.value,
                attacks=specs, epsilon=_EPSILON.value, step_size=_STEP_SIZE.value,
                examples=_EXAMPLES.value, batch_size=_BATCH_SIZE.value, seed=_SEED.value,
                output=output, model_card=model.model_card, state_file=_STATE_FILE.value,
                strategy=strategy, norm=norm,
                audit_examples=_AUDIT_EXAMPLES.value if _AUDIT.value else None)
        except KeyboardInterrupt:
            again = cli.command_line("python -m tf_st.evaluation", argv)
            if worker:
                saved = "the chief writes the report"
            elif report.is_partial(output):
                saved = f"{output} holds the finished attacks, marked partial"
            else:
                saved = "no attack of this run had finished"
            if _STATE_FILE.value:
                saved += (f"; AutoAttack's progress is in {_STATE_FILE.value}, and the same "
                          f"command resumes it: {again}")
            else:
                saved += f"; run again with: {again}"
            raise KeyboardInterrupt(saved) from None
    audited = result.get("audit") if isinstance(result, dict) else None
    if audited and audited["suspicious"]:
        print("warning: the audit flags this evaluation as suspicious: "
              f"{', '.join(audited['failed'])} failed (gradient masking?); the report's "
              "audit.checks explain each and what to run next", file=sys.stderr)
    if output:
        print(f"report written to {output}"
              + (f"; audit figure {audited['figure']}" if audited and audited.get("figure")
                 else ""))
    else:
        print(f"worker {worker} of {num_workers(strategy)} done; the chief wrote the report")
    return 0
