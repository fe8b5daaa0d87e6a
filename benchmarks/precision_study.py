r"""Does mixed precision cost robustness?  The same methods trained in float32 and in
mixed precision, several seeds each, evaluated from their float32 exports.

  python -m benchmarks.precision_study --methods=st,trades,madry --seeds=1,2,3 \
      --data_dir=/path/to/cifar10-jpeg --output_dir=runs/precision_study

Each (method, seed) pair runs ``benchmarks.compare_methods`` with ``<method>`` and
``<method>+mixed`` (its protocol: small_cnn on a balanced CIFAR-10 prefix, clean, PGD-20
and CW-20 on the test prefix, AutoAttack standard on the first ``--aa_examples``;
``--train_examples``, ``--test_examples`` and ``--epochs`` pass through), in
``<output_dir>/seed<N>``; a rerun does only what is missing: entries without a row (or,
with ``--aa_examples``, without an AutoAttack number, which compare_methods then adds
without retraining).
Then, per method, precision and attack: the mean over seeds with its 95% t-interval
(``mean +- t(0.975, n-1) s / sqrt(n)``), and whether the mixed-precision mean lies in
the float32 interval.  Writes ``study.md`` and ``study.json``; ``--report_only``
aggregates what is there without training.
"""

import json
import math
import os
import subprocess
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_METHODS = _SEEDS = _DATA_DIR = _TRAIN = _TEST = _EPOCHS = _OUT = _REPORT_ONLY = _AA = None


def define_flags():
    """Defines the command's flags in absl's global registry (only when it runs, so that
    tests can import the aggregation next to the trainers, whose ``--data_dir`` and
    ``--epochs`` share that registry)."""
    global _METHODS, _SEEDS, _DATA_DIR, _TRAIN, _TEST, _EPOCHS, _OUT, _REPORT_ONLY, _AA
    _METHODS = flags.DEFINE_list("methods", ["st", "trades", "madry"], "Methods (trainer keys).")
    _SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds.")
    _DATA_DIR = flags.DEFINE_string("data_dir", None, "CIFAR-10 image folder.")
    _TRAIN = flags.DEFINE_integer("train_examples", 5000, "Training images.")
    _TEST = flags.DEFINE_integer("test_examples", 1000, "Test images.")
    _EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs.")
    _AA = flags.DEFINE_integer("aa_examples", 1000,
                               "AutoAttack standard on the first N test images (0 = skip).")
    _OUT = flags.DEFINE_string("output_dir", os.path.join("runs", "precision_study"),
                               "Output.")
    _REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Aggregate existing results only.")

ATTACKS = ("clean", "pgd20", "cw20", "aa")
# Two-sided 95% quantiles of Student's t (n - 1 degrees of freedom) for small n.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262}


def interval(values):
    """Mean and half-width of the 95% t-interval of ``values`` (half-width None for one
    value).

    Args:
      values: the per-seed accuracies.

    Returns:
      ``(mean, half_width)``.
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, _T975.get(n - 1, 1.96) * s / math.sqrt(n)


def aggregate(rows_by_seed):
    """Per (method, attack): float32 and mixed means with intervals, and the verdict.

    Args:
      rows_by_seed: ``{seed: [compare_methods row, ...]}``.

    Returns:
      A list of dicts (method, attack, seeds, float32/mixed mean and half-width,
      ``mixed_within``: the mixed mean inside the float32 interval, or None without one).
    """
    by = {}
    for rows in rows_by_seed.values():
        for r in rows:
            key, _, variant = r["method"].partition("+")
            for a in ATTACKS:
                if r.get(f"{a}_acc") is not None:
                    by.setdefault((key, a, variant == "mixed"), []).append(r[f"{a}_acc"])
    out = []
    for method in sorted({k for k, _, _ in by}):
        for a in ATTACKS:
            f32, mixed = by.get((method, a, False), []), by.get((method, a, True), [])
            if not f32 or not mixed:
                continue
            m32, h32 = interval(f32)
            mm, hm = interval(mixed)
            within = None if h32 is None else abs(mm - m32) <= h32
            out.append(dict(method=method, attack=a, seeds=min(len(f32), len(mixed)),
                            float32=m32, float32_hw=h32, mixed=mm, mixed_hw=hm,
                            mixed_within=within))
    return out


def table(summary):
    """``study.md``'s table.

    Args:
      summary: what ``aggregate`` returns.

    Returns:
      The markdown table.
    """
    def cell(m, h):
        return f"{100 * m:.1f}%" + ("" if h is None else f" ± {100 * h:.1f}")
    lines = ["| method | attack | seeds | float32 | mixed | mixed in float32's 95% interval |",
             "|---|---|---|---|---|---|"]
    for r in summary:
        verdict = {True: "yes", False: "NO", None: "-"}[r["mixed_within"]]
        lines.append(f"| {r['method']} | {r['attack']} | {r['seeds']} | "
                     f"{cell(r['float32'], r['float32_hw'])} | {cell(r['mixed'], r['mixed_hw'])}"
                     f" | {verdict} |")
    return "\n".join(lines)


def missing_entries(rows, methods, with_aa):
    """The compare_methods entries a seed still needs.

    Args:
      rows: that seed's rows so far (``[]`` if none).
      methods: the trainer keys asked for.
      with_aa: whether an AutoAttack number is asked for.

    Returns:
      ``["<key>", "<key>+mixed", ...]`` without a row, or without ``aa_acc`` when
      ``with_aa``.
    """
    done = {r["method"] for r in rows if not with_aa or r.get("aa_acc") is not None}
    return [m + v for m in methods for v in ("", "+mixed") if m + v not in done]


def _results(seed):
    path = os.path.join(_OUT.value, f"seed{seed}", "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["rows"]


def _protocol(seed):
    """The protocol line ``compare_methods`` recorded for ``seed`` (what was run, which
    ``--report_only``'s own flags need not repeat)."""
    with open(os.path.join(_OUT.value, f"seed{seed}", "results.json")) as f:
        return json.load(f).get("protocol", "")


def main(argv):
    from tf_st.fileio import atomic_write_json, atomic_write_text
    rows_by_seed = {}
    for seed in _SEEDS.value:
        rows = _results(seed)
        todo = missing_entries(rows or [], _METHODS.value, _AA.value > 0)
        if todo and not _REPORT_ONLY.value:
            if not _DATA_DIR.value or not os.path.isdir(_DATA_DIR.value):
                raise ValueError(f"no CIFAR-10 image folder at {_DATA_DIR.value}; pass "
                                 "--data_dir")
            # --append keeps the seed's other rows; a finished training is not redone.
            cmd = [sys.executable, "-m", "benchmarks.compare_methods",
                   f"--methods={','.join(todo)}", "--append",
                   f"--seed={seed}", f"--data_dir={_DATA_DIR.value}",
                   f"--train_examples={_TRAIN.value}", f"--test_examples={_TEST.value}",
                   f"--epochs={_EPOCHS.value}", f"--aa_examples={_AA.value}",
                   f"--output_dir={os.path.join(_OUT.value, f'seed{seed}')}"]
            print(f"[seed {seed}] {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONPATH": ROOT})
            rows = _results(seed)
        if rows is not None:
            rows_by_seed[seed] = rows
    summary = aggregate(rows_by_seed)
    seeds = sorted(rows_by_seed)
    protocol = _protocol(seeds[0]).split("; seed ")[0] if seeds else ""
    text = (f"Seeds {', '.join(seeds)}; protocol: {protocol}.\n\n" + table(summary))
    os.makedirs(_OUT.value, exist_ok=True)
    atomic_write_text(os.path.join(_OUT.value, "study.md"), text + "\n")
    atomic_write_json(os.path.join(_OUT.value, "study.json"),
                      {"seeds": sorted(rows_by_seed), "summary": summary})
    print(text)
    return 0


if __name__ == "__main__":
    from tf_st import cli
    define_flags()
    cli.run_main(main, __doc__)
