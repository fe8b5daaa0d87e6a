r"""Memory of an AutoAttack run grows with the data, not with the work: peak resident
memory for N and 10N examples, same attacks, same batch size.

  python -m benchmarks.autoattack_memory --examples=1000,10000

Uses synthetic CIFAR-shaped data (uniform noise images, labels = the
model's own predictions, so every point is attacked) and a reduced AA (every attack of
``standard`` with few iterations/targets) on the small CNN, because the full standard
run on 10,000 images takes hours on a CPU; what is measured is whether memory stays
bounded by the batch size plus the inputs held on the host (x, and one copy of x for the
adversarials unless ``--no_adversarials``).  Each size runs in a fresh process.
"""

import json
import os
import resource
import subprocess
import sys

from absl import flags

_EXAMPLES = flags.DEFINE_list("examples", ["1000", "10000"], "Dataset sizes.")
_BATCH = flags.DEFINE_integer("batch_size", 500, "Batch size.")
_CHILD = flags.DEFINE_integer("child", 0, "(internal) run one size in this process.")
_ADV = flags.DEFINE_bool("adversarials", False, "Keep the adversarial examples (x_adv).")


def child(n):
    import keras
    import numpy as np
    from tf_st import models
    from tf_st.attacks import autoattack as aa

    keras.utils.set_random_seed(0)
    model = models.build("small_cnn", 10)
    x = np.random.RandomState(0).uniform(0, 1, (n, 32, 32, 3)).astype("float32")
    y = np.concatenate([np.argmax(model.predict(x[i:i + 1000], verbose=0), 1)
                        for i in range(0, n, 1000)])
    attacks = (aa.APGD(steps=5), aa.APGDT(steps=5, targets=1),
               aa.FABT(steps=5, targets=1), aa.Square(steps=20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = aa.evaluate(lambda t: model(t, training=False), x, y, version="custom",
                      attacks=attacks, seed=0, batch_size=_BATCH.value, verbose=False,
                      return_adversarials=_ADV.value, logger=lambda *a: None)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_rss_mb": after / 1024, "rss_before_attack_mb": before / 1024,
                      "input_mb": x.nbytes / 2 ** 20, "seconds": res.seconds,
                      "robust_accuracy": res.robust_accuracy}))


def main(argv):
    del argv
    if _CHILD.value:
        return child(_CHILD.value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = []
    for n in _EXAMPLES.value:
        r = subprocess.run([sys.executable, "-m", "benchmarks.autoattack_memory", f"--child={n}",
                            f"--batch_size={_BATCH.value}",
                            "--adversarials" if _ADV.value else "--noadversarials"],
                           cwd=root, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr[-2000:])
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"reduced AA on small_cnn, batch {_BATCH.value}, keep adversarials={_ADV.value}")
    print("| examples | inputs MB | RSS before attacks MB | peak RSS MB | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['input_mb']:.0f} | {r['rss_before_attack_mb']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
