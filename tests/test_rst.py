"""Robust self-training: batch composition as semisup-adv's SemiSupervisedSampler draws
it, the epoch length, loading of the pseudo-labelled set, the cosine schedule, and a
trainer run with --unlabeled."""

import json
import math

import numpy as np
import pytest

from tf_st.data import rst
from tf_st.training.optim import EpochCosineSchedule
from trainers import train


def test_batch_plan_counts_like_the_reference():
    rng = np.random.RandomState(0)
    n_sup, n_unsup, bs = 50, 1000, 16
    plan = rst.batch_plan(n_sup, n_unsup, bs, 0.5, rst.batches_per_epoch(n_sup, bs), rng)
    assert plan.shape == (4, 16)  # ceil(50 / 16) batches of 16
    sup_counts = (plan < n_sup).sum(1)
    # 8 labelled per batch from one permutation: 8, 8, 8, 8 (32 of 50 used this epoch).
    assert sup_counts.tolist() == [8, 8, 8, 8]
    sup = plan[plan < n_sup]
    assert len(set(sup.tolist())) == len(sup)  # a permutation: no repeats
    assert plan.max() < n_sup + n_unsup
    # Every batch is shuffled: labelled examples are not all at the front.
    assert any((row[:8] >= n_sup).any() for row in plan)


def test_batch_plan_fills_a_short_permutation_tail_with_pseudo_labels():
    rng = np.random.RandomState(1)
    plan = rst.batch_plan(10, 100, 8, 0.5, 4, rng)  # 4 labelled per batch, 10 labelled
    assert (plan < 10).sum(1).tolist() == [4, 4, 2, 4]  # 4+4+2 ends a permutation
    assert all(len(row) == 8 for row in plan)


def test_unsup_batch_size_is_int_of_fraction():
    plan = rst.batch_plan(100, 100, 10, 0.35, 3, np.random.RandomState(0))
    assert (plan < 100).sum(1).tolist() == [7, 7, 7]  # 10 - int(3.5)


def test_load_unlabeled_npz_and_folder(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, (6, 4, 4, 3)).astype(np.uint8)
    np.savez(tmp_path / "p.npz", images=images, labels=np.arange(6) % 2)
    x, y = rst.load_unlabeled(str(tmp_path / "p.npz"))
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [0, 1, 0, 1, 0, 1]
    np.savez(tmp_path / "f.npz", images=images / 255.0, labels=np.arange(6))
    np.testing.assert_array_equal(rst.load_unlabeled(str(tmp_path / "f.npz"))[0], images)
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(ValueError, match="lacks"):
        rst.load_unlabeled(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError):
        rst.load_unlabeled(str(tmp_path / "missing.npz"))
    import tensorflow as tf
    for label, name in enumerate(("b_class", "a_class")):
        (tmp_path / "folder" / name).mkdir(parents=True)
        tf.io.write_file(str(tmp_path / "folder" / name / "0.png"),
                         tf.io.encode_png(images[label]))
    x, y = rst.load_unlabeled(str(tmp_path / "folder"))
    assert y.tolist() == [0, 1]  # sorted class folders: a_class = 0
    np.testing.assert_array_equal(x[0], images[1])


def test_rst_epochs_yield_the_planned_examples_and_resume_identically():
    x_l = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    y_l = np.zeros(20, np.int64)
    x_u = (100 + np.arange(30, dtype=np.uint8)).reshape(30, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    y_u = np.ones(30, np.int64)
    full = list(rst.rst_epochs((x_l, y_l), (x_u, y_u), 8, 0.5, "none", 3, 0, 3, 3).as_numpy_iterator())
    assert len(full) == 9  # 3 epochs x ceil(20 / 8) batches
    for x, y in full:
        assert (y == 0).sum() == 4 and (y == 1).sum() == 4
        np.testing.assert_array_equal(x[:, 0, 0, 0] >= 100 / 255.0 - 1e-6, y == 1)
    resumed = list(rst.rst_epochs((x_l, y_l), (x_u, y_u), 8, 0.5, "none", 3, 1, 3, 3).as_numpy_iterator())
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_cosine_schedule_matches_rst():
    s = EpochCosineSchedule(0.1, epochs=200, steps_per_epoch=10)
    for epoch in (1, 2, 100, 200):
        expected = 0.1 * 0.5 * (1 + math.cos((epoch - 1) / 200 * math.pi))
        assert s.lr_at_epoch(epoch) == pytest.approx(expected)
        assert float(s((epoch - 1) * 10 + 3)) == pytest.approx(expected, rel=1e-6, abs=1e-8)


@pytest.mark.slow  # a whole trainer
def test_trainer_with_unlabeled_set(tmp_path):
    from tf_st import data
    x, _ = data.as_numpy(data.load("cifar10_mini", "test"), limit=40)
    np.savez(tmp_path / "pseudo.npz", images=np.round(x * 255).astype(np.uint8),
             labels=np.arange(40) % 10)
    out = tmp_path / "run"
    assert train.run_in_process([
        "--method=trades", f"--unlabeled={tmp_path / 'pseudo.npz'}", "--arch=small_cnn",
        "--epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--steps=1",
        "--eval_examples=16", "--final_attacks=", f"--output_dir={out}"]) == 0
    card = json.loads((out / "export" / "1" / "model_card.json").read_text())
    assert card["flags"]["nesterov"] is True and card["flags"]["lr_schedule"] == "cosine"
    assert card["hparams"]["epsilon"] == 0.031 and card["hparams"]["step_size"] == 0.007
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.array([0, 12]))
    assert train.run_in_process(["--method=trades", f"--unlabeled={bad}", "--arch=small_cnn",
                                 "--epochs=1", f"--output_dir={tmp_path / 'r2'}"]) == 2


@pytest.mark.slow  # a whole trainer
def test_pseudo_label_cli_labels_held_out_images_and_feeds_rst(tmp_path, capsys):
    from trainers import pseudo_label

    model_run = tmp_path / "natural"
    assert train.run_in_process(["--method=natural", "--arch=small_cnn", "--epochs=1",
                                 "--steps_per_epoch=2", "--batch_size=32", "--eval_examples=16",
                                 "--final_attacks=", f"--output_dir={model_run}"]) == 0
    out = tmp_path / "pseudo.npz"
    argv = ["pseudo_label", f"--saved_model={model_run / 'export'}", "--dataset=cifar10_mini",
            "--split=train", "--skip=2900", f"--output={out}"]
    assert pseudo_label.main(argv) == 0
    assert "wrote 100 pseudo-labelled images" in capsys.readouterr().out
    with np.load(out) as f:
        images, labels, true = f["images"], f["labels"], f["true_labels"]
        assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
        assert 0 <= labels.min() and labels.max() < 10 and len(true) == 100
    from tf_st import data
    x, y = rst.split_arrays(data.load("cifar10_mini", "train"))
    np.testing.assert_array_equal(images, x[2900:])  # the held-out tail, in order
    np.testing.assert_array_equal(true, y[2900:])
    assert pseudo_label.main(argv[:-1] + [f"--output={tmp_path / 'nodir' / 'p.npz'}"]) == 2
    assert "not a writable directory" in capsys.readouterr().err
    assert pseudo_label.main(argv[:1] + ["--skip=-1"]) == 2
