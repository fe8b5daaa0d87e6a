r"""Cross-check of our AutoAttack against the official PyTorch code, end to end.

  pip install torch==2.13.0 && pip install --no-deps pyautoattack==0.2.0
  python -m benchmarks.aa_crosscheck --weights=runs/demo/best.weights.h5 --examples=200
  python -m benchmarks.aa_crosscheck --weights=... --norm=l2 --epsilon=0.5   # L2

The reference is the official fra31/auto-attack (``--reference=official``, the default),
installed from PyPI's ``pyautoattack`` 0.2.0, which packages the repository's code
unchanged: ``AutoAttack(version='standard').run_standard_evaluation``.  Optionally
torchattacks 3.5.1 (``--reference=torchattacks``, ``pip install --no-deps
torchattacks==3.5.1``), a port of it, with its iterations set to the official 100
(torchattacks' own default is 10; ``--noofficial_settings`` keeps it).  Both run on the
*same weights*: the Keras small CNN is converted to PyTorch with
``tf_st.models.keras_to_torch_state_dict`` and the logits are checked to agree first.
The runs draw different random numbers (APGD's start, Square), so per-example flags can
differ on borderline points; the iterate-for-iterate parity of the deterministic parts
(APGD given its start, FAB-T) is a test, ``tests/test_autoattack_official.py``.
Not part of CI (long).
"""

import time

from absl import flags

_WEIGHTS = flags.DEFINE_string("weights", None, "small_cnn .weights.h5 (e.g. a run's best).")
_EXAMPLES = flags.DEFINE_integer("examples", 200, "cifar10_mini test images.")
_NORM = flags.DEFINE_enum("norm", "linf", ["linf", "l2"],
                          "Threat model of both runs (the official norm='Linf' or 'L2').")
_EPS = flags.DEFINE_float("epsilon", None, "Radius (default 8/255 in L-inf, 0.5 in L2).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of both runs.")
_SQUARE_ONLY = flags.DEFINE_integer(
    "square_only", 0,
    "If > 0: run only Square with this many queries, from the clean points, in both "
    "implementations (official only), to compare the black-box attack's strength; in "
    "AA standard Square rarely gets a point the white-box attacks left.")
_REFERENCE = flags.DEFINE_enum(
    "reference", "official", ["official", "torchattacks"],
    "PyTorch implementation to compare with: fra31/auto-attack (pyautoattack 0.2.0) or "
    "torchattacks 3.5.1.")
_BATCH = flags.DEFINE_integer("batch_size", 500, "Batch size of both implementations.")
_OFFICIAL = flags.DEFINE_boolean(
    "official_settings", True,
    "Set torchattacks' attacks to the official standard's settings (100 iterations, "
    "Square without schedule rescaling) instead of torchattacks' defaults.")


def torch_small_cnn(num_classes=10):
    import torch.nn as nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [3, 32, 32, 64, 64]
            for i in range(1, 5):
                setattr(self, f"conv{i}", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1, bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(widths[i]))
            self.fc1 = nn.Linear(64, 128)
            self.fc2 = nn.Linear(128, num_classes)

        def forward(self, x):
            import torch.nn.functional as F
            for i in range(1, 5):
                x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
                if i in (1, 3):
                    x = F.max_pool2d(x, 2)
            x = x.mean(dim=(2, 3))
            return self.fc2(F.relu(self.fc1(x)))

    return SmallCNN()


def _norm():
    from tf_st.attacks.checks import check_norm  # the official spelling, 'Linf' / 'L2'
    return check_norm(_NORM.value)


def _eps():
    if _EPS.value is not None:
        return _EPS.value
    return 8 / 255 if _NORM.value == "linf" else 0.5


def _run_official(net, xt, yt):
    import logging

    from pyautoattack import AutoAttack

    log = []
    t0 = time.time()

    class Collect(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("robust accuracy after"):
                log.append(f"{msg} [{time.time() - t0:.0f}s since start]")

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Collect())
    if _SQUARE_ONLY.value:
        atk = AutoAttack(net, norm=_norm(), eps=_eps(), version="custom",
                         attacks=["square"], seed=_SEED.value, device="cpu")
        atk.square.n_queries = _SQUARE_ONLY.value
    else:
        atk = AutoAttack(net, norm=_norm(), eps=_eps(), version="standard",
                         seed=_SEED.value, device="cpu")
    adv, _ = atk.run_standard_evaluation(xt, yt, batch_size=_BATCH.value)
    return adv, time.time() - t0, log, "fra31/auto-attack (pyautoattack 0.2.0)"


def _run_torchattacks(net, xt, yt):
    import torchattacks

    start = time.time()
    atk = torchattacks.AutoAttack(net, norm=_norm(), eps=_eps(), version="standard",
                                  n_classes=10, seed=_SEED.value)
    theirs_log = []

    def timed(attack):
        forward = attack.forward

        def run(images, labels):
            t0 = time.time()
            out = forward(images, labels)
            theirs_log.append(f"{type(attack).__name__}: called on {len(labels)} images "
                              f"({time.time() - t0:.0f}s)")
            return out
        return run

    for a in atk._autoattack.attacks:  # MultiAttack calls attack(...) -> attack.forward
        a.forward = timed(a)
        # torchattacks' 'standard' leaves APGD, APGD-T and FAB at its own default of 10
        # iterations and Square at resc_schedule=True; the official standard runs 100
        # iterations and Square with resc_schedule=False (reference section 5).
        if _OFFICIAL.value:
            if hasattr(a, "steps"):
                a.steps = 100
            if hasattr(a, "rescale_schedule"):
                a.rescale_schedule = False
    print("torchattacks settings: " + ", ".join(
        f"{type(a).__name__}(steps={getattr(a, 'steps', '-')}, "
        f"n_queries={getattr(a, 'n_queries', '-')}, "
        f"rescale_schedule={getattr(a, 'rescale_schedule', '-')})"
        for a in atk._autoattack.attacks))
    return atk(xt, yt), time.time() - start, theirs_log, "torchattacks 3.5.1"


def main(argv):
    del argv
    if _SQUARE_ONLY.value and _REFERENCE.value != "official":
        raise ValueError("--square_only needs --reference=official")
    import numpy as np
    import torch
    from tf_st import data, models
    from tf_st.attacks import autoattack
    from tf_st.models.torch_import import keras_to_torch_state_dict

    clf = models.build("small_cnn", 10)
    if _WEIGHTS.value:
        clf.load_weights(_WEIGHTS.value)
    net = torch_small_cnn()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in keras_to_torch_state_dict(clf).items()},
                        strict=False)
    net.eval()
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=_EXAMPLES.value)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y)
    with torch.no_grad():
        z_pt = net(xt).numpy()
    z_tf = clf(x, training=False).numpy()
    print(f"logit agreement: max |TF - PyTorch| = {np.abs(z_pt - z_tf).max():.2e}")

    start = time.time()
    version = dict(version="custom", attacks=(autoattack.Square(
        steps=_SQUARE_ONLY.value),)) if _SQUARE_ONLY.value else dict(version="standard")
    ours = autoattack.evaluate(lambda t: clf(t, training=False), x, y, epsilon=_eps(),
                               norm=_norm(), **version,
                               seed=_SEED.value, batch_size=_BATCH.value, verbose=False,
                               logger=lambda *a: None)
    ours_s = time.time() - start
    run = _run_official if _REFERENCE.value == "official" else _run_torchattacks
    adv, theirs_s, theirs_log, name = run(net, xt, yt)
    with torch.no_grad():
        theirs = (net(adv).argmax(1) == yt).numpy() & (z_pt.argmax(1) == y)
    agree = np.mean(ours.robust_flags == theirs)
    what = (f"Square only, {_SQUARE_ONLY.value} queries" if _SQUARE_ONLY.value
            else "AA standard")
    print(f"{len(x)} cifar10_mini test images, {_norm()} eps {_eps():.5f}, {what}")
    print("| implementation | clean | robust | seconds |")
    print("|---|---|---|---|")
    print(f"| tf_st (TensorFlow) | {100 * ours.clean_accuracy:.1f}% | "
          f"{100 * ours.robust_accuracy:.1f}% | {ours_s:.0f} |")
    print(f"| {name}, PyTorch | {100 * np.mean(z_pt.argmax(1) == y):.1f}% | "
          f"{100 * theirs.mean():.1f}% | {theirs_s:.0f} |")
    print(f"per-example robust flags agree on {100 * agree:.1f}% "
          f"({int(np.sum(ours.robust_flags & ~theirs))} robust only for tf_st, "
          f"{int(np.sum(~ours.robust_flags & theirs))} only for {name})")
    for log in ours.attacks:
        print(f"  tf_st after {log.name}: {100 * log.robust_accuracy:.1f}% ({log.seconds:.0f}s)")
    for line in theirs_log:
        print(f"  {name} {line}")


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
