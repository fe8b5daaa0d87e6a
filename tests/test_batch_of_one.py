"""Every attack runs on a batch of one example of a loaded SavedModel (whose signature's
gradient has batch dimension None, which used to turn a static batch of 1 into None and
break the attack loops' shape invariants), and the evaluation CLI evaluates one example."""

import json

import numpy as np
import pytest

from tf_st import data, models
from tf_st.attacks import specs
from tf_st.evaluation import cli
from tf_st.saved_model import export_classifier, load

EPS, STEP = 8 / 255, 2 / 255
L2_EPS = 0.5
ATTACKS = {
    "pgd": specs.PGD(epsilon=EPS, step_size=STEP, steps=3),
    "cw": specs.PGD(epsilon=EPS, step_size=STEP, steps=3, loss="cw"),
    "every_iterate": specs.EveryIteratePGD(epsilon=EPS, step_size=STEP, steps=3, restarts=2),
    "early_stopped": specs.EarlyStoppedPGD(epsilon=EPS, step_size=STEP, steps=3, tau=1),
    "fgsm": specs.FGSM(epsilon=EPS),
    "apgd": specs.APGD(epsilon=EPS, steps=3),
    "apgdt": specs.APGDT(epsilon=EPS, steps=3, targets=2),
    "fabt": specs.FABT(epsilon=EPS, steps=3, targets=2),
    "square": specs.Square(epsilon=EPS, steps=10),
    "pgd_l2": specs.PGD(epsilon=L2_EPS, step_size=0.1, steps=3, norm="L2"),
    "apgd_l2": specs.APGD(epsilon=L2_EPS, steps=3, norm="L2"),
    "apgdt_l2": specs.APGDT(epsilon=L2_EPS, steps=3, targets=2, norm="L2"),
    "fabt_l2": specs.FABT(epsilon=L2_EPS, steps=3, targets=2, norm="L2"),
    "square_l2": specs.Square(epsilon=L2_EPS, steps=10, norm="L2"),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    export_classifier(models.build("small_cnn", 10), str(d / "export"), version=1)
    model = load(str(d / "export"))
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=200)
    # One example the untrained model gets right, so that the attacks have work to do.
    right = np.nonzero(np.argmax(model(x).numpy(), 1) == y)[0]
    assert len(right)
    i = int(right[0])
    return d, model, x[i:i + 1], y[i:i + 1]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_takes_a_batch_of_one(loaded, name):
    _, model, x, y = loaded
    result = ATTACKS[name].run(model, x, y, seed=0)
    assert result.x_adv.shape == x.shape
    if getattr(ATTACKS[name], "norm", "Linf") == "L2":
        assert np.sqrt(np.sum((np.asarray(result.x_adv) - x) ** 2)) <= L2_EPS + 1e-5
    else:
        assert np.max(np.abs(np.asarray(result.x_adv) - x)) <= EPS + 1e-6
    assert np.asarray(result.fooled).shape == (1,)


def test_the_evaluation_cli_evaluates_one_example(loaded, tmp_path):
    d, _, _, _ = loaded
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", f"--saved_model={d}/export", "--dataset=cifar10_mini",
                     "--examples=1", "--batch_size=1", "--attacks=clean,pgd2",
                     f"--output={out}"]) == 0
    report = json.loads(out.read_text())
    assert report["num_examples"] == 1 and set(report["attacks"]) == {"clean", "pgd2"}
