"""Atomic writes: a file or directory appears whole under its final name, or not at all.

Readers (a resumed run, TF Serving watching an export directory, a user tailing a
report) must never see half a file, so everything the project writes goes through here:
write to a temporary name in the destination's directory (same filesystem, so the
final ``os.replace`` is atomic), flush and fsync, then rename.  On failure the
temporary is removed.  ``tempfile`` creates the temporaries private (files 0600,
directories 0700); before the rename they get the modes an ordinary ``open``/``mkdir``
would have given them (``0o666 & ~umask``, ``0o777 & ~umask``: 0644/0755 under umask
022), a directory's whole tree included.
"""

import contextlib
import json
import os
import shutil
import signal
import tempfile

import numpy as np


_FAULT_COUNTS = {}


def fault_point(name):
    """Fault injection for ``tests/reliability``: with ``TF_ST_KILL_AT=<text>:<n>`` in
    the environment, the process kills itself with SIGKILL (a preemption: no cleanup
    runs) the n-th time it reaches a point whose name contains ``<text>``.  Points:
    ``write:<directory>/<file name>`` just before an atomic write's rename (the temporary
    complete, the final name not yet replaced) and ``checkpoint`` just after a checkpoint is
    saved.  Without the variable this is a dictionary lookup."""
    spec = os.environ.get("TF_ST_KILL_AT")
    if not spec:
        return
    target, _, count = spec.rpartition(":")
    if target and target in name:
        _FAULT_COUNTS[target] = _FAULT_COUNTS.get(target, 0) + 1
        if _FAULT_COUNTS[target] == int(count):
            os.kill(os.getpid(), signal.SIGKILL)


def _before_rename(path):
    """The fault point of an atomic write of ``path``: ``write:<directory>/<name>``."""
    fault_point("write:" + "/".join(os.path.abspath(path).split(os.sep)[-2:]))


def _exchange(a, b):
    """Atomically swaps the directories ``a`` and ``b`` (``renameat2(RENAME_EXCHANGE)``,
    which Python's os module does not expose); False where unavailable."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class LockHeld(Exception):
    """``lock_file`` is held by another process (``owner``: what it wrote there)."""

    def __init__(self, owner):
        super().__init__(owner)
        self.owner = owner


def lock_file(lock):
    """Takes an exclusive advisory ``fcntl`` lock on the file ``lock`` (created if need
    be), writes this process's PID and host into it and returns its descriptor (the lock
    lasts until the descriptor is closed, or the process ends, even by a kill).  Raises
    ``LockHeld`` naming the holder.  The lock counts only on the file the name still
    points to, so a holder that removes its lock file when done (``release(...,
    remove=True)``) cannot leave two processes each holding a lock."""
    import fcntl
    import socket
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(lock) as f:
                owner = f.read().strip() or "another process"
            os.close(fd)
            raise LockHeld(owner) from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


def release(fd, lock, remove=False):
    """Releases ``lock_file``'s lock; ``remove``: delete the file first, while still
    locked, so no one holds a lock on a removed name."""
    if remove:
        os.remove(lock)
    os.close(fd)


def _naming(e, path):
    """``e`` (an OSError, e.g. ``[Errno 28] No space left on device`` without a file
    name) as one that names the file being written."""
    if isinstance(e, OSError) and e.errno is not None:
        return OSError(e.errno, f"cannot write {path}: {e.strerror or e}")
    return OSError(f"cannot write {path}: {e}")


def check_free_space(path, needed):
    """Refuses a write of about ``needed`` bytes to ``path`` on a device with less free
    space: HDF5 (``save_weights``) crashes the process on a full disk instead of raising."""
    parent = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise OSError(28, f"cannot write {path}: {free} bytes free on its device, about "
                      f"{needed} needed")


def current_umask():
    """The process umask, read without changing it where Linux tells it
    (``/proc/self/status``: ``Umask:``); elsewhere ``os.umask`` is set and restored, which
    is racy if another thread creates files at that instant (acceptable: the project's
    writers run on the main thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _publish_modes(tmp, directory):
    """Gives the temporary ``tmp`` (and, for a directory, everything in it) the modes the
    umask gives new files and directories."""
    mask = current_umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if not directory:
        os.chmod(tmp, file_mode)
        return
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, dir_mode)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, file_mode)


def atomic_replace(source, path):
    """``os.replace(source, path)`` behind the fault point of a write of ``path``: the
    commit step of a file staged under another name."""
    _before_rename(path)
    os.replace(source, path)


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yields a temporary path beside ``path``; on a clean exit it replaces ``path``
    (an existing directory is removed first: directories cannot be renamed over)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".tmp-{base}-", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{base}-", dir=parent,
                                   suffix=os.path.splitext(base)[1])
        os.close(fd)
    try:
        try:
            yield tmp
            if not directory:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            _publish_modes(tmp, directory)
        except OSError as e:
            raise _naming(e, path) from None
        _before_rename(path)
        if directory and os.path.isdir(path):
            # Keep the old version servable until the new one is in place: swap the two
            # directories in one step where the kernel can (Linux renameat2), else move
            # the old aside for the instant of the second rename; then delete the old.
            if _exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = tmp + "-old"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def atomic_write_json(path, obj, indent=2):
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def atomic_write_npz(path, **arrays):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def atomic_save_weights(model, path):
    """``model.save_weights`` (Keras requires the ``.weights.h5`` ending)."""
    suffix = ".weights.h5"
    if not path.endswith(suffix):
        raise ValueError(f"weights path must end with {suffix}: {path}")
    tmp = path[:-len(suffix)] + ".tmp" + suffix
    # The weights, HDF5 metadata, and the old file until the rename.
    size = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    check_free_space(path, 2 * size + (1 << 20))
    try:
        model.save_weights(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _before_rename(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(directory):
    """Removes the temporaries a killed writer left in ``directory`` (``.tmp-*`` and
    ``*.tmp.weights.h5``); call it only where no other writer is active (a locked run
    directory, the export directory before an export)."""
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in os.listdir(directory):
        if name.startswith(".tmp-") or name.endswith(".tmp.weights.h5"):
            p = os.path.join(directory, name)
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)
            removed.append(name)
    return removed
