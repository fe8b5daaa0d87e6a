"""Running a command line as a user would after crashes: killed at random moments, then
run again until it finishes on its own."""

import os
import random
import signal
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def kill_then_rerun(cmd, *, full, seed, fraction, killed_runs, timeout, runs=8):
    """Runs ``cmd`` (from the checkout) again and again: run ``i`` of the first
    ``killed_runs`` gets SIGKILL after ``uniform(*fraction) * full * 0.6**i`` seconds
    unless it has finished by then; later runs may take ``timeout`` seconds.  A resumed
    run has less left to do than the first, so the kill moments shrink with it (with one
    delay for all, a loaded machine let the second run finish first: one kill, not the
    several the tests ask for).  The first run that finishes must exit with 0.  Returns
    how many runs were killed."""
    rng = random.Random(seed)
    kills = 0
    for run in range(runs):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(*fraction) * full * 0.6 ** run
                      if run < killed_runs else timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read()[-2000:]
        return kills
    raise AssertionError(f"{' '.join(map(str, cmd))} did not finish in {runs} runs")
