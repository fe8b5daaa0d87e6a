r"""Float64 parity of tf_st with the official PyTorch code, on the same weights and batch:
FAT's early stop, CAT (TRADES + ALP) loss and step, AWP perturb/restore, and whole
training steps (weights and BatchNorm running statistics after ``fit``) of FAT,
FAT-TRADES, FAT-MART, Madry+AWP, TRADES+AWP and TRADES under robust self-training.

  python -m benchmarks.crosscheck_methods --reference_dir=/path/to/checkouts

``--reference_dir`` (default: ``$TF_ST_REFERENCE_DIR``; no default without it) holds checkouts of the official repositories, named
``Friendly-Adversarial-Training`` (or ``FAT``), ``CAT``, ``AWP`` and ``semisup-adv``:
zjfheart/Friendly-Adversarial-Training, liuxingbin/CAT, csdongxian/AWP,
yaircarmon/semisup-adv
(``git clone https://github.com/<owner>/<repo> <dir>/<name>``).  Their code is imported
from there at run time, never copied here: FAT's ``earlystop.earlystop``, CAT's
``trades.trades_loss`` and ``train_cat.attack_pgd``, AWP's ``AT_AWP/utils_awp.py:
AdvWeightPerturb`` and ``trades_AWP/utils_awp.py:TradesAWP``, semisup-adv's ``losses.py:trades_loss``.  The
training loops are inline in scripts that parse arguments at import (CAT's
``train_cat.py:main()``, FAT's ``train``, AWP's ``train_cifar10.py`` and
``train_trades_cifar.py``): their lines are restated here with the files' own line
numbers.  ``.cuda()`` is made a no-op, ``tensorboardX`` and
``torchvision`` (imported but unused on this path) are stubbed, and the official random
draws (``torch.randn``, ``Tensor.uniform_``) are fed the noise tf_st draws, so both sides
start from the same points.

The network is a small conv -> BatchNorm -> ReLU -> dense classifier built twice with the
same weights and BN statistics (Keras NHWC with PyTorch-semantics BatchNorm; PyTorch
NCHW), so BatchNorm's batch statistics and running-statistic updates are compared too.
Every quantity prints its largest absolute difference; the command exits 1 if any
exceeds ``--tolerance`` and 2 if torch or a reference is missing.
"""

import contextlib
import importlib
import os
import sys
import types

import numpy as np
from absl import flags

_REF = flags.DEFINE_string("reference_dir", os.environ.get("TF_ST_REFERENCE_DIR"),
                           "Directory of the official checkouts (default: "
                           "$TF_ST_REFERENCE_DIR).")
_TOL = flags.DEFINE_float("tolerance", 1e-9, "Largest allowed absolute difference.")
_EXAMPLES = flags.DEFINE_integer("examples", 8, "cifar10_mini test images in the batch.")

EPS, STEP, K = 8 / 255, 2 / 255, 10


def reference_path(root, *names):
    for name in names:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


@contextlib.contextmanager
def official_environment(torch, path):
    """``path`` importable, ``.cuda()`` a no-op, unused third-party imports stubbed."""
    saved = (torch.Tensor.cuda, torch.nn.Module.cuda, list(sys.path), dict(sys.modules))
    torch.Tensor.cuda = lambda t, *a, **k: t
    torch.nn.Module.cuda = lambda m, *a, **k: m
    stubs = []

    def _missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return lambda *a, **k: None

    for name in ("tensorboardX", "torchvision", "torchvision.transforms",
                 "torchvision.datasets"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__getattr__ = _missing
            sys.modules[name] = stub
            stubs.append(name)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.path.insert(0, path)
    for name in ("models", "utils", "trades", "earlystop", "train_cat", "utils_awp", "losses"):
        sys.modules.pop(name, None)
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved[0], saved[1]
        sys.path[:] = saved[2]
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if name in stubs or (name not in saved[3] and origin.startswith(path)):
                del sys.modules[name]


@contextlib.contextmanager
def fed_noise(torch, normal=None, uniform=None):
    """The official code's first ``torch.randn(shape)`` returns ``normal`` (later calls,
    FAT's ``omega * randn`` with omega 0 here, get zeros), and ``tensor.uniform_(lo, hi)``
    writes ``uniform`` (each a float64 array of that shape)."""
    randn, uniform_ = torch.randn, torch.Tensor.uniform_
    if normal is not None:
        calls = []

        def fake_randn(*shape, **k):
            calls.append(shape)
            if len(calls) == 1:
                return torch.from_numpy(normal.copy())
            return torch.zeros(*shape)
        torch.randn = fake_randn
    if uniform is not None:
        def fill(t, *a, **k):
            with torch.no_grad():
                t.copy_(torch.from_numpy(uniform))
            return t
        torch.Tensor.uniform_ = fill
    try:
        yield
    finally:
        torch.randn, torch.Tensor.uniform_ = randn, uniform_


def twin_networks(torch, seed):
    """The same classifier in Keras (float64, NHWC) and PyTorch (float64, NCHW)."""
    import keras

    from tf_st.models.layers import TorchBatchNorm
    rng = np.random.RandomState(seed)
    k = rng.randn(3, 3, 3, 4) * 0.4
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.randn(4) * 0.1
    mean, var = rng.randn(4) * 0.1, rng.uniform(0.5, 2, 4)
    w, b = rng.randn(32 * 32 * 4, 10) / 40, rng.randn(10) * 0.1
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inp)
    h = keras.layers.ReLU()(TorchBatchNorm(name="bn")(h))
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(keras.layers.Flatten()(h)))
    model.get_layer("conv").set_weights([k])
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    model.get_layer("fc").set_weights([w, b])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(32 * 32 * 4, 10)
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
            with torch.no_grad():
                self.conv.weight.copy_(t(k.transpose(3, 2, 0, 1)))
                self.bn.weight.copy_(t(gamma))
                self.bn.bias.copy_(t(beta))
                self.bn.running_mean.copy_(t(mean))
                self.bn.running_var.copy_(t(var))
                self.fc.weight.copy_(t(w.T))
                self.fc.bias.copy_(t(b))

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            return self.fc(h.permute(0, 2, 3, 1).reshape(len(x), -1))

    return model, Net()


def nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def keras_state(model):
    """Weights and BN statistics in the PyTorch names of ``twin_networks``."""
    conv, bn, fc = (model.get_layer(n).get_weights() for n in ("conv", "bn", "fc"))
    return {"conv.weight": conv[0].transpose(3, 2, 0, 1), "bn.weight": bn[0], "bn.bias": bn[1],
            "bn.running_mean": bn[2], "bn.running_var": bn[3], "fc.weight": fc[0].T,
            "fc.bias": fc[1]}


def torch_state(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def state_diff(model, net):
    a, b = keras_state(model), torch_state(net)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ------------------------------------------------------------------------------- FAT


def check_fat(torch, ref, x, y, rows):
    import tensorflow as tf

    from tf_st.attacks import losses
    from tf_st.attacks.specs import PGD
    with official_environment(torch, ref):
        earlystop = importlib.import_module("earlystop").earlystop
        for loss_fn in ("cent", "kl"):
            for tau in (0, 1, 3):
                model, net = twin_networks(torch, 1)
                noise = np.random.RandomState(tau).randn(*nchw(torch, x).shape) * 1.0
                with fed_noise(torch, normal=noise):
                    adv, target, natural, count = earlystop(
                        net, nchw(torch, x), torch.from_numpy(y), step_size=STEP, epsilon=EPS,
                        perturb_steps=K, tau=tau,
                        randominit_type="normal_distribution_randominit", loss_fn=loss_fn,
                        rand_init=True, omega=0)
                start = np.clip(x + 0.001 * noise.transpose(0, 2, 3, 1), 0, 1)
                fwd = lambda t: model(t, training=False)  # noqa: E731
                loss = (losses.cross_entropy if loss_fn == "cent"
                        else losses.kl_from_clean(fwd, tf.constant(x)))
                ours, passes = PGD(epsilon=EPS, step_size=STEP, steps=K, tau=0, loss=loss) \
                    .perturb_early_stopped(fwd, tf.constant(x), tf.constant(y),
                                           x_init=tf.constant(start), tau=tau)
                # The reference returns finished examples first: match rows by their x.
                order = [int(np.argmin(np.abs(x - n).reshape(len(x), -1).sum(1)))
                         for n in nhwc(natural)]
                diff = float(np.abs(ours.numpy()[order] - nhwc(adv)).max())
                rows.append((f"FAT earlystop {loss_fn}, tau={tau}: x_adv", diff))
                rows.append((f"FAT earlystop {loss_fn}, tau={tau}: backward count "
                             f"({count} official)", float(abs(int(passes.numpy().sum()) - count))))


# ------------------------------------------------------------------------------- CAT


def _cat_reference_step(torch, model1, model2, X, y, x_adv1, x_adv2, opt1, opt2):
    """train_cat.py main(), lines 261-286 (the loss, one backward, both steps) and 289
    (the extra train-mode forward of model1), restated; returns the loss terms."""
    F = torch.nn.functional
    criterion = torch.nn.CrossEntropyLoss()
    criterion_kl = torch.nn.KLDivLoss(reduction="batchmean")
    clean_logit1 = model1(X)                                                  # 261
    adv_logit1 = model1(x_adv1)                                               # 262
    loss_natural = F.cross_entropy(clean_logit1, y)                           # 263
    loss_robust = criterion_kl(F.log_softmax(adv_logit1, dim=1),              # 264
                               F.softmax(clean_logit1, dim=1))
    loss1 = loss_natural + 6.0 * loss_robust                                  # 266
    adv_logit2 = model2(x_adv2)                                               # 268
    clean_logit2 = model2(X)                                                  # 269
    loss2 = 0.5 * (criterion(adv_logit2, y) + criterion(clean_logit2, y)) \
        + F.mse_loss(adv_logit2, clean_logit2)                                # 270-271
    adv_logit12 = model1(x_adv2)                                              # 274
    adv_logit21 = model2(x_adv1)                                              # 275
    loss3 = criterion_kl(F.log_softmax(adv_logit1, dim=1), F.softmax(adv_logit21, dim=1).detach()) \
        + criterion_kl(F.log_softmax(adv_logit2, dim=1), F.softmax(adv_logit12, dim=1).detach())
    robust_loss = 1.0 / 20 * (loss1 + loss2) + 19.0 / 20 * loss3              # 281
    opt1.zero_grad()
    opt2.zero_grad()
    robust_loss.backward()                                                    # 284
    grads = ([p.grad.detach().clone() for p in model1.parameters()],
             [p.grad.detach().clone() for p in model2.parameters()])
    opt1.step()                                                               # 285
    opt2.step()                                                               # 286
    model1(X)                                                                 # 289
    return {"L1": loss1.item(), "L2": loss2.item(), "L3": loss3.item(),
            "loss": robust_loss.item()}, grads


def check_cat(torch, ref, x, y, rows):
    import keras
    import tensorflow as tf

    from tf_st import methods
    from tf_st.training.optim import TorchSGD
    with official_environment(torch, ref):
        trades_loss = importlib.import_module("trades").trades_loss
        attack_pgd = importlib.import_module("train_cat").attack_pgd
        m1, n1 = twin_networks(torch, 1)
        m2, n2 = twin_networks(torch, 2)
        X, Y = nchw(torch, x), torch.from_numpy(y)
        normal = np.random.RandomState(7).randn(*X.shape)
        uniform = np.random.RandomState(8).uniform(-EPS, EPS, X.shape)
        n1.train()
        n2.train()
        with fed_noise(torch, normal=normal):
            x_adv1 = trades_loss(n1, 0, X, Y, step_size=STEP, epsilon=EPS, perturb_steps=K)
        with fed_noise(torch, uniform=uniform):
            delta, _ = attack_pgd(n2, X, Y, EPS, STEP, K, 1, "l_inf", BNeval=True)
        x_adv2 = torch.clamp(X + delta, 0, 1)

        method = methods.build("cat", {"trades": m1, "alp": m2}, steps=K)
        method.compile(optimizer={"trades": TorchSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4),
                                  "alp": TorchSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4)})
        init = {"trades": x + 0.001 * normal.transpose(0, 2, 3, 1),
                "alp": np.clip(x + uniform.transpose(0, 2, 3, 1), 0, 1)}
        gen = method.generate(tf.constant(x), tf.constant(y), init=init)
        rows.append(("CAT TRADES attack (x_adv1)", float(np.abs(gen["trades"].numpy() - nhwc(x_adv1)).max())))
        rows.append(("CAT PGD attack (x_adv2)", float(np.abs(gen["alp"].numpy() - nhwc(x_adv2)).max())))

        opt1 = torch.optim.SGD(n1.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        opt2 = torch.optim.SGD(n2.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        theirs, (g1, g2) = _cat_reference_step(torch, n1, n2, X, Y, x_adv1.detach(),
                                               x_adv2.detach(), opt1, opt2)
        ours_gen = {"trades": tf.constant(nhwc(x_adv1)), "alp": tf.constant(nhwc(x_adv2))}
        groups = method.optimizer_groups()
        with tf.GradientTape(persistent=True) as tape:
            terms = method.training_loss(tf.constant(x), tf.constant(y), ours_gen)
        for name, key in (("L1", "trades_loss"), ("L2", "alp_loss"), ("L3", "collab"),
                          ("loss", "loss")):
            rows.append((f"CAT {name}", abs(float(terms[key]) - theirs[name])))
        for (opt, variables), g_ref, net in zip(groups, (g1, g2), ("trades", "alp")):
            grads = tape.gradient(terms["loss"], variables)
            # Keras order: conv kernel, BN gamma, BN beta, fc kernel, fc bias; torch: the same.
            diffs = []
            for g, r in zip(grads, g_ref):
                g = g.numpy()
                r = r.numpy()
                g = g.transpose(3, 2, 0, 1) if g.ndim == 4 else (g.T if g.ndim == 2 else g)
                diffs.append(float(np.abs(g - r).max()))
            rows.append((f"CAT parameter gradients ({net})", max(diffs)))
            opt.apply(grads, variables)
        method.after_apply(tf.constant(x), tf.constant(y), ours_gen)
        rows.append(("CAT weights + BN statistics after the step (trades net)", state_diff(m1, n1)))
        rows.append(("CAT weights + BN statistics after the step (alp net)", state_diff(m2, n2)))

        # ALP alone (tf_st's "alp") against the ALP lines 268-271 on fresh twins.
        m3, n3 = twin_networks(torch, 2)
        n3.train()
        F = torch.nn.functional
        adv_logit2, clean_logit2 = n3(x_adv2.detach()), n3(X)
        loss2 = 0.5 * (F.cross_entropy(adv_logit2, Y) + F.cross_entropy(clean_logit2, Y)) \
            + F.mse_loss(adv_logit2, clean_logit2)
        loss2.backward()
        alp = methods.build("alp", m3)
        with tf.GradientTape() as tape:
            terms = alp.training_loss(tf.constant(x), tf.constant(y), {"adv": ours_gen["alp"]})
        rows.append(("ALP loss", abs(float(terms["loss"]) - loss2.item())))
        grads = tape.gradient(terms["loss"], m3.trainable_variables)
        diffs = []
        for g, p in zip(grads, n3.parameters()):
            g = g.numpy()
            g = g.transpose(3, 2, 0, 1) if g.ndim == 4 else (g.T if g.ndim == 2 else g)
            diffs.append(float(np.abs(g - p.grad.numpy()).max()))
        rows.append(("ALP parameter gradients", max(diffs)))
        rows.append(("ALP BN statistics after its two forwards", state_diff(m3, n3)))
        # ... and the step: network 2's optimizer (train_cat.py:286) on both sides.
        torch.optim.SGD(n3.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4).step()
        opt3 = TorchSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4)
        opt3.apply(grads, m3.trainable_variables)
        rows.append(("ALP weights + BN statistics after the step", state_diff(m3, n3)))
        del keras


# ------------------------------------------------------------------------------- AWP


def check_awp(torch, ref, x, y, rows):
    import tensorflow as tf

    from tf_st import methods
    from tf_st.methods.awp import AWP, perturbable
    for variant, key, gamma, proxy_lr in (("AT_AWP", "madry", 0.01, 0.01),
                                          ("trades_AWP", "trades", 0.005, 0.1)):
        with official_environment(torch, os.path.join(ref, variant)):
            mod = importlib.import_module("utils_awp")
            model, net = twin_networks(torch, 3)
            _, proxy = twin_networks(torch, 3)
            x_adv = np.clip(x + np.random.RandomState(9).uniform(-EPS, EPS, x.shape), 0, 1)
            X, XA, Y = nchw(torch, x), nchw(torch, x_adv), torch.from_numpy(y)
            proxy_opt = torch.optim.SGD(proxy.parameters(), lr=proxy_lr)
            net.train()
            if key == "madry":
                awp = mod.AdvWeightPerturb(model=net, proxy=proxy, proxy_optim=proxy_opt,
                                           gamma=gamma)
                diff = awp.calc_awp(inputs_adv=XA, targets=Y)
            else:
                awp = mod.TradesAWP(model=net, proxy=proxy, proxy_optim=proxy_opt, gamma=gamma)
                diff = awp.calc_awp(inputs_adv=XA, inputs_clean=X, targets=Y, beta=6.0)
            method = methods.build(key, model, steps=0)
            method.compile(optimizer="sgd")
            gen = {"adv": tf.constant(x_adv)}
            ours = AWP(gamma, proxy_lr=proxy_lr).directions(method, tf.constant(x),
                                                            tf.constant(y), gen)
            names = {"conv/kernel": "conv.weight", "fc/kernel": "fc.weight"}
            for w, d in zip(perturbable(method), ours):
                d = d.numpy()
                d = d.transpose(3, 2, 0, 1) if d.ndim == 4 else d.T
                rows.append((f"AWP {variant} direction {names[w.path]}",
                             float(np.abs(d - diff[names[w.path]].numpy()).max())))
            rows.append((f"AWP {variant} BN statistics untouched by the proxy pass",
                         state_diff(model, net)))
            awp.perturb(diff)
            hook = AWP(gamma, proxy_lr=proxy_lr)
            hook.before_outer_gradient(method, tf.constant(x), tf.constant(y), gen)
            rows.append((f"AWP {variant} perturbed weights", state_diff(model, net)))
            hook.after_apply(method, tf.constant(x), tf.constant(y), gen)
            awp.restore(diff)
            rows.append((f"AWP {variant} restored weights", state_diff(model, net)))


# ------------------------------------------------------------------- whole steps
#
# The official training loops around one step, restated line by line (the scripts run
# argparse and their data loaders at import, so their loops cannot be called); every
# function the loops call that *is* importable (AWP's AdvWeightPerturb / TradesAWP,
# semisup-adv's trades_loss) is taken from the checkout when one is given, else from the
# restatements below.  What these pin is the bookkeeping a loss comparison cannot see:
# which forwards run in train mode, in which order, and when AWP moves the weights.


class RestatedAWP:
    """csdongxian/AWP ``utils_awp.py`` (both variants; ``AdvWeightPerturb`` for AT,
    ``TradesAWP`` for TRADES), restated: used when no AWP checkout is given."""

    EPS = 1e-20

    @staticmethod
    def _diff(model, proxy):
        out = {}
        for (name, w), (_, w2) in zip(model.state_dict().items(), proxy.state_dict().items()):
            if w.dim() > 1 and "weight" in name:
                d = w2 - w
                out[name] = w.norm() / (d.norm() + RestatedAWP.EPS) * d
        return out

    class _Base:
        def __init__(self, model, proxy, proxy_optim, gamma):
            self.model, self.proxy, self.proxy_optim, self.gamma = model, proxy, proxy_optim, gamma

        def _step(self, loss):
            self.proxy_optim.zero_grad()
            loss.backward()
            self.proxy_optim.step()
            return RestatedAWP._diff(self.model, self.proxy)

        def _add(self, diff, coeff):
            import torch
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    if name in diff:
                        p.add_(coeff * diff[name])

        def perturb(self, diff):
            self._add(diff, self.gamma)

        def restore(self, diff):
            self._add(diff, -self.gamma)

    class AdvWeightPerturb(_Base):
        def calc_awp(self, inputs_adv, targets):
            import torch.nn.functional as F
            self.proxy.load_state_dict(self.model.state_dict())
            self.proxy.train()
            return self._step(-F.cross_entropy(self.proxy(inputs_adv), targets))

    class TradesAWP(_Base):
        def calc_awp(self, inputs_adv, inputs_clean, targets, beta):
            import torch.nn.functional as F
            self.proxy.load_state_dict(self.model.state_dict())
            self.proxy.train()
            nat = F.cross_entropy(self.proxy(inputs_clean), targets)
            rob = F.kl_div(F.log_softmax(self.proxy(inputs_adv), dim=1),
                           F.softmax(self.proxy(inputs_clean), dim=1), reduction="batchmean")
            return self._step(-1.0 * (nat + beta * rob))


def at_awp_step(torch, net, opt, awp, X, y, delta0, *, epsilon, alpha, iters, awp_on,
                attack_train_mode):
    """One batch of csdongxian/AWP ``AT_AWP/train_cifar10.py`` (``normalize`` the
    identity: the twin networks take [0, 1] inputs): ``attack_pgd`` (lines 72-125, one
    restart, L-inf, its uniform draw given as ``delta0``) in whatever mode the loop left
    the model (``attack_train_mode``: train, except after the per-epoch test, line 379),
    then lines 336-373."""
    F = torch.nn.functional
    net.train(attack_train_mode)
    delta = torch.max(torch.min(delta0.clone(), 1 - X), -X)                   # 89
    delta.requires_grad = True
    for _ in range(iters):                                                    # 91
        loss = F.cross_entropy(net(X + delta), y)                             # 92, 103
        loss.backward()                                                       # 104
        grad = delta.grad.detach()
        d = torch.clamp(delta + alpha * torch.sign(grad), -epsilon, epsilon)  # 110
        d = torch.max(torch.min(d, 1 - X), -X)                                # 115
        delta.data = d.detach()                                               # 116
        delta.grad.zero_()
    F.cross_entropy(net(X + delta), y, reduction="none")                      # 122
    x_adv = torch.clamp(X + delta.detach(), 0, 1)                             # 334
    net.train()                                                               # 338
    diff = None
    if awp_on:                                                                # 340
        diff = awp.calc_awp(inputs_adv=x_adv, targets=y)
        awp.perturb(diff)
    robust_loss = F.cross_entropy(net(x_adv), y)                              # 347-351
    opt.zero_grad()                                                           # 358
    robust_loss.backward()
    opt.step()
    if diff is not None:                                                      # 362
        awp.restore(diff)
    net(X)                                                                    # 365
    return x_adv


def trades_awp_step(torch, net, opt, awp, X, y, noise, *, epsilon, alpha, iters, beta, awp_on):
    """One batch of csdongxian/AWP ``trades_AWP/train_trades_cifar.py``: ``perturb_input``
    (L-inf branch; its ``torch.randn`` draw given as ``noise``) and ``train``'s step."""
    F = torch.nn.functional
    net.eval()                                                                # perturb_input
    x_adv = X.detach() + 0.001 * noise
    for _ in range(iters):
        x_adv.requires_grad_()
        loss_kl = F.kl_div(F.log_softmax(net(x_adv), dim=1), F.softmax(net(X), dim=1),
                           reduction="sum")
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, X - epsilon), X + epsilon), 0.0, 1.0)
    net.train()                                                               # train()
    diff = None
    if awp_on:
        diff = awp.calc_awp(inputs_adv=x_adv, inputs_clean=X, targets=y, beta=beta)
        awp.perturb(diff)
    opt.zero_grad()
    logits_adv = net(x_adv)
    loss_robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(net(X), dim=1),
                           reduction="batchmean")
    loss = F.cross_entropy(net(X), y) + beta * loss_robust
    opt.zero_grad()
    loss.backward()
    opt.step()
    if diff is not None:
        awp.restore(diff)
    return x_adv


def restated_rst_trades_loss(torch, model, x_natural, y, optimizer, step_size, epsilon,
                             perturb_steps, beta, distance="l_inf"):
    """yaircarmon/semisup-adv ``losses.py:trades_loss`` (L-inf, ``entropy_weight`` 0),
    restated: used when no semisup-adv checkout is given."""
    F = torch.nn.functional
    kl = torch.nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x_natural.detach() + 0.
    x_adv += 0.001 * torch.randn(x_natural.shape).detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        loss_kl = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x_natural), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x_natural - epsilon),
                                      x_natural + epsilon), 0.0, 1.0)
    model.train()
    optimizer.zero_grad()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    logits_adv = F.log_softmax(model(x_adv), dim=1)
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y, ignore_index=-1)
    loss_robust = kl(logits_adv, F.softmax(logits, dim=1)) / len(x_natural)
    loss = loss_natural + beta * loss_robust
    return loss, loss_natural, loss_robust, torch.tensor(0)


def rst_trades_step(torch, net, opt, trades_loss, X, y, noise, *, epsilon, alpha, iters, beta):
    """One batch of semisup-adv ``robust_self_training.py`` ``train``: ``trades_loss``
    (its ``torch.randn`` draw given as ``noise``), backward, step."""
    with fed_noise(torch, normal=noise.numpy()):
        loss = trades_loss(model=net, x_natural=X, y=y, optimizer=opt, step_size=alpha,
                           epsilon=epsilon, perturb_steps=iters, beta=beta,
                           distance="l_inf")[0]
    opt.zero_grad()
    loss.backward()
    opt.step()


def _start_point(method, x):
    """The start the traced step draws for ``x`` at the optimizer's current step."""
    if method.key.startswith("madry"):
        return method.random_start(x, 0)
    if method.key.startswith("fat"):
        return method.start(x, method.attack.start, 0)
    return method.start(x, "normal", 0, std=method.init_std)


def tf_st_whole_steps(settings, model, batches, lr):
    """Trains ``model`` with ``settings`` (resolved through the trainer's presets) on
    ``batches`` (one batch per epoch, ``fit`` with the trainer's epoch-begin callback)
    and returns the method, the resolved settings and every step's start point, as the
    traced step draws it."""
    import tensorflow as tf

    from tf_st import methods
    from tf_st.methods.awp import AWP
    from tf_st.training.callbacks import MethodEpochBegin
    from tf_st.training.optim import TorchSGD
    from trainers import runner
    s = runner.resolve(settings)
    hooks = ([AWP(s.awp_gamma, s.awp_warmup, s.awp_proxy_lr, steps_per_epoch=1,
                  first_epoch=s.awp_first_epoch)] if s.awp else [])
    method = methods.build(s.method, model, seed=s.seed, step_hooks=hooks, **s.hparams)
    method.compile(optimizer=TorchSGD(lr, momentum=0.9, coupled_weight_decay=5e-4))
    method.build_optimizers()
    starts = []
    for step, (x, _) in enumerate(batches):
        method.optimizer.iterations.assign(step)
        starts.append(_start_point(method, tf.constant(x)).numpy())
    method.optimizer.iterations.assign(0)
    xs = np.stack([b[0] for b in batches])
    ys = np.stack([b[1] for b in batches])
    ds = tf.data.Dataset.from_tensor_slices((xs, ys))
    method.fit(ds, epochs=len(batches), steps_per_epoch=1, verbose=0, shuffle=False,
               callbacks=[MethodEpochBegin(method)])
    return method, s, starts


WHOLE_STEP_CASES = ("madry_awp", "trades_awp", "trades_rst")
FAT_CASES = ("fat", "fat_trades", "fat_mart")


def restated_fat_losses(torch):
    """``TRADES_loss`` (FAT_for_TRADES.py:48-56) and ``MART_loss`` (FAT_for_MART.py:48-61),
    restated: the scripts parse their arguments at import."""
    F, nn = torch.nn.functional, torch.nn

    def trades(adv_logits, natural_logits, target, beta):
        kl = nn.KLDivLoss(reduction="sum")
        nat = nn.CrossEntropyLoss(reduction="mean")(natural_logits, target)
        rob = (1.0 / len(target)) * kl(F.log_softmax(adv_logits, dim=1),
                                       F.softmax(natural_logits, dim=1))
        return nat + beta * rob

    def mart(adv_logits, natural_logits, target, beta):
        kl = nn.KLDivLoss(reduction="none")
        adv_probs = F.softmax(adv_logits, dim=1)
        tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
        new_y = torch.where(tmp1[:, -1] == target, tmp1[:, -2], tmp1[:, -1])
        loss_adv = F.cross_entropy(adv_logits, target) + F.nll_loss(
            torch.log(1.0001 - adv_probs + 1e-12), new_y)
        nat_probs = F.softmax(natural_logits, dim=1)
        true_probs = torch.gather(nat_probs, 1, target.unsqueeze(1).long()).squeeze()
        rob = (1.0 / len(target)) * torch.sum(
            torch.sum(kl(torch.log(adv_probs + 1e-12), nat_probs), dim=1)
            * (1.0000001 - true_probs))
        return loss_adv + float(beta) * rob

    return trades, mart


def fat_step(torch, earlystop, variant, net, opt, X, y, noise, *, epsilon, alpha, iters, tau,
             beta):
    """One batch of ``train`` in FAT.py / FAT_for_TRADES.py / FAT_for_MART.py (omega 0;
    the normal start, whose ``torch.randn`` draw is given as ``noise``)."""
    F = torch.nn.functional
    with fed_noise(torch, normal=noise.numpy()):
        adv, target, natural, _ = earlystop(
            net, X, y, step_size=alpha, epsilon=epsilon, perturb_steps=iters, tau=tau,
            randominit_type="normal_distribution_randominit",
            loss_fn="cent" if variant == "fat" else "kl", rand_init=True, omega=0)
    trades_loss, mart_loss = restated_fat_losses(torch)
    net.train()
    opt.zero_grad()
    if variant == "fat":
        loss = F.cross_entropy(net(adv), target)
    elif variant == "fat_trades":
        natural_logits = net(natural)
        loss = trades_loss(net(adv), natural_logits, target, beta)
    else:
        adv_logits = net(adv)
        loss = mart_loss(adv_logits, net(natural), target, beta)
    loss.backward()
    opt.step()


def check_fat_whole_step(torch, ref, variant, x, y, rows):
    """FAT's traced step (``fit``) against the official ``train`` loop of its script, on
    the normal start (FAT.py's uniform start goes through float32, ``.float()``, which a
    float64 comparison cannot follow; after the start the paths are the same) with
    omega 0."""
    from trainers import runner
    settings = runner.Settings(method=variant, dataset="cifar10_mini",
                               hparams={"fat_init": "normal", "omega": 0.0})
    model, net = twin_networks(torch, 5)
    method, s, (start,) = tf_st_whole_steps(settings, model, [(x, y)], 0.1)
    hp = s.hparams
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    with official_environment(torch, ref):
        earlystop = importlib.import_module("earlystop").earlystop
        fat_step(torch, earlystop, variant, net, opt, nchw(torch, x), torch.from_numpy(y),
                 nchw(torch, (start - x) / 0.001), epsilon=hp["epsilon"],
                 alpha=hp["step_size"], iters=hp["steps"],
                 tau=int(method.current_tau.numpy()), beta=hp.get("beta", 0.0))
    _state_rows(rows, f"{variant} whole step", model, net)
    return net.bn.num_batches_tracked.item()


def _state_rows(rows, label, model, net):
    a, b = keras_state(model), torch_state(net)
    for key in ("conv.weight", "fc.weight", "bn.weight", "bn.running_mean", "bn.running_var"):
        scale = max(float(np.abs(b[key]).max()), 1e-300)
        rows.append((f"{label}: {key} (relative)", float(np.abs(a[key] - b[key]).max()) / scale))


def official_awp(torch, root):
    """``AdvWeightPerturb`` (AT_AWP/utils_awp.py) and ``TradesAWP`` (trades_AWP/
    utils_awp.py) of an AWP checkout; ``RestatedAWP`` without one."""
    if root is None:
        return RestatedAWP
    out = types.SimpleNamespace()
    with official_environment(torch, os.path.join(root, "AT_AWP")):
        out.AdvWeightPerturb = importlib.import_module("utils_awp").AdvWeightPerturb
    with official_environment(torch, os.path.join(root, "trades_AWP")):
        out.TradesAWP = importlib.import_module("utils_awp").TradesAWP
    return out


def check_whole_step(torch, case, x, y, rows, refs=None, epochs=1, awp_warmup=None):
    """tf_st's traced step(s) (``fit``) against the official loop: weights and BN
    statistics after ``epochs`` one-batch epochs (the batch: ``x, y`` split in two
    halves of equal size when ``epochs == 2``).  ``refs``: ``{"awp": checkout or None,
    "semisup-adv": checkout or None}``; without a checkout the restatements above stand
    in for its importable functions.  Returns the reference's count of BN updates
    (``num_batches_tracked``) and whether AWP perturbed each step."""
    from trainers import runner
    refs = refs or {}
    awp_mod = official_awp(torch, refs.get("awp"))
    rst_root = refs.get("semisup-adv")
    batches = ([(x, y)] if epochs == 1 else
               [(x[:len(x) // 2], y[:len(y) // 2]), (x[len(x) // 2:], y[len(y) // 2:])])
    lr = 0.1
    method_key = case.split("_")[0]
    settings = runner.Settings(method=method_key, dataset="cifar10_mini",
                               awp=case.endswith("awp"), awp_warmup=awp_warmup,
                               unlabeled="pseudo.npz" if case.endswith("rst") else None)
    model, net = twin_networks(torch, 4)
    _, proxy = twin_networks(torch, 4)
    method, s, starts = tf_st_whole_steps(settings, model, batches, lr)
    hp = s.hparams
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    perturbed = []
    for epoch, ((xb, yb), start) in enumerate(zip(batches, starts)):
        X, Y = nchw(torch, xb), torch.from_numpy(yb)
        counted = epoch + s.awp_first_epoch if s.awp else 0
        awp_on = s.awp and counted >= s.awp_warmup
        perturbed.append(bool(awp_on))
        if case == "madry_awp":
            awp = awp_mod.AdvWeightPerturb(net, proxy, torch.optim.SGD(proxy.parameters(),
                                                                       lr=s.awp_proxy_lr),
                                           s.awp_gamma)
            at_awp_step(torch, net, opt, awp, X, Y, nchw(torch, start - xb),
                        epsilon=hp["epsilon"], alpha=hp["step_size"], iters=hp["steps"],
                        awp_on=awp_on, attack_train_mode=epoch == 0)
        elif case == "trades_awp":
            awp = awp_mod.TradesAWP(net, proxy, torch.optim.SGD(proxy.parameters(),
                                                                lr=s.awp_proxy_lr), s.awp_gamma)
            trades_awp_step(torch, net, opt, awp, X, Y, nchw(torch, (start - xb) / 0.001),
                            epsilon=hp["epsilon"], alpha=hp["step_size"], iters=hp["steps"],
                            beta=hp["beta"], awp_on=awp_on)
        else:
            with (official_environment(torch, rst_root) if rst_root
                  else contextlib.nullcontext()):
                loss_fn = (importlib.import_module("losses").trades_loss if rst_root
                           else (lambda **k: restated_rst_trades_loss(torch, **k)))
                rst_trades_step(torch, net, opt, loss_fn, X, Y,
                                nchw(torch, (start - xb) / 0.001), epsilon=hp["epsilon"],
                                alpha=hp["step_size"], iters=hp["steps"], beta=hp["beta"])
    _state_rows(rows, f"{case} whole step{'s' if epochs > 1 else ''}", model, net)
    return net.bn.num_batches_tracked.item(), perturbed


def main(argv):
    del argv
    try:
        import torch
    except ImportError:
        print("error: torch is not installed (pip install torch==2.13.0, CPU build)",
              file=sys.stderr)
        return 2
    root = _REF.value
    if not root:
        print("error: pass --reference_dir or set $TF_ST_REFERENCE_DIR", file=sys.stderr)
        return 2
    refs = {"fat": reference_path(root, "Friendly-Adversarial-Training", "FAT"),
            "cat": reference_path(root, "CAT"), "awp": reference_path(root, "AWP"),
            "semisup-adv": reference_path(root, "semisup-adv")}
    missing = [k for k, v in refs.items() if v is None]
    if missing:
        print(f"error: no checkout of {missing} under --reference_dir={root} (expected "
              "Friendly-Adversarial-Training/, CAT/, AWP/, semisup-adv/)", file=sys.stderr)
        return 2
    import keras
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    torch.set_default_dtype(torch.float64)
    from tf_st import data
    x, y = data.as_numpy(data.load("cifar10_mini", "test"), limit=_EXAMPLES.value)
    x = x.astype(np.float64)
    rows = []
    check_fat(torch, refs["fat"], x, y, rows)
    check_cat(torch, refs["cat"], x, y, rows)
    check_awp(torch, refs["awp"], x, y, rows)
    for variant in FAT_CASES:
        check_fat_whole_step(torch, refs["fat"], variant, x, y, rows)
    for case in WHOLE_STEP_CASES:
        check_whole_step(torch, case, x, y, rows, refs=refs)
    # Two one-batch epochs with the warm-up ending between them: AT-AWP counts epochs from
    # 0 (warm-up 1 perturbs the second epoch) and attacks the second epoch's first batch
    # in eval mode; TRADES-AWP counts from 1 (warm-up 2 perturbs the second epoch).
    check_whole_step(torch, "madry_awp", x, y, rows, refs=refs, epochs=2, awp_warmup=1)
    check_whole_step(torch, "trades_awp", x, y, rows, refs=refs, epochs=2, awp_warmup=2)
    width = max(len(r[0]) for r in rows)
    print(f"float64, {len(x)} cifar10_mini images, eps 8/255, step 2/255, K={K}")
    print(f"| {'quantity':<{width}} | largest |diff| |")
    print(f"|{'-' * (width + 2)}|-----------------|")
    for name, diff in rows:
        print(f"| {name:<{width}} | {diff:15.3e} |")
    worst = max(d for _, d in rows)
    print(f"largest difference {worst:.3e} (tolerance {_TOL.value:g})")
    return 0 if worst <= _TOL.value else 1


if __name__ == "__main__":
    from tf_st import cli
    cli.run_main(main, __doc__)
