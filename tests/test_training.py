"""PyTorch-semantics SGD, the per-epoch lr schedule, presets and run checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_st.training import presets
from tf_st.training.optim import EpochPiecewiseSchedule, TorchSGD


def torch_sgd_reference(w, grads, lrs, momentum, wd, nesterov=False):
    """torch.optim.SGD's documented update, by hand."""
    w = w.copy()
    buf = None
    for g, lr in zip(grads, lrs):
        d = g + wd * w
        buf = d.copy() if buf is None else momentum * buf + d
        step = d + momentum * buf if nesterov else buf
        w = w - lr * step
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_torch_sgd_matches_pytorch_rule_across_an_lr_cut(float64, nesterov):
    rng = np.random.RandomState(0)
    w0 = rng.randn(5)
    grads = [rng.randn(5) for _ in range(6)]
    schedule = EpochPiecewiseSchedule(0.1, milestones=(2,), steps_per_epoch=3)
    var = keras.Variable(w0)
    opt = TorchSGD(schedule, momentum=0.9, coupled_weight_decay=5e-4, nesterov=nesterov)
    for g in grads:
        opt.apply([tf.constant(g)], [var])
    expected = torch_sgd_reference(w0, grads, [0.1] * 3 + [0.01] * 3, 0.9, 5e-4, nesterov)
    # Keras evaluates learning rates in float32, hence 1e-7 rather than 1e-12.
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-7)
    # Keras' own SGD differs after the cut (its momentum buffer holds lr * g).
    var2 = keras.Variable(w0)
    keras_opt = keras.optimizers.SGD(schedule, momentum=0.9)
    for g in grads:
        keras_opt.apply([tf.constant(g + 5e-4 * var2.numpy())], [var2])
    assert not np.allclose(var2.numpy(), expected, rtol=1e-6)


def test_epoch_schedule_matches_st_at_epochs():
    s = EpochPiecewiseSchedule(0.1, (80, 100), steps_per_epoch=10)
    assert [s.lr_at_epoch(e) for e in (1, 79, 80, 99, 100, 120)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    # Step 789 is in (1-based) epoch 79, step 790 opens epoch 80.
    assert float(s(789)) == pytest.approx(0.1)
    assert float(s(790)) == pytest.approx(0.01)
    assert float(s(999)) == pytest.approx(0.001)


def test_presets_follow_the_paper():
    svhn = presets.resolve("st", "svhn")
    assert (svhn["epochs"], svhn["lr"], svhn["lr_milestones"], svhn["beta"]) == (80, 0.01, (50, 65), 8.0)
    assert svhn["step_size"] == pytest.approx(1 / 255) and svhn["augment"] == "none"
    c10 = presets.resolve("st", "cifar10")
    assert (c10["epochs"], c10["lr"], c10["lr_milestones"], c10["beta"]) == (120, 0.1, (80, 100), 6.0)
    assert c10["step_size"] == pytest.approx(2 / 255) and c10["augment"] == "crop_flip"
    assert presets.resolve("st", "cifar100")["beta"] == 4.0
    assert c10["epsilon"] == pytest.approx(8 / 255) and c10["weight_decay"] == 5e-4
    assert presets.resolve("st", "svhn_cropped") == svhn
    with pytest.raises(ValueError, match="no preset"):
        presets.resolve("st", "mnist")
