"""Fixed-size batches: the one padding rule of every evaluation loop (a compiled attack
traces once per batch size, so a short batch is padded to the size, never traced anew)."""

import numpy as np


def pad_rows(size, *arrays, row=-1):
    """Pads arrays to ``size`` rows by repeating their row ``row``.

    The padded rows' results are dropped by the caller (``[:n]``).

    Args:
      size: the batch size to pad to.
      *arrays: arrays with the same number of rows ``n <= size``.
      row: the row to repeat.

    Returns:
      The tuple of padded arrays (the arrays themselves when ``n == size``).

    Raises:
      ValueError: the arrays have different numbers of rows, or more than ``size``.
    """
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("arrays to pad have different numbers of rows")
    if n > size:
        raise ValueError(f"{n} rows do not fit a batch of {size}")
    if n == size:
        return arrays
    return tuple(np.concatenate([a, np.repeat(a[[row]], size - n, axis=0)]) for a in arrays)
