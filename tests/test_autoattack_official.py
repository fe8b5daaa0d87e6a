"""Parity with the official AutoAttack code (fra31/auto-attack, packaged on PyPI as
``pyautoattack`` 0.2.0, which ships the repository's ``autoattack`` package unchanged).

The deterministic parts of AA are compared run for run: APGD-CE and APGD-T (given the
same starting point) and FAB-T (no random start in the first restart, which is the only
one AA ``standard`` runs), on the same weights in Keras and PyTorch, everything in
float64.  In float64 the two implementations must return the same iterates, not only
the same robust flags -- any difference in step-size schedule, restart-from-best,
momentum, projection or success bookkeeping would show up as a different point.

The official FAB casts its inputs with ``Tensor.float()`` (to float32); for the float64
comparison that cast is made a no-op on floating tensors for the duration of the call.
Square's random draws come from torch's generator and are shared by the whole batch;
ours are per example.  In L2 the official run's draws are recorded and handed to
``square_l2(draws=...)``, which then returns the same iterates; the default per-example
draws (and L-inf Square) are compared statistically in ``benchmarks/aa_crosscheck.py``.

Skipped when torch or pyautoattack is missing (``pip install torch==2.13.0`` and
``pip install --no-deps pyautoattack==0.2.0``; ``.ci/run`` installs both).
"""

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
official_apgd = pytest.importorskip(
    "pyautoattack.autopgd_base",
    reason="official AutoAttack not installed (pip install --no-deps pyautoattack==0.2.0)")
official_fab = pytest.importorskip("pyautoattack.fab_pt")

from tf_st import data  # noqa: E402
from tf_st.attacks.apgd import apgd, apgd_targeted, target_by_rank  # noqa: E402
from tf_st.attacks.fab import fab_targeted  # noqa: E402

N = 24


@contextlib.contextmanager
def torch_float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def float_cast_is_identity():
    """The official FAB calls ``x.float()``; keep float64 tensors float64."""
    original = torch.Tensor.float
    torch.Tensor.float = lambda t, *a, **k: t if t.is_floating_point() else t.to(torch.float64)
    try:
        yield
    finally:
        torch.Tensor.float = original


def _models(kind):
    """The same random network in Keras (float64) and PyTorch, both taking NHWC input."""
    import keras
    rng = np.random.RandomState(3)
    h, c = 32, 10
    if kind == "mlp":
        d = 32 * 32 * 3
        w1, b1 = rng.randn(d, h) * 3 / np.sqrt(d), rng.randn(h) * 0.1
        inp = keras.Input((32, 32, 3))
        hid = keras.layers.Dense(h, activation="relu")(keras.layers.Flatten()(inp))
        feats = []
    else:
        k, b0 = rng.randn(3, 3, 3, 4) * 0.5, rng.randn(4) * 0.1
        d = 16 * 16 * 4
        w1, b1 = rng.randn(d, h) * 3 / np.sqrt(d), rng.randn(h) * 0.1
        inp = keras.Input((32, 32, 3))
        f = keras.layers.Conv2D(4, 3, strides=2, padding="valid", activation="relu")(
            keras.layers.ZeroPadding2D(((1, 0), (1, 0)))(inp))
        hid = keras.layers.Dense(h, activation="relu")(keras.layers.Flatten()(f))
        feats = [k, b0]
    w2, b2 = rng.randn(h, c) / np.sqrt(h), rng.randn(c) * 0.1
    model = keras.Model(inp, keras.layers.Dense(c)(hid))
    model.set_weights(feats + [w1, b1, w2, b2])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            t = lambda a: torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)))  # noqa: E731
            if feats:
                self.conv_w, self.conv_b = t(k.transpose(3, 2, 0, 1)), t(b0)
            self.w1, self.b1, self.w2, self.b2 = t(w1.T), t(b1), t(w2.T), t(b2)

        def forward(self, x):
            if feats:
                x = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (1, 0, 1, 0))
                x = torch.relu(torch.nn.functional.conv2d(x, self.conv_w, self.conv_b, stride=2))
                x = x.permute(0, 2, 3, 1)
            x = torch.relu(torch.nn.functional.linear(x.reshape(len(x), -1), self.w1, self.b1))
            return torch.nn.functional.linear(x, self.w2, self.b2)

    return model, Net().eval()


@pytest.fixture(params=["mlp", "conv"])
def setting(request, float64):
    with torch_float64():
        model, net = _models(request.param)
        x, _ = data.as_numpy(data.load("cifar10_mini", "test"), limit=N)
        x = x.astype(np.float64)
        z = model(x).numpy()
        with torch.no_grad():
            np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), z, atol=1e-12)
        # Labels = predictions, so every point is attacked; at these radii about half
        # the points survive, so step-size halvings and restarts from the best point
        # happen over the full 100 iterations.
        eps = {"mlp": 1 / 255, "conv": 0.2 / 255}[request.param]
        yield model, net, x, z.argmax(1), eps


def _run_official_apgd(attack, x, y, eps, seed):
    """The official start (APGD's Linf or L2 branch, by ``attack.norm``) and
    ``attack_single_run`` from it, float64."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    attack.init_hyperparam(xt)
    t = torch.randn(xt.shape) if attack.norm == "L2" else 2 * torch.rand(xt.shape) - 1
    start = (xt + eps * attack.normalize(t)).clamp(0.0, 1.0)
    return start.numpy(), [r.detach() for r in attack.attack_single_run(xt, yt, x_init=start)]


def _compare_apgd(official, ours, x, expect_both_outcomes=True, atol=1e-12):
    x_best, acc, loss_best, x_best_adv = official
    x_out, fooled, details = ours
    fooled = fooled.numpy()
    np.testing.assert_array_equal(fooled, ~acc.numpy())
    if expect_both_outcomes:  # else (far targets) the iterates are still compared
        assert 0 < fooled.sum() < len(x)
    np.testing.assert_allclose(details["x_best"].numpy(), x_best.numpy(), rtol=0, atol=atol)
    np.testing.assert_allclose(details["loss_best"].numpy(), loss_best.numpy(), rtol=1e-9,
                               atol=1e-12)
    # The returned adversarial is the latest misclassified iterate, as officially.
    np.testing.assert_allclose(x_out.numpy()[fooled], x_best_adv.numpy()[fooled], atol=atol)
    np.testing.assert_array_equal(x_out.numpy()[~fooled], x[~fooled])


def test_apgd_ce_matches_official_iterate_for_iterate(setting):
    model, net, x, y, eps = setting
    with torch_float64():
        attack = official_apgd.APGDAttack(net, n_iter=100, eps=eps, loss="ce", seed=0,
                                          device="cpu")
        start, official = _run_official_apgd(attack, x, y, eps, seed=0)
    ours = apgd(model, x, y, epsilon=eps, n_iter=100, loss="ce", x_init=start,
                return_details=True)
    _compare_apgd(official, ours, x)


@pytest.mark.parametrize("target_rank", [2, 10])
@pytest.mark.slow
def test_apgd_t_matches_official_iterate_for_iterate(setting, target_rank):
    model, net, x, y, eps = setting
    with torch_float64():
        attack = official_apgd.APGDAttack_targeted(net, n_iter=100, eps=eps, seed=0,
                                                   device="cpu")
        with torch.no_grad():
            # The official target choice (APGDAttack_targeted.perturb).
            attack.y_target = net(torch.from_numpy(x)).sort(dim=1)[1][:, -target_rank]
        start, official = _run_official_apgd(attack, x, y, eps, seed=target_rank)
    np.testing.assert_array_equal(target_by_rank(model(x), target_rank).numpy(),
                                  attack.y_target.numpy())
    ours = apgd_targeted(model, x, y, epsilon=eps, target_rank=target_rank, n_iter=100,
                         x_init=start, return_details=True)
    _compare_apgd(official, ours, x, expect_both_outcomes=target_rank == 2)


@pytest.mark.parametrize("target_rank", [2, 10])
@pytest.mark.slow
def test_fab_t_matches_official(setting, target_rank):
    model, net, x, y, eps = setting
    _compare_fab(model, net, x, y, eps, target_rank, "Linf")


def _compare_fab(model, net, x, y, eps, target_rank, norm):
    """Official FAB-T (``attack_single_run``, no random start) against ``fab_targeted``
    in ``norm``, float64: the same successes, distances and adversarials."""
    with torch_float64(), float_cast_is_identity(), torch.no_grad():
        attack = official_fab.FABAttack_PT(net, norm=norm, n_restarts=1, n_iter=100,
                                           eps=eps, seed=0, targeted=True, device="cpu")
        attack.target_class = target_rank
        adv = attack.attack_single_run(torch.from_numpy(x), torch.from_numpy(y),
                                       use_rand_start=False, is_targeted=True).numpy()
    # Officially every point with some adversarial gets its closest one (any distance);
    # perturb() then accepts it only within eps.
    diff = (adv - x).reshape(len(x), -1)
    dist = np.sqrt((diff ** 2).sum(1)) if norm == "L2" else np.abs(diff).max(1)
    found = dist > 0
    x_out, fooled, details = fab_targeted(model, x, y, epsilon=eps, target_rank=target_rank,
                                          n_iter=100, return_details=True, norm=norm)
    ours_dist = details["distance"].numpy()
    assert found.sum() > len(x) // 2
    np.testing.assert_array_equal(np.isfinite(ours_dist), found)
    np.testing.assert_allclose(ours_dist[found], dist[found], rtol=1e-9)
    official_fooled = found & (dist <= eps)
    np.testing.assert_array_equal(fooled.numpy(), official_fooled)
    if target_rank == 2:
        assert 0 < official_fooled.sum() < len(x)
    np.testing.assert_allclose(x_out.numpy()[official_fooled], adv[official_fooled], atol=1e-12)


# ------------------------------------------------------------------------------ L2
# The same harness in the official L2 branch (normalised-gradient steps, the L2
# projection ``x + d / (||d|| + 1e-12) * min(eps, ||d||)`` then [0, 1], a Gaussian start
# on the eps-sphere).  Radii at which about half the points survive 100 iterations.
L2_EPS = {"mlp": 0.1, "conv": 0.02}
# Unlike sign steps, which land on the same corners bit for bit, L2 iterates carry the
# two libraries' float64 rounding (1e-16); once a point has converged on the boundary its
# loss changes only in the last bits, so which of two iterates ~1e-10 apart is "best"
# (``loss > loss_best``) is a rounding tie-break (seen: 3.6e-10 on one of 24 points).
L2_ATOL = 1e-8


def _l2_setting(setting):
    model, net, x, y, _ = setting
    kind = "mlp" if len(model.layers) == 4 else "conv"
    return model, net, x, y, L2_EPS[kind]


def test_apgd_ce_l2_matches_official_iterate_for_iterate(setting):
    model, net, x, y, eps = _l2_setting(setting)
    with torch_float64():
        attack = official_apgd.APGDAttack(net, n_iter=100, norm="L2", eps=eps, loss="ce",
                                          seed=0, device="cpu")
        start, official = _run_official_apgd(attack, x, y, eps, seed=0)
    assert np.allclose(np.sqrt(((start - x) ** 2).reshape(len(x), -1).sum(1)), eps,
                       rtol=0.2)  # an L2 start, near the sphere (clipping shortens it)
    ours = apgd(model, x, y, epsilon=eps, n_iter=100, loss="ce", x_init=start,
                return_details=True, norm="L2")
    _compare_apgd(official, ours, x, atol=L2_ATOL)


@pytest.mark.parametrize("target_rank", [2, 10])
@pytest.mark.slow
def test_apgd_t_l2_matches_official_iterate_for_iterate(setting, target_rank):
    model, net, x, y, eps = _l2_setting(setting)
    with torch_float64():
        attack = official_apgd.APGDAttack_targeted(net, n_iter=100, norm="L2", eps=eps,
                                                   seed=0, device="cpu")
        with torch.no_grad():
            attack.y_target = net(torch.from_numpy(x)).sort(dim=1)[1][:, -target_rank]
        start, official = _run_official_apgd(attack, x, y, eps, seed=target_rank)
    ours = apgd_targeted(model, x, y, epsilon=eps, target_rank=target_rank, n_iter=100,
                         x_init=start, return_details=True, norm="L2")
    _compare_apgd(official, ours, x, expect_both_outcomes=target_rank == 2, atol=L2_ATOL)


@pytest.mark.parametrize("target_rank", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_fab_t_l2_matches_official(setting, target_rank):
    model, net, x, y, eps = _l2_setting(setting)
    _compare_fab(model, net, x, y, eps, target_rank, "L2")


# ------------------------------------------------------------------- Square, L2
# The official Square draws one window position, one pattern orientation and one sign
# vector per iteration for the whole batch (the signs for the still-active examples
# only), from torch's generator.  Recording those draws and handing them to
# ``square_l2(draws=...)`` makes the two runs comparable iterate for iterate.
official_square = pytest.importorskip("pyautoattack.square")


class _RecordedDraws:
    """The official run's draws, in ``square_l2``'s ``draws`` interface."""

    def __init__(self, ints, transposes, choices, n_init, batch):
        import tensorflow as tf
        self.tf, self.batch, self.n_init = tf, batch, n_init
        n_iter = len(ints) // 4
        self.ints = tf.constant(np.array(ints + [0] * 4, np.int32).reshape(n_iter + 1, 4))
        self.init_t = np.array(transposes[:n_init], np.int32)
        self.step_t = tf.constant(np.array(transposes[n_init:] + [0], np.int32))
        self.init_s = np.stack([c.reshape(batch, -1) for c in choices[:n_init]], 1)
        channels = self.init_s.shape[-1]
        padded = np.zeros((n_iter + 1, batch, channels))
        for i, c in enumerate(choices[n_init:]):
            padded[i, :len(c)] = c.reshape(len(c), -1)  # row k: the k-th active example
        self.step_s = tf.constant(padded)

    def init(self, n_squares):
        assert n_squares == self.n_init
        return (np.broadcast_to(self.init_t, (self.batch, n_squares)).copy(), self.init_s)

    def step(self, i, room_h, room_w, active):
        tf = self.tf
        position = tf.maximum(tf.cumsum(tf.cast(active, tf.int32)) - 1, 0)
        ints = [tf.fill([self.batch], self.ints[i, k]) for k in range(4)]
        return (*ints, tf.fill([self.batch], self.step_t[i]),
                tf.gather(self.step_s[i], position))


def test_square_l2_matches_official_iterate_for_iterate(setting):
    from tf_st.attacks.square import eta_l2, square_l2
    model, net, x, y, eps = _l2_setting(setting)
    eps = 3 * eps  # Square is weaker than APGD: a radius where about half fall
    n_queries = 300
    ints, transposes, choices = [], [], []
    with torch_float64(), torch.no_grad():
        attack = official_square.SquareAttack(
            lambda z: net(z.permute(0, 2, 3, 1)), p_init=0.8, n_queries=n_queries, eps=eps,
            norm="L2", n_restarts=1, seed=0, device="cpu", resc_schedule=False)
        random_int, random_choice, eta = attack.random_int, attack.random_choice, attack.eta

        def record_int(*a, **k):
            out = random_int(*a, **k)
            ints.append(int(out))
            return out

        def record_choice(shape):
            out = random_choice(shape)
            choices.append(out.numpy())
            return out

        def record_eta(s):
            out = eta(s).numpy()
            # Our pattern is the official one, up to the random transpose it records.
            transposed = not np.allclose(out, eta_l2(s), atol=1e-12)
            np.testing.assert_allclose(out, eta_l2(s).T if transposed else eta_l2(s),
                                       atol=1e-12)
            transposes.append(int(transposed))
            return torch.from_numpy(out)

        attack.random_int, attack.random_choice, attack.eta = record_int, record_choice, record_eta
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        attack.init_hyperparam(xt)
        torch.manual_seed(0)
        queries, x_best = attack.attack_single_run(xt, torch.from_numpy(y))
    x_best = x_best.permute(0, 2, 3, 1).numpy()
    n_init = 25  # 32x32: a 5 x 5 grid of 6x6 squares
    draws = _RecordedDraws(ints, transposes, choices, n_init, len(x))
    _, fooled, det = square_l2(model, x, y, epsilon=eps, n_queries=n_queries, draws=draws,
                               return_details=True)
    official_fooled = net(torch.from_numpy(x_best)).argmax(1).numpy() != y
    assert 0 < official_fooled.sum() < len(x)
    assert int(det["iterations"]) == len(ints) // 4
    np.testing.assert_array_equal(fooled.numpy(), official_fooled)
    np.testing.assert_array_equal(det["queries"].numpy(), queries.numpy())
    np.testing.assert_allclose(det["x_best"].numpy(), x_best, rtol=0, atol=1e-10)
