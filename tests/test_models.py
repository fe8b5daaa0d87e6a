"""Tests for tf_st.models: registry, architectures, PyTorch-name import, padding parity.

The expected PyTorch names/shapes below are written by hand from the reference code
(kuangliu/ST-AT ``models/resnet.py``, TRADES ``models/wideresnet.py``, AWP
``preactresnet.py``), not generated from the Keras models.  The optional torch tests are
skipped when torch is not installed.
"""

import math

import keras
import numpy as np
import pytest

from tf_st import models
from tf_st.models import convert as convert_mod
from tf_st.models.torch_import import StateDictMismatchError

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(1)
except ImportError:  # torch is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _np(x):
    """numpy copy of a tensor or a Keras variable (``Variable.numpy()``: converting the variable
    itself goes through a deprecated ``__array__`` path)."""
    return np.array(x.numpy()) if isinstance(x, keras.Variable) else keras.ops.convert_to_numpy(x)


def _n_params(weights):
    return int(sum(np.prod(w.shape) for w in weights))


# ---------------------------------------------------------------- hand-written references

def kuangliu_resnet18_shapes(num_classes=10):
    """PyTorch state_dict (minus num_batches_tracked) of kuangliu's CIFAR ResNet-18."""
    shapes = {"conv1.weight": (64, 3, 3, 3)}
    shapes.update({f"bn1.{p}": (64,) for p in ("weight", "bias", "running_mean", "running_var")})
    in_planes = 64
    for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
        for i in range(2):
            s = stride if i == 0 else 1
            pre = f"layer{stage}.{i}"
            shapes[f"{pre}.conv1.weight"] = (planes, in_planes, 3, 3)
            shapes[f"{pre}.conv2.weight"] = (planes, planes, 3, 3)
            bns = [f"{pre}.bn1", f"{pre}.bn2"]
            if s != 1 or in_planes != planes:
                shapes[f"{pre}.shortcut.0.weight"] = (planes, in_planes, 1, 1)
                bns.append(f"{pre}.shortcut.1")
            for b in bns:
                for p in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{b}.{p}"] = (planes,)
            in_planes = planes
    shapes["linear.weight"] = (num_classes, 512)
    shapes["linear.bias"] = (num_classes,)
    return shapes


def trades_wrn_param_count(depth, k, num_classes):
    """Trainable parameters of TRADES' WRN without sub_block1, from the paper's layout."""
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 3 * 16 * 9  # conv1
    for cin, cout in zip(widths[:-1], widths[1:]):
        for i in range(n):
            c = cin if i == 0 else cout
            total += 2 * c + c * cout * 9 + 2 * cout + cout * cout * 9  # bn1 conv1 bn2 conv2
            if c != cout:
                total += c * cout  # convShortcut
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes  # bn1, fc


# ------------------------------------------------------------------------------ registry

def test_registry_keys_and_unknown_arch():
    assert set(models.ARCHS) == {"resnet18", "preact_resnet18", "wrn34_10", "wrn34_5",
                                 "wrn28_10", "wrn32_10", "small_cnn"}
    with pytest.raises(ValueError, match="known: .*resnet18.*wrn34_10"):
        models.build("resnet50", 10)


@pytest.mark.parametrize("arch", ["resnet18", "preact_resnet18", "small_cnn"])
def test_small_archs_forward(arch):
    model = models.build(arch, 7)
    assert model.name == arch
    x = _rng().random((2, 32, 32, 3), dtype=np.float32)
    for training in (False, True):
        y = model(x, training=training)
        assert tuple(y.shape) == (2, 7) and y.dtype == "float32"
        assert np.all(np.isfinite(_np(y)))
    assert model.layers[-1].activation is keras.activations.linear  # logits, no softmax


@pytest.mark.slow  # four WRNs; every arch builds in the fast tier below
def test_wide_resnets_build_with_expected_sizes():
    for arch, (depth, k) in {"wrn34_10": (34, 10), "wrn34_5": (34, 5), "wrn28_10": (28, 10),
                             "wrn32_10": (34, 10)}.items():
        model = models.build(arch, 10)
        assert model.name == arch
        assert _n_params(model.trainable_weights) == trades_wrn_param_count(depth, k, 10)
    assert trades_wrn_param_count(34, 10, 10) == 46_160_474
    # one tiny forward through the biggest net (batch 1, eval mode)
    y = model(np.zeros((1, 32, 32, 3), np.float32), training=False)
    assert tuple(y.shape) == (1, 10)


@pytest.mark.parametrize("arch", sorted(models.ARCHS))
def test_every_registered_arch_builds(arch):
    """Every registered architecture builds: logits (no softmax) for 7 classes from
    32x32x3 images, and its PyTorch state-dict layout accounts for every Keras weight."""
    model = models.build(arch, 7)
    assert model.name == arch
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == (None, 7)
    assert model.layers[-1].activation is keras.activations.linear
    template = models.torch_state_dict_template(model)
    assert sum(int(np.prod(shape)) for shape in template.values()) == model.count_params()


def test_wide_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+4"):
        models.wide_resnet(32, 10, 10)


def test_resnet18_parameter_count():
    model = models.build("resnet18", 10)
    # PyTorch's 11,173,962 parameters = conv/linear weights+bias and BN weight+bias, i.e.
    # exactly Keras' trainable weights; the BN running stats (PyTorch buffers) are Keras'
    # non-trainable weights: 2 x 4,800 BN channels.
    assert _n_params(model.trainable_weights) == 11_173_962
    assert _n_params(model.non_trainable_weights) == 9_600
    assert model.count_params() == 11_183_562


def test_names_are_deterministic_and_torch_like():
    a, b = models.build("resnet18", 10), models.build("resnet18", 10)
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    names = {l.name for l in a.layers}
    assert {"conv1", "bn1", "layer1.0.conv1", "layer2.0.shortcut.0", "layer2.0.shortcut.1",
            "linear"} <= names
    assert all(isinstance(l, models.TorchBatchNorm) for l in a.layers
               if isinstance(l, keras.layers.BatchNormalization))


def test_float64(float64):
    model = models.build("small_cnn", 10)
    y = model(np.zeros((1, 32, 32, 3)), training=True)
    assert y.dtype == "float64" and all(w.dtype == "float64" for w in model.weights)


def test_mixed_precision_gives_float32_logits():
    old = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build("resnet18", 10)
        assert model.get_layer("layer1.0.conv1").compute_dtype == "float16"
        y = model(np.zeros((1, 32, 32, 3), np.float32), training=True)
        assert y.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(old)


# --------------------------------------------------------------------------- templates

def test_resnet18_template_matches_hand_written_reference():
    template = models.torch_state_dict_template(models.build("resnet18", 10))
    assert template == kuangliu_resnet18_shapes(10)


def test_wrn_and_preact_templates():
    wrn = models.torch_state_dict_template(models.build("wrn34_10", 10))
    assert wrn["conv1.weight"] == (16, 3, 3, 3)
    assert wrn["block1.layer.0.bn1.weight"] == (16,)
    assert wrn["block1.layer.0.conv1.weight"] == (160, 16, 3, 3)
    assert wrn["block1.layer.0.convShortcut.weight"] == (160, 16, 1, 1)
    assert "block1.layer.1.convShortcut.weight" not in wrn
    assert wrn["block2.layer.0.convShortcut.weight"] == (320, 160, 1, 1)
    assert wrn["block3.layer.4.conv2.weight"] == (640, 640, 3, 3)
    assert "block3.layer.5.conv1.weight" not in wrn
    assert wrn["bn1.running_var"] == (640,)
    assert wrn["fc.weight"] == (10, 640) and wrn["fc.bias"] == (10,)
    assert not any(k.startswith("sub_block1") for k in wrn)
    assert len(wrn) == 1 + 3 * (5 * 10 + 1) + 4 + 2  # conv1, blocks, bn1, fc
    pre = models.torch_state_dict_template(models.build("preact_resnet18", 100))
    assert pre["layer1.0.bn1.weight"] == (64,)
    assert pre["layer2.0.bn1.running_mean"] == (64,)
    assert pre["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert "layer2.0.shortcut.1.weight" not in pre and "bn1.weight" not in pre
    assert pre["bn.weight"] == (512,) and pre["linear.weight"] == (100, 512)


# ------------------------------------------------------------------------------ import

def _synthetic_resnet18_state_dict(seed=0):
    rng = _rng(seed)
    sd = {}
    for key, shape in kuangliu_resnet18_shapes(10).items():
        value = rng.standard_normal(shape).astype(np.float32)
        if key.endswith("running_var"):
            value = np.abs(value) + 0.5
        sd[key] = value
    return sd


def test_load_synthetic_state_dict_places_values():
    sd = _synthetic_resnet18_state_dict()
    wrapped = {f"module.{k}": v for k, v in sd.items()}  # nn.DataParallel checkpoint
    wrapped.update({f"module.{k[:-len('.weight')]}.num_batches_tracked": np.array(7)
                    for k in sd if "bn" in k and k.endswith("bn1.weight")})
    model = models.build("resnet18", 10)
    report = models.load_torch_state_dict(model, wrapped)
    assert not report["missing"] and not report["unexpected"]
    assert len(report["loaded"]) == len(sd)
    # conv OIHW -> HWIO: kernel[h, w, i, o] == weight[o, i, h, w]
    k = _np(model.get_layer("layer2.0.conv1").kernel)
    w = sd["layer2.0.conv1.weight"]
    assert k.shape == (3, 3, 64, 128)
    assert k[2, 0, 5, 17] == w[17, 5, 2, 0] and k[1, 2, 63, 0] == w[0, 63, 1, 2]
    sc = _np(model.get_layer("layer4.0.shortcut.0").kernel)
    np.testing.assert_array_equal(sc[0, 0], sd["layer4.0.shortcut.0.weight"][:, :, 0, 0].T)
    bn = model.get_layer("layer3.1.bn2")
    np.testing.assert_array_equal(_np(bn.moving_variance),
                                  sd["layer3.1.bn2.running_var"])
    np.testing.assert_array_equal(_np(bn.gamma), sd["layer3.1.bn2.weight"])
    np.testing.assert_array_equal(_np(bn.beta), sd["layer3.1.bn2.bias"])
    np.testing.assert_array_equal(
        _np(model.get_layer("layer2.0.shortcut.1").moving_mean),
        sd["layer2.0.shortcut.1.running_mean"])
    lin = model.get_layer("linear")
    np.testing.assert_array_equal(_np(lin.kernel), sd["linear.weight"].T)
    np.testing.assert_array_equal(_np(lin.bias), sd["linear.bias"])
    # and back
    back = models.keras_to_torch_state_dict(model)
    assert back.keys() == sd.keys()
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])


def test_load_errors_list_offending_keys_and_leave_model_untouched():
    model = models.build("resnet18", 10)
    before = _np(model.get_layer("conv1").kernel).copy()
    sd = _synthetic_resnet18_state_dict()
    del sd["layer1.1.bn2.running_var"]
    sd["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    sd["layer2.0.conv2.weight"] = np.zeros((128, 128, 1, 3), np.float32)
    with pytest.raises(StateDictMismatchError) as err:
        models.load_torch_state_dict(model, sd)
    msg = str(err.value)
    assert "missing keys (1): layer1.1.bn2.running_var" in msg
    assert "unexpected keys (1): layer5.0.conv1.weight" in msg
    assert ("layer2.0.conv2.weight: expected (128, 128, 3, 3), got (128, 128, 1, 3)"
            in msg)
    assert err.value.mismatched == [("layer2.0.conv2.weight", (128, 128, 3, 3),
                                     (128, 128, 1, 3))]
    np.testing.assert_array_equal(_np(model.get_layer("conv1").kernel),
                                  before)
    # non-strict: missing/unexpected tolerated, shape mismatch still fatal
    with pytest.raises(StateDictMismatchError, match="shape mismatch") as err:
        models.load_torch_state_dict(model, sd, strict=False)
    assert not err.value.missing and not err.value.unexpected
    del sd["layer2.0.conv2.weight"]
    report = models.load_torch_state_dict(model, sd, strict=False)
    assert report["missing"] == ["layer1.1.bn2.running_var", "layer2.0.conv2.weight"]
    assert report["unexpected"] == ["layer5.0.conv1.weight"]
    np.testing.assert_array_equal(_np(model.get_layer("conv1").kernel),
                                  np.transpose(sd["conv1.weight"], (2, 3, 1, 0)))


def test_trades_sub_block1_keys_are_ignored():
    # WRN-10-1: block1 is 16->16 (identity shortcut), block2/3 have convShortcut.
    model = models.wide_resnet(10, 1, 10)
    template = models.torch_state_dict_template(model)
    assert "block1.layer.0.convShortcut.weight" not in template
    assert template["block2.layer.0.convShortcut.weight"] == (32, 16, 1, 1)
    sd = {k: np.ones(s, np.float32) for k, s in template.items()}
    sd["sub_block1.layer.0.conv1.weight"] = np.ones((16, 16, 3, 3), np.float32)
    report = models.load_torch_state_dict(model, sd)
    assert report["ignored"] == ["sub_block1.layer.0.conv1.weight"]
    with pytest.raises(StateDictMismatchError, match="unexpected keys.*sub_block1"):
        models.load_torch_state_dict(model, sd, ignore_prefixes=())


def test_wrn_init_follows_trades():
    model = models.wide_resnet(16, 4, 10)
    k = _np(model.get_layer("block3.layer.1.conv1").kernel)
    assert abs(k.std() / math.sqrt(2.0 / (9 * 256)) - 1) < 0.02
    assert np.all(_np(model.get_layer("fc").bias) == 0)
    bn = model.get_layer("block2.layer.0.bn2")
    assert np.all(_np(bn.gamma) == 1)
    assert np.all(_np(bn.beta) == 0)


# ------------------------------------------------------------------ padding / forward

def _numpy_conv_nhwc(x, kernel, stride, pad):
    """Reference cross-correlation, symmetric zero padding (PyTorch Conv2d semantics)."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[i, j])
    return out


def test_stride2_conv_pads_symmetrically_like_pytorch():
    model = models.build("resnet18", 10)
    pad = model.get_layer("layer2.0.conv1_pad")
    conv = model.get_layer("layer2.0.conv1")
    sub = keras.Model(pad.input, conv.output)
    x = _rng(1).standard_normal((2, 32, 32, 64)).astype(np.float32)
    got = _np(sub(x))
    kernel = _np(conv.kernel).astype(np.float64)
    want = _numpy_conv_nhwc(x.astype(np.float64), kernel, stride=2, pad=1)
    assert got.shape == (2, 16, 16, 128)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The check is discriminative: Keras 'same' (pads 0 before, 1 after) differs.
    same = _np(
        keras.ops.conv(x, conv.kernel, strides=2, padding="same"))
    assert np.abs(same - want).max() > 1e-2
    # The 1x1 stride-2 projection samples the same grid as PyTorch's.
    sc = model.get_layer("layer2.0.shortcut.0")
    sub = keras.Model(sc.input, sc.output)
    want = _numpy_conv_nhwc(x.astype(np.float64),
                            _np(sc.kernel).astype(np.float64), 2, 0)
    np.testing.assert_allclose(_np(sub(x)), want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- convert

def test_extract_state_dict_and_convert(tmp_path):
    sd = _synthetic_resnet18_state_dict(3)
    assert convert_mod.extract_state_dict(sd) is sd
    assert convert_mod.extract_state_dict({"state_dict": sd, "epoch": 3}) is sd
    assert convert_mod.extract_state_dict({"model": sd}) is sd
    with pytest.raises(ValueError, match="state_dict"):
        convert_mod.extract_state_dict([1, 2])
    out = str(tmp_path / "r18.weights.h5")
    convert_mod.convert("resnet18", 10, sd, out)
    model = models.build("resnet18", 10)
    model.load_weights(out)
    np.testing.assert_array_equal(models.keras_to_torch_state_dict(model)["layer4.1.conv2.weight"],
                                  sd["layer4.1.conv2.weight"])


def test_convert_cli_without_torch_exits_with_message(monkeypatch, tmp_path, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    assert convert_mod.main(["convert", "--arch=small_cnn",
                             f"--torch_checkpoint={tmp_path / 'x.pt'}",
                             f"--output={tmp_path / 'y.weights.h5'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "needs PyTorch" in err[0]
    assert not (tmp_path / "y.weights.h5").exists()


@requires_torch
def test_convert_cli_reads_torch_checkpoint(tmp_path):
    sd = _synthetic_resnet18_state_dict(4)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in sd.items()}},
               ckpt)
    out = tmp_path / "r18.weights.h5"
    assert convert_mod.main(["convert", "--arch=resnet18", "--num_classes=10",
                             f"--torch_checkpoint={ckpt}", f"--output={out}"]) == 0
    model = models.build("resnet18", 10)
    model.load_weights(str(out))
    np.testing.assert_array_equal(models.keras_to_torch_state_dict(model)["linear.weight"],
                                  sd["linear.weight"])


# -------------------------------------------------- optional parity against PyTorch nets

if torch is not None:
    class TorchBasicBlock(nn.Module):  # kuangliu/pytorch-cifar models/resnet.py
        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    class TorchPreActBlock(nn.Module):  # robust_overfitting / AWP preactresnet.py
        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

        def forward(self, x):
            out = F.relu(self.bn1(x))
            shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
            out = self.conv1(out)
            out = self.conv2(F.relu(self.bn2(out)))
            return out + shortcut

    class TorchResNet18(nn.Module):
        def __init__(self, preact=False, num_classes=10):
            super().__init__()
            block = TorchPreActBlock if preact else TorchBasicBlock
            self.preact = preact
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            if not preact:
                self.bn1 = nn.BatchNorm2d(64)
            in_planes = 64
            for stage, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
                blocks = []
                for s in (stride, 1):
                    blocks.append(block(in_planes, planes, s))
                    in_planes = planes
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            if preact:
                self.bn = nn.BatchNorm2d(512)
            self.linear = nn.Linear(512, num_classes)

        def forward(self, x):
            out = self.conv1(x) if self.preact else F.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            if self.preact:
                out = F.relu(self.bn(out))
            out = F.avg_pool2d(out, 4).view(out.size(0), -1)
            return self.linear(out)

    class TorchWRNBlock(nn.Module):  # TRADES models/wideresnet.py BasicBlock (dropRate 0)
        def __init__(self, in_planes, out_planes, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_planes)
            self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
            self.equal = in_planes == out_planes
            self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1,
                                                                  stride, 0, bias=False)

        def forward(self, x):
            if not self.equal:
                x = F.relu(self.bn1(x))
                out = x
            else:
                out = F.relu(self.bn1(x))
            out = self.conv2(F.relu(self.bn2(self.conv1(out))))
            return (x if self.equal else self.convShortcut(x)) + out

    class TorchNetworkBlock(nn.Module):
        def __init__(self, n, in_planes, out_planes, stride):
            super().__init__()
            self.layer = nn.Sequential(*[TorchWRNBlock(in_planes if i == 0 else out_planes,
                                                       out_planes, stride if i == 0 else 1)
                                         for i in range(n)])

        def forward(self, x):
            return self.layer(x)

    class TorchWRN(nn.Module):
        def __init__(self, depth, k, num_classes=10):
            super().__init__()
            c = [16, 16 * k, 32 * k, 64 * k]
            n = (depth - 4) // 6
            self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
            self.block1 = TorchNetworkBlock(n, c[0], c[1], 1)
            self.sub_block1 = TorchNetworkBlock(n, c[0], c[1], 1)  # unused, as in TRADES
            self.block2 = TorchNetworkBlock(n, c[1], c[2], 2)
            self.block3 = TorchNetworkBlock(n, c[2], c[3], 2)
            self.bn1 = nn.BatchNorm2d(c[3])
            self.fc = nn.Linear(c[3], num_classes)
            self.c = c[3]

        def forward(self, x):
            out = self.block3(self.block2(self.block1(self.conv1(x))))
            out = F.relu(self.bn1(out))
            return self.fc(F.avg_pool2d(out, 8).view(-1, self.c))


def _randomise_bn_buffers(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


@requires_torch
@pytest.mark.parametrize("arch", ["resnet18", "preact_resnet18", "wrn16_2"])
def test_logits_match_pytorch_after_import(arch):
    torch.manual_seed(0)
    if arch == "wrn16_2":
        net, model = TorchWRN(16, 2), models.wide_resnet(16, 2, 10)
    else:
        net, model = TorchResNet18(preact=arch.startswith("preact")), models.build(arch, 10)
    _randomise_bn_buffers(net)
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    report = models.load_torch_state_dict(model, state)
    assert not report["missing"] and not report["unexpected"]
    x = _rng(2).random((4, 32, 32, 3), dtype=np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    net.eval()
    with torch.no_grad():
        want = net(xt).numpy()
    got = _np(model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))

    net.train()
    with torch.no_grad():
        want = net(xt).numpy()
    got = _np(model(x, training=True))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
    # one train-mode forward updated the running stats identically (unbiased variance)
    after = models.keras_to_torch_state_dict(model)
    for key, value in net.state_dict().items():
        if key.endswith(("running_mean", "running_var")) and "sub_block1" not in key:
            np.testing.assert_allclose(after[key], value.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=key)


@pytest.mark.parametrize("arch", [pytest.param("resnet18", marks=pytest.mark.slow),
                                  pytest.param("wrn34_5", marks=pytest.mark.slow), "small_cnn"])
def test_same_padded_stride1_convs_equal_explicit_padding(float64, arch):
    """Stride-1 3x3 convs pad with 'same' (no pad layer, whose gradient is a slice copy):
    the same logits, input gradients and weights (names included) as the explicit
    ZeroPadding2D construction (``pad_at_stride_1=True``); stride-2 convs keep their pad
    layer."""
    import tensorflow as tf

    out = []
    for pad_layers in (True, False):
        keras.utils.set_random_seed(0)
        model = models.build(arch, 10, pad_at_stride_1=pad_layers)
        pads = [la.name for la in model.layers if isinstance(la, keras.layers.ZeroPadding2D)]
        x = tf.constant(_rng(1).uniform(0, 1, (2, 32, 32, 3)))
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = model(x, training=True)
        out.append((pads, [w.path for w in model.weights], z.numpy(),
                    tape.gradient(z, x, output_gradients=tf.ones_like(z)).numpy()))
    (pads_before, names_before, *before), (pads_now, names_now, *now) = out
    strided = {"resnet18": 3, "wrn34_5": 2, "small_cnn": 0}[arch]
    assert len(pads_now) == strided < len(pads_before)
    assert names_now == names_before
    for a, b in zip(before, now):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
