"""AutoAttack's orchestration loop (issue 24): a component is one class, the loop is small
functions, and the padding and probability-output rules are shared with tf_st.evaluation."""

import ast
import dataclasses
import inspect
import json

import numpy as np
import pytest
import tensorflow as tf

from tf_st.attacks import autoattack as aa
from tf_st.attacks import batches, checks, specs
from tf_st.attacks.autoattack import runner
from tf_st.evaluation import report, robustness


@dataclasses.dataclass(frozen=True)
class Probe(specs.Component):
    """A trivial targeted component: leaves x as it is and counts the points it attacks."""
    epsilon: float = 8 / 255
    steps: int = 0
    restarts: int = 2
    targets: int = 3
    name = "probe"
    targeted = True
    passes_field = "probe_points"

    def stage(self, logits_fn, x, y, seed, rank, restart):
        return tf.identity(x), tf.ones([tf.shape(x)[0]], tf.float32)

    def count_warning(self, total):
        return f"probe attacked {total} points"


def _linear(classes=5, seed=0):
    w = np.random.default_rng(seed).normal(size=(2 * 2 * 3, classes))
    return lambda x: tf.reshape(x, [tf.shape(x)[0], -1]) @ tf.cast(w, x.dtype)


def test_a_new_component_is_one_class(tmp_path):
    logits_fn = _linear()
    x = np.random.default_rng(1).uniform(0, 1, (11, 2, 2, 3)).astype(np.float32)
    y = np.asarray(logits_fn(x)).argmax(1)
    y[:2] = (y[:2] + 1) % 5  # two clean errors
    state = tmp_path / "state.json"
    with pytest.warns(aa.AutoAttackWarning, match="probe attacked"):
        res = specs.AutoAttack(version="custom", components=(Probe(),)).evaluate(
            logits_fn, x, y, seed=0, batch_size=4, verbose=False, state_file=str(state))
    np.testing.assert_array_equal(res.robust_flags, res.clean_flags)
    # 3 target ranks x 2 restarts, each on the 9 clean-correct points
    assert res.passes == {"square_queries": 0, "probe_points": 6 * 9}
    assert [a.name for a in res.attacks] == ["probe"] and res.attacks[0].attacked == 54
    saved = json.loads(state.read_text())
    assert saved["finished"] == [f"0:probe:t{t}:r{r}" for t in (2, 3, 4) for r in (0, 1)]
    # resuming a finished run does nothing
    events = []
    aa.evaluate(logits_fn, x, y, version="custom", attacks=(Probe(),), seed=0, batch_size=4,
                verbose=False, state_file=str(state), progress=events.append)
    assert not [e for e in events if e["event"] == "batch"]
    with pytest.raises(TypeError, match="component"):
        aa.evaluate(logits_fn, x, y, version="custom", attacks=(specs.PGD(),), verbose=False)


def test_padding_and_probability_check_are_shared():
    assert runner.pad_rows is batches.pad_rows is robustness.pad_rows
    assert (runner.looks_like_probabilities is checks.looks_like_probabilities
            is report.looks_like_probabilities)
    assert runner.components_for is specs.components_for  # one version check
    a, b = np.arange(6).reshape(3, 2), np.arange(3)
    pa, pb = batches.pad_rows(5, a, b)
    np.testing.assert_array_equal(pb, [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(batches.pad_rows(5, a, b, row=0)[1], [0, 1, 2, 0, 0])
    assert batches.pad_rows(3, a, b)[0] is a
    with pytest.raises(ValueError):
        batches.pad_rows(2, a, b)
    z = np.random.default_rng(0).normal(size=(4, 10))
    assert not checks.looks_like_probabilities(z)
    assert checks.looks_like_probabilities(tf.nn.softmax(z).numpy())
    # both callers warn on the same outputs
    p = tf.nn.softmax(z).numpy()
    assert any("probabilities" in w for w in report.sanity_warnings(lambda x: p, np.ones((4, 1))))
    found = []
    runner._check_outputs(p, p, found.append)
    assert len(found) == 1 and "probabilities" in found[0]


def test_orchestration_functions_are_short_and_not_stringly_typed():
    source = inspect.getsource(runner)
    def code_lines(node):  # the docstring is documentation, not orchestration
        body = node.body
        if len(body) > 1 and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]
        return node.end_lineno - body[0].lineno + 2  # + the def line
    lengths = {node.name: code_lines(node) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.FunctionDef)}
    assert max(lengths.values()) <= 60, lengths
    assert "extra" not in source and '"apgd-t"' not in source and '"square"' not in source
