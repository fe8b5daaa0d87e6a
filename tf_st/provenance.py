"""What a result was computed from, for reports to cite: the ``provenance`` block of
every evaluation report and of the model card, and the binomial intervals of the
accuracies.

* ``environment()``: versions (tf_st, TensorFlow, Keras), the time (ISO 8601 UTC) and
  the command line (``sys.argv``);
* ``saved_model_fingerprint(path)``: the SavedModel's own fingerprint
  (``tf.saved_model.experimental.read_fingerprint``, its ``saved_model_checksum``), or a
  SHA-256 of its files where TensorFlow cannot read one;
* ``examples_hash(indices, labels)``: what was evaluated, as a SHA-256 of the example
  indices and labels (int64, little-endian);
* ``accuracy_interval(k, n)``: the binomial standard error ``sqrt(p (1 - p) / n)`` and
  the 95% Wilson score interval of an accuracy ``p = k / n``.
"""

import datetime
import hashlib
import math
import os
import sys

import numpy as np

INTERVAL_NOTE = ("stderr = sqrt(p (1 - p) / n), the binomial standard error; ci95 = the "
                 "95% Wilson score interval (z = 1.96)")
_Z95 = 1.959963984540054


def accuracy_interval(correct, n):
    """``(stderr, [lo, hi])`` of the accuracy ``correct / n`` (see the module docstring);
    ``(None, None)`` for ``n = 0``."""
    n = int(n)
    if n <= 0:
        return None, None
    p = float(correct) / n
    stderr = math.sqrt(p * (1 - p) / n)
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return stderr, [max(0.0, centre - half), min(1.0, centre + half)]


def interval_fields(flags):
    """``{"stderr": ..., "ci95": [lo, hi]}`` of the accuracy of boolean per-example
    ``flags``."""
    flags = np.asarray(flags, bool)
    stderr, ci = accuracy_interval(int(flags.sum()), flags.size)
    return {"stderr": stderr, "ci95": ci}


def _versions():
    import tensorflow as tf

    import tf_st
    try:
        import keras
        keras_version = keras.__version__
    except ImportError:  # pragma: no cover - Keras ships with TensorFlow here
        keras_version = None
    return {"tf_st_version": tf_st.__version__, "tensorflow_version": tf.__version__,
            "keras_version": keras_version}


def environment():
    """The versions, the time of creation and the command line."""
    return {**_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds").replace("+00:00", "Z"),
            "command_line": list(sys.argv)}


def saved_model_fingerprint(path):
    """``{"saved_model_checksum": ...}`` (TensorFlow's fingerprint of the SavedModel at
    ``path``), or ``{"files_sha256": ...}`` (the SHA-256 of every file's relative path
    and contents, in sorted order) where TensorFlow reads none; for a file (a ``.keras``
    model), ``{"file_sha256": ...}`` of its contents."""
    if os.path.isfile(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"file_sha256": h.hexdigest()}
    try:
        import tensorflow as tf
        fp = tf.saved_model.experimental.read_fingerprint(path)
        return {"saved_model_checksum": str(fp.saved_model_checksum)}
    except Exception:  # noqa: BLE001 - no fingerprint.pb (older exports), any TF error
        pass
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return {"files_sha256": h.hexdigest()}


def examples_hash(indices, labels):
    """SHA-256 of the example indices and labels (each as little-endian int64)."""
    h = hashlib.sha256()
    h.update(np.asarray(indices, "<i8").tobytes())
    h.update(np.asarray(labels, "<i8").tobytes())
    return h.hexdigest()
