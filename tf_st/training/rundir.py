"""Ownership of a run directory: one trainer at a time, and only with the settings the
directory was started with.

Two trainers on one ``--output_dir`` used to both exit 0 and leave a directory mixed from
two runs, and a rerun with a changed flag resumed weights trained with other settings
while ``flags.txt`` and the model card claimed the new ones.  ``RunDirectory`` takes an
advisory ``fcntl`` lock on ``<dir>/.lock`` (holding the PID and host, released when the
process ends, even by a kill) and compares the settings with the ``settings.json`` the
directory was started with; a difference refuses the run and lists the differing
settings.  ``overwrite=True`` empties the directory first (the explicit way out).
Settings that only shape the final report (``FREE``) may change between reruns.
"""

import json
import os
import shutil

from tf_st.fileio import LockHeld, atomic_write_json, lock_file, release

SETTINGS_FILE = "settings.json"
LOCK_FILE = ".lock"
FREE = ("output_dir", "final_attacks", "final_examples", "eval_batch_size")
# Settings added after runs were recorded, with the value an older ``settings.json`` (which
# lacks them) meant: the L-inf threat model.
ADDED_SINCE = {"norm": "linf", "hparams.norm": "Linf"}


class RunDirectoryError(ValueError):
    """The run directory cannot be used for this run (in use, or other settings)."""


def differences(old, new, free=FREE):
    """``[(name, old value, new value)]`` over the union of keys, nested ``hparams``
    flattened, ``free`` keys ignored."""
    def flat(d):
        out = {k: v for k, v in d.items() if k != "hparams" and k not in free}
        out.update({f"hparams.{k}": v for k, v in (d.get("hparams") or {}).items()})
        return out
    a, b = flat(old), flat(new)
    a = {**{k: v for k, v in ADDED_SINCE.items() if k in b}, **a}
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def read_settings(record, overwrite=False):
    """The settings a run directory was started with; a corrupt ``settings.json`` is
    refused naming it (``None`` with ``overwrite``: the directory is then emptied)."""
    try:
        with open(record) as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError(f"a JSON {type(old).__name__}, not an object")
        return old
    except (ValueError, UnicodeDecodeError) as e:
        if overwrite:
            return None
        raise RunDirectoryError(
            f"{record} is corrupt ({e}); it records the settings this run directory was "
            "started with: rerun with --overwrite to discard the run, or restore the "
            "file") from None


class RunDirectory:
    def __init__(self, path, settings_json, overwrite=False):
        self.path, self.settings, self.overwrite = path, settings_json, overwrite
        self._fd = None

    def __enter__(self):
        if os.path.islink(self.path) and not os.path.exists(self.path):
            raise RunDirectoryError(f"--output_dir {self.path} is a dangling symbolic link "
                                    f"(to {os.readlink(self.path)}); create its target or "
                                    "choose another --output_dir")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirectoryError(f"--output_dir {self.path} exists and is not a directory")
        os.makedirs(self.path, exist_ok=True)
        if not os.access(self.path, os.W_OK):
            raise RunDirectoryError(f"--output_dir {self.path} is not writable")
        try:
            self._fd = lock_file(os.path.join(self.path, LOCK_FILE))
        except LockHeld as held:
            raise RunDirectoryError(f"run directory {self.path} is in use by {held.owner}; "
                                    "wait for it or choose another --output_dir") from None
        try:
            self._check_settings()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _check_settings(self):
        record = os.path.join(self.path, SETTINGS_FILE)
        if os.path.exists(record):
            old = read_settings(record, self.overwrite)  # None: corrupt, with --overwrite
            diff = differences(old, self.settings) if old is not None else None
            if diff and not self.overwrite:
                listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff)
                raise RunDirectoryError(
                    f"run directory {self.path} holds a run with other settings ({listed}); "
                    "rerun with --overwrite to discard it, or choose another --output_dir")
            if old is None or diff:
                for name in os.listdir(self.path):
                    if name == LOCK_FILE:
                        continue
                    p = os.path.join(self.path, name)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        atomic_write_json(record, self.settings)

    def __exit__(self, *exc):
        if self._fd is not None:
            release(self._fd, os.path.join(self.path, LOCK_FILE))
            self._fd = None
        return False
