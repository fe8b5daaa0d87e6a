"""ALP and CAT losses against numpy by hand, in float64: values, the detached peers
(through parameter gradients), the member weights alpha / 1 - alpha, and the
generalisation to three members."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import linear_classifier, numeric_grad, small_cat_step, softmax
from tf_st import methods

EPS = 8 / 255


def np_ce(z, y):
    return -np.log(softmax(z)[np.arange(len(y)), y])


def np_kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def _batch(B=5, shape=(2, 2, 3), seed=3, names=("trades", "alp", "madry", "adv")):
    rng = np.random.RandomState(seed)
    x = rng.uniform(0.2, 0.8, (B,) + shape)
    y = np.arange(B) % 3
    return x, y, {n: np.clip(x + rng.uniform(-EPS, EPS, x.shape), 0, 1) for n in names}


def _z(x, w, b):
    return x.reshape(len(x), -1) @ w + b


def np_alp(za, zc, y):
    return 0.5 * (np_ce(za, y).mean() + np_ce(zc, y).mean()) + np.mean((za - zc) ** 2)


def test_alp_loss_and_gradient_by_hand(float64):
    model, w, b = linear_classifier()
    x, y, gen = _batch()
    method = methods.build("alp", model)
    with tf.GradientTape() as tape:
        terms = method.training_loss(tf.constant(x), tf.constant(y), {"adv": tf.constant(gen["adv"])})
    f = lambda w_: np_alp(_z(gen["adv"], w_, b), _z(x, w_, b), y)  # noqa: E731
    assert terms["loss"].numpy() == pytest.approx(f(w), rel=1e-10)
    np.testing.assert_allclose(tape.gradient(terms["loss"], model.layers[-1].kernel).numpy(),
                               numeric_grad(f, w), atol=1e-7)


def _own(m, x, xa, y, w, b, beta=6.0):
    zc, za = _z(x, w, b), _z(xa, w, b)
    if m == "trades":
        return np_ce(zc, y).mean() + beta * np_kl(softmax(zc), softmax(za)).mean()
    if m == "alp":
        return np_alp(za, zc, y)
    return np_ce(za, y).mean()


def np_cat(members, params, x, y, gen, alpha, frozen=None):
    """CAT's total loss; ``frozen[name]`` replaces a network's weights inside the peer
    targets only (what the stop-gradient does to the derivative)."""
    frozen = frozen or params
    own = sum(_own(m, x, gen[m], y, *params[m]) for m in members)
    collab = 0.0
    for o in members:
        za = _z(gen[o], *params[o])
        kls = [np_kl(softmax(_z(gen[o], *frozen[e])), softmax(za)).mean()
               for e in members if e != o]
        collab += np.mean(kls)
    return alpha * own + (1 - alpha) * collab


@pytest.mark.parametrize("members", [("trades", "alp"), ("madry", "alp", "trades")])
def test_cat_loss_weights_and_detached_peers(float64, members):
    nets, params = {}, {}
    for k, m in enumerate(members):
        nets[m], w, b = linear_classifier(seed=k)
        params[m] = (w, b)
    x, y, gen = _batch()
    alpha = 1 / 20
    method = methods.build("cat", nets, members=",".join(members), alpha=alpha)
    with tf.GradientTape() as tape:
        terms = method.training_loss(tf.constant(x), tf.constant(y),
                                     {m: tf.constant(gen[m]) for m in members})
    assert terms["loss"].numpy() == pytest.approx(np_cat(members, params, x, y, gen, alpha),
                                                  rel=1e-10)
    kernels = [nets[m].layers[-1].kernel for m in members]
    grads = tape.gradient(terms["loss"], kernels)
    for m, g in zip(members, grads):
        w, b = params[m]

        def f(w_, m=m, b=b):
            changed = {**params, m: (w_, b)}
            # The peers' targets keep the unchanged weights: detached.
            return np_cat(members, changed, x, y, gen, alpha, frozen=params)
        np.testing.assert_allclose(g.numpy(), numeric_grad(f, w), atol=1e-7)

        def f_attached(w_, m=m, b=b):
            changed = {**params, m: (w_, b)}
            return np_cat(members, changed, x, y, gen, alpha)
        assert not np.allclose(g.numpy(), numeric_grad(f_attached, w), atol=1e-5)
    assert set(terms) >= {f"{m}_loss" for m in members} | {"collab", "loss"}


def test_cat_rejects_bad_members_and_names_networks_by_member():
    nets = {"trades": linear_classifier()[0], "alp": linear_classifier(seed=1)[0]}
    with pytest.raises(ValueError, match="two or three distinct"):
        methods.build("cat", nets, members="trades,trades")
    with pytest.raises(ValueError, match="two or three distinct"):
        methods.build("cat", nets, members="trades,mart")
    with pytest.raises(ValueError, match="needs networks named"):
        methods.build("cat", nets, members="alp,trades")
    with pytest.raises(ValueError, match="architectures for"):
        methods.build("cat", nets, archs="resnet18")
    assert methods.METHODS["cat"].network_archs("small_cnn", {"archs": "resnet18,wrn34_10"}) \
        == {"trades": "resnet18", "alp": "wrn34_10"}


@pytest.mark.slow  # twelve traced CAT steps
def test_cat_traced_step_reads_each_network_before_updating_it(float64):
    """The traced CAT step equals the eager one in every instance.  A peer forward reads a
    network's weights, and only a control edge orders that read before the network's
    update (its value feeds only the peer's gradient); with Grappler's dependency
    optimizer on, some traced instances read the updated last layer instead
    (``tf_st.methods.base.keep_variable_access_order``, which training turns on)."""
    collab, weights = small_cat_step(eager=True)
    for _ in range(12):
        traced_collab, traced = small_cat_step(eager=False)
        assert traced_collab == pytest.approx(collab, abs=1e-12)
        for a, b in zip(traced, weights):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert tf.config.optimizer.get_experimental_options()["dependency_optimization"] is False
