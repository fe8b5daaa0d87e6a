"""FAT's early stop and whole steps, CAT's and ALP's losses and AWP's perturb/restore
equal the official PyTorch code in float64 (benchmarks/crosscheck_methods.py), when
torch and checkouts of the official repositories are available ($TF_ST_REFERENCE_DIR,
default /tmp/ref, with Friendly-Adversarial-Training/ or FAT/, CAT/, AWP/).  The
AWP/RST whole steps run without checkouts too: tests/test_whole_step_parity.py."""

import os

import numpy as np
import pytest

from benchmarks import crosscheck_methods as cc

REF = os.environ.get("TF_ST_REFERENCE_DIR", "/tmp/ref")


def test_missing_references_are_named_and_exit_2(tmp_path, capsys):
    from absl import flags
    from absl.testing import flagsaver
    pytest.importorskip("torch")
    with flagsaver.flagsaver(reference_dir=str(tmp_path)):
        flags.FLAGS.mark_as_parsed()
        assert cc.main(["crosscheck"]) == 2
    assert "no checkout of ['fat', 'cat', 'awp', 'semisup-adv']" in capsys.readouterr().err


@pytest.mark.parametrize("check", ["fat", "cat", "awp"])
def test_equal_to_the_official_code(float64, check):
    torch = pytest.importorskip("torch")
    path = {"fat": cc.reference_path(REF, "Friendly-Adversarial-Training", "FAT"),
            "cat": cc.reference_path(REF, "CAT"), "awp": cc.reference_path(REF, "AWP")}[check]
    if path is None:
        pytest.skip(f"no official checkout for {check} under {REF}")
    from tf_st import data
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=8)
        rows = []
        getattr(cc, f"check_{check}")(torch, path, x.astype(np.float64), y, rows)
    finally:
        torch.set_default_dtype(old)
    assert len(rows) >= 6
    worst = max(rows, key=lambda r: r[1])
    assert worst[1] < 1e-10, worst


@pytest.mark.parametrize("variant", cc.FAT_CASES)
def test_fat_whole_step_equals_the_official_loop(float64, variant):
    """One traced step of FAT / FAT-TRADES / FAT-MART: weights and BN statistics as the
    script's ``train`` leaves them (the official ``earlystop`` needs the checkout)."""
    torch = pytest.importorskip("torch")
    path = cc.reference_path(REF, "Friendly-Adversarial-Training", "FAT")
    if path is None:
        pytest.skip(f"no official FAT checkout under {REF}")
    from tf_st import data
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=8)
        rows = []
        updates = cc.check_fat_whole_step(torch, path, variant, x.astype(np.float64), y, rows)
    finally:
        torch.set_default_dtype(old)
    assert updates == (1 if variant == "fat" else 2)
    worst = max(rows, key=lambda r: r[1])
    assert worst[1] < 1e-10, worst
