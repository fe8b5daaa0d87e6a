"""What every diagnostic shares: its flags, finding the model and data of a run
directory, progress lines, and writing a figure with the numbers behind it."""

import csv
import io
import json
import os
import sys
import time

import numpy as np
from absl import flags

from tf_st.fileio import atomic_path, atomic_write_json, atomic_write_text


def define_shared(fv):
    """The flags every subcommand takes (in its own registry ``fv``)."""
    from tf_st.cli import define_verbose_errors
    flags.DEFINE_list("run_dir", [], "Trainer run directories (their export and dataset are "
                      "read from them); several where the figure compares runs.",
                      flag_values=fv)
    flags.DEFINE_list("saved_model", [], "SavedModel directories (instead of --run_dir).",
                      flag_values=fv)
    flags.DEFINE_list("label", [], "Legend labels, one per model/run (default: their "
                      "directory names).", flag_values=fv)
    flags.DEFINE_string("dataset", None, "Dataset (default: the run's, else cifar10_mini).",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data dir or image-folder root.", flag_values=fv)
    flags.DEFINE_string("split", "test", "Split to analyse.", flag_values=fv)
    flags.DEFINE_integer("examples", 200, "Analyse the first N examples.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 100, "Batch size.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of random directions/starts.", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where the PNG and CSV/JSON go (required).",
                        flag_values=fv)
    define_verbose_errors(fv)


class Source:
    """One model to analyse: a logits function, its label and where it came from."""

    def __init__(self, path, label, run_dir=None):
        from tf_st.saved_model import load
        self.path, self.label, self.run_dir = path, label, run_dir
        self.model = load(path)

    def __call__(self, x):
        return self.model(x)


def run_settings(run_dir):
    """The run's ``settings.json`` (what the trainer recorded), or an error naming it."""
    path = os.path.join(run_dir, "settings.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir} is not a trainer run directory (no settings.json)")
    with open(path) as f:
        return json.load(f)


def labels(fv, dirs):
    """``--label`` (one per directory), else the directories' names."""
    given = list(fv["label"].value)
    if given and len(given) != len(dirs):
        raise ValueError(f"--label has {len(given)} entries for {len(dirs)} models/runs")
    return given or [os.path.basename(os.path.normpath(d)) for d in dirs]


def run_dirs(fv, command):
    """``[(label, run_dir)]`` for the commands that read what runs logged (no model)."""
    if fv["saved_model"].value:
        raise ValueError(f"{command} reads run directories: use --run_dir")
    dirs = list(fv["run_dir"].value)
    if not dirs:
        raise ValueError("give --run_dir (one or several, comma-separated)")
    return list(zip(labels(fv, dirs), dirs))


def sources(fv):
    """The models named by ``--run_dir`` / ``--saved_model``, checked to exist."""
    dirs, saved = list(fv["run_dir"].value), list(fv["saved_model"].value)
    if not dirs and not saved:
        raise ValueError("give --run_dir or --saved_model")
    out = []
    paths = [(os.path.join(r, "export"), r) for r in dirs] + [(p, None) for p in saved]
    names = labels(fv, [run_dir or path for path, run_dir in paths])
    for (path, run_dir), label in zip(paths, names):
        if run_dir is not None:
            run_settings(run_dir)
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{run_dir} has no export yet (the run has not "
                                        "finished); analyse its --saved_model when it has")
        out.append(Source(path, label, run_dir))
    return out


def dataset_of(fv):
    """``(name, data_dir)``: the flags, else the first run directory's, else the mini set."""
    name, data_dir = fv["dataset"].value, fv["data_dir"].value
    if name is None and fv["run_dir"].value:
        s = run_settings(fv["run_dir"].value[0])
        name, data_dir = s.get("dataset"), data_dir or s.get("data_dir")
    return name or "cifar10_mini", data_dir


def load_examples(fv, image_shape=None):
    """The first ``--examples`` of ``--split``: ``(x, y, Split)``, checked against the
    model's input shape."""
    from tf_st import data
    name, data_dir = dataset_of(fv)
    if name not in data.DATASETS:
        raise ValueError(f"unknown --dataset {name!r}; use one of {sorted(data.DATASETS)}")
    if fv["split"].value not in data.SPLITS:
        raise ValueError(f"unknown --split {fv['split'].value!r}; use one of {list(data.SPLITS)}")
    split = data.load(name, fv["split"].value, data_dir=data_dir)
    with data.naming_bad_images(name, data_dir):
        x, y = data.as_numpy(split, limit=fv["examples"].value)
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"the model takes images of shape {tuple(image_shape)}, "
                         f"{name}/{fv['split'].value} has {tuple(x.shape[1:])}")
    return x, y, split


def output_dir(fv):
    path = fv["output_dir"].value
    if not path:
        raise ValueError("--output_dir is required")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output_dir {path} is a file")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"cannot write to --output_dir {path}")
    os.makedirs(path, exist_ok=True)
    return path


class Progress:
    """One line per ~10% of the work (and at the end), with elapsed time and ETA."""

    def __init__(self, name, total):
        self.name, self.total, self.done = name, max(1, int(total)), 0
        self.start, self.next = time.time(), 0.1

    def update(self, n=1, note=""):
        self.done += n
        frac = self.done / self.total
        if frac >= self.next or self.done >= self.total:
            el = time.time() - self.start
            eta = el / self.done * (self.total - self.done)
            print(f"[{self.name}] {self.done}/{self.total} ({el:.0f}s, ETA {eta:.0f}s)"
                  + (f" {note}" if note else ""), flush=True)
            while self.next <= frac:
                self.next += 0.1


def batches(n, batch_size):
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def write_csv(path, rows, fields=None):
    """Rows (dicts) to ``path`` atomically; columns in first-seen order."""
    if fields is None:
        fields = []
        for r in rows:
            fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k, "")) for k in fields})
    atomic_write_text(path, buf.getvalue())
    return path


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def write_json(path, obj):
    atomic_write_json(path, obj, indent=1)
    return path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return path


def announce(paths):
    for p in paths:
        print(f"wrote {p}")
    sys.stdout.flush()
