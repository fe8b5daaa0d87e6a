"""End to end on real data: a naturally trained model has ~0% PGD accuracy, an
ST-trained one is clearly above it (bundled cifar10_mini, small CNN, a few epochs)."""

import keras
import pytest

from tf_st import data, methods, models
from tf_st.evaluation import evaluate
from tf_st.training.optim import TorchSGD

pytestmark = pytest.mark.slow


def _train(key, epochs, lr=0.02, **hparams):
    keras.utils.set_random_seed(0)
    train = data.load("cifar10_mini", "train")
    clf = models.build("small_cnn", 10)
    method = methods.build(key, clf, **hparams)
    method.compile(optimizer=TorchSGD(lr, momentum=0.9, coupled_weight_decay=5e-4))
    for epoch in range(epochs):
        method.fit(data.train_pipeline(train, 64, "none", seed=epoch), epochs=1, verbose=0)
    return clf


def test_natural_model_is_not_robust_and_st_model_is():
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=500)
    results = {}
    # ST with K=3 steps of 4/255 keeps the test to a couple of minutes on 2 cores.
    for key, epochs, hp in (("natural", 8, {}), ("st", 2, {"steps": 3, "step_size": 4 / 255})):
        clf = _train(key, epochs, **hp)
        res = evaluate(lambda t: clf(t, training=False), (x, y), ["clean", "pgd20"],
                       batch_size=250, verbose=False)
        results[key] = (res.attacks["clean"].accuracy, res.attacks["pgd20"].accuracy)
    (nat_clean, nat_pgd), (st_clean, st_pgd) = results["natural"], results["st"]
    assert nat_clean > 0.15, results  # it learned something (chance: 0.1)
    assert nat_pgd < 0.05, results
    assert st_pgd > 0.1 and st_pgd > nat_pgd + 0.08, results
    assert st_pgd <= st_clean
