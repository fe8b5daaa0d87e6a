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
Then, per method, precision and attack, over the seeds that have both numbers: the
mean with its 95% t-interval (``mean +- t(0.975, n-1) s / sqrt(n)``), whether the
mixed-precision mean lies in the float32 interval, and the mean paired difference
(mixed - float32, same seed and images) with its t-interval; then every run's numbers
per seed.  Writes ``study.md`` and ``study.json``; ``--report_only`` aggregates what is
there without training.
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


def split_entry(method):
    """A compare_methods row's ``method`` as ``(key, mixed)``: ``"cat+mixed:trades"`` ->
    ``("cat:trades", True)``, ``"st+awp"`` -> ``("st+awp", False)``.

    Args:
      method: the row's ``method`` (entry, ``+`` variants, ``:network``).

    Returns:
      The key without the ``mixed`` variant, and whether it was there.
    """
    base, _, net = method.partition(":")
    parts = base.split("+")
    key = "+".join(p for p in parts if p != "mixed") + (f":{net}" if net else "")
    return key, "mixed" in parts[1:]


def aggregate(rows_by_seed):
    """Per (method, attack): float32 and mixed means with intervals, and the verdict.

    Only seeds with both numbers count, so that a study still running (a seed whose
    mixed run has no AutoAttack number yet) compares the same seeds on both sides.

    Args:
      rows_by_seed: ``{seed: [compare_methods row, ...]}``.

    Returns:
      A list of dicts (method, attack, seeds, float32/mixed mean and half-width,
      ``mixed_within``: the mixed mean inside the float32 interval, or None without one;
      ``difference``/``difference_hw``: the mean paired difference mixed - float32 over
      the same seeds and its 95% t-interval half-width, or None with one seed).
    """
    by = {}  # (method, attack) -> {seed: {variant: accuracy}}
    for seed, rows in rows_by_seed.items():
        for r in rows:
            key, mixed = split_entry(r["method"])
            for a in ATTACKS:
                if r.get(f"{a}_acc") is not None:
                    by.setdefault((key, a), {}).setdefault(seed, {})[mixed] = r[f"{a}_acc"]
    out = []
    for method in sorted({k for k, _ in by}):
        for a in ATTACKS:
            pairs = [v for v in by.get((method, a), {}).values() if False in v and True in v]
            if not pairs:
                continue
            f32, mixed = [v[False] for v in pairs], [v[True] for v in pairs]
            m32, h32 = interval(f32)
            mm, hm = interval(mixed)
            d, hd = interval([m - f for m, f in zip(mixed, f32)])
            within = None if h32 is None else abs(mm - m32) <= h32
            out.append(dict(method=method, attack=a, seeds=len(pairs),
                            float32=m32, float32_hw=h32, mixed=mm, mixed_hw=hm,
                            mixed_within=within, difference=d, difference_hw=hd))
    return out


def table(summary):
    """``study.md``'s table.

    Args:
      summary: what ``aggregate`` returns.

    Returns:
      The markdown table.
    """
    def cell(m, h, unit="%", sign=""):
        return f"{100 * m:{sign}.1f}{unit}" + ("" if h is None else f" ± {100 * h:.1f}")
    lines = ["| method | attack | seeds | float32 | mixed | mixed in float32's 95% interval "
             "| mixed - float32, paired (points) |",
             "|---|---|---|---|---|---|---|"]
    for r in summary:
        verdict = {True: "yes", False: "NO", None: "-"}[r["mixed_within"]]
        lines.append(f"| {r['method']} | {r['attack']} | {r['seeds']} | "
                     f"{cell(r['float32'], r['float32_hw'])} | {cell(r['mixed'], r['mixed_hw'])}"
                     f" | {verdict} | {cell(r['difference'], r['difference_hw'], '', '+')} |")
    return "\n".join(lines)


def seed_table(rows_by_seed):
    """``study.md``'s per-seed table: every row's accuracies and selected epoch.

    Args:
      rows_by_seed: ``{seed: [compare_methods row, ...]}``.

    Returns:
      The markdown table (``-`` where a number is not there yet).
    """
    lines = ["| method | seed | training | clean | PGD-20 | CW-20 | AutoAttack | epoch |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [(split_entry(r["method"]), seed, r) for seed, rs in rows_by_seed.items()
            for r in rs]
    for (key, mixed), seed, r in sorted(rows, key=lambda t: (t[0][0], int(t[1]), t[0][1])):
        accs = [f"{100 * r[f'{a}_acc']:.1f}%" if r.get(f"{a}_acc") is not None else "-"
                for a in ATTACKS]
        precision = r.get("training_precision") or ("mixed" if mixed else "float32")
        lines.append(f"| {key} | {seed} | {precision} | {' | '.join(accs)} | "
                     f"{r.get('best_epoch', '-')} |")
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
    # An entry with several networks (cat: cat:trades, cat:alp) is done when every one is.
    entries = {}
    for r in rows:
        entries.setdefault(r["method"].partition(":")[0], []).append(
            not with_aa or r.get("aa_acc") is not None)
    return [m + v for m in methods for v in ("", "+mixed")
            if not all(entries.get(m + v, [False]))]


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
    if not rows_by_seed:
        raise ValueError(f"no results under {_OUT.value} for seeds {','.join(_SEEDS.value)}; "
                         "run without --report_only first")
    summary = aggregate(rows_by_seed)
    seeds = sorted(rows_by_seed)
    protocol = _protocol(seeds[0]).split("; seed ")[0] if seeds else ""
    text = (f"Seeds {', '.join(seeds)}; protocol: {protocol}.\n\n" + table(summary)
            + "\n\nPer seed (AutoAttack on the first --aa_examples test images):\n\n"
            + seed_table(rows_by_seed))
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
