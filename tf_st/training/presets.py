"""Paper settings as readable presets: one table, ``PRESETS``, keyed by
``(dataset, method)``.

A trainer flag left unset takes its value from ``resolve(method, dataset)``; every
value of the table cites its source in the comment above it.  ``"*"`` is a wildcard;
for one cell the layers apply in this order, later ones winning:

  the method's ``HParams`` defaults (``tf_st.methods``; the base ``HParams`` for a key
  no method registers) < ``("*", "*")`` < ``(dataset, "*")`` < ``("*", method)`` <
  ``(dataset, method)``.

A value equal to the method's ``HParams`` default is not written here: the dataclass
field (which cites its source in its help) is its one place, and ``resolve`` reads it
from there.  A method without entries of its own therefore trains with the dataset's
presets and its own defaults.  Dataset aliases: ``svhn_cropped`` is ``svhn``, and image
folders are trained like CIFAR-10 (``image_folder`` reads the ``cifar10`` cells).

AWP (``AWP_PRESETS``, ``AWP_METHOD_HPARAMS``) and robust self-training (``RST_*``) keep
tables of their own: they are modifiers applied on top of any ``(dataset, method)`` cell
when ``--awp`` / ``--unlabeled`` is given (``awp_preset``, ``awp_method_hparams``,
``rst_preset``), not cells of it.

Sources: ST is Li et al., ICLR 2023, Section 5 ("Experimental settings") and Section
5.1 (beta), and qizhangli/ST-AT ``train_stat.py``; the others are named at their entries.
"""

import copy
import dataclasses

# Every dataset with presets (``resolve`` rejects the others).
DATASETS = ("cifar10", "cifar100", "svhn", "image_folder", "cifar10_mini")
DATASET_ALIASES = {"svhn_cropped": "svhn", "image_folder": "cifar10"}

# CIFAR-10 and CIFAR-100 in the ST paper (Section 5; qizhangli/ST-AT train_stat.py):
# 120 epochs, lr 0.1 cut x0.1 at epochs 80 and 100, random crop + flip.  The step size
# 2/255 is the HParams default.
_CIFAR = {"epochs": 120, "lr": 0.1, "lr_milestones": (80, 100), "augment": "crop_flip"}

# CAT (liuxingbin/CAT train_cat.sh / train_cat.py): 200 epochs, lr 0.1 (the CIFAR
# value) cut x0.1 at epochs 100 and 150.  Its batch 128, SGD momentum 0.9, wd 5e-4,
# eps 8/255, step 2/255, 10 steps and ResNet-18 are the shared settings above; its alpha
# 1/20, TRADES beta 6 and members trades,alp are CATHParams defaults.  ALP alone is
# trained like CAT's ALP network.  The bundled demo set keeps its smoke-scale schedule.
_CAT_SCHEDULE = {"epochs": 200, "lr_milestones": (100, 150)}

# FAT (zjfheart/Friendly-Adversarial-Training FAT.py / FAT_for_TRADES.py /
# FAT_for_MART.py): eps 0.031, step 0.007, K 10, batch 128, SGD momentum 0.9, lr 0.1,
# wd 2e-4; FAT: WRN-32-10 (WRN_madry), 120 epochs, lr x0.1 at 60, x0.01 at 90, x0.005
# at 110; FAT-TRADES: WRN-34-10, 85 epochs, x0.1 at 75 (x0.01 at 90 is never reached);
# FAT-MART: WRN-34-10, 90 epochs, x0.1 at 60, x0.01 at 90.  beta 6, the tau schedules
# and omega are the methods' HParams defaults.  The scripts' seeds (FAT 7, the others
# 1) are not presets: --seed.  Not applied to the bundled demo set.
_FAT_DATASETS = ("cifar10", "cifar100", "svhn")
_FAT_BUDGET = {"epsilon": 0.031, "step_size": 0.007}
_FAT_TRAINING = {"weight_decay": 2e-4, "lr": 0.1}

PRESETS = {
    # ST paper Section 5 (all methods trained alike; qizhangli/ST-AT train_stat.py):
    # ResNet-18, batch 128, SGD momentum 0.9, weight decay 5e-4 (coupled, PyTorch-style).
    # eps 8/255 and K = 10 are the HParams defaults.
    ("*", "*"): {"arch": "resnet18", "batch_size": 128, "momentum": 0.9,
                 "weight_decay": 5e-4},
    ("cifar10", "*"): _CIFAR,
    ("cifar100", "*"): _CIFAR,
    # SVHN (ST paper Section 5; qizhangli/ST-AT train_stat.py): 80 epochs, lr 0.01 cut
    # at 50 and 65, step 1/255, no augmentation (ST-AT trains SVHN with transform_test).
    ("svhn", "*"): {"epochs": 80, "lr": 0.01, "lr_milestones": (50, 65),
                    "step_size": 1 / 255, "augment": "none"},
    # The bundled 3,000-image demo set: a small model and a few epochs, so that the
    # README's main command runs in minutes on 2 CPU cores.  Not a paper setting.
    ("cifar10_mini", "*"): {"arch": "small_cnn", "epochs": 5, "lr": 0.05,
                            "lr_milestones": (4,), "augment": "crop_flip", "batch_size": 64},
    # ST paper Section 5.1: beta 4 on CIFAR-100 and 8 on SVHN (6 on CIFAR-10 and the
    # symmetric KL are STHParams defaults).  TRADES' beta 6 and MART's beta 5 ("by
    # following their original papers", Section 5) and the collaborative method's beta 6
    # (Eq. 5 gives none) are their HParams defaults.
    ("cifar100", "st"): {"beta": 4.0},
    ("svhn", "st"): {"beta": 8.0},
    # CAT and ALP: see _CAT_SCHEDULE.
    **{(d, m): _CAT_SCHEDULE for d in ("cifar10", "cifar100") for m in ("cat", "alp")},
    # FAT, FAT-TRADES, FAT-MART: see _FAT_DATASETS.
    **{("*", m): _FAT_BUDGET for m in ("fat", "fat_trades", "fat_mart")},
    **{(d, "fat"): {**_FAT_TRAINING, "arch": "wrn32_10", "epochs": 120,
                    "lr_milestones": (60, 90, 110), "lr_multipliers": (0.1, 0.01, 0.005)}
       for d in _FAT_DATASETS},
    **{(d, "fat_trades"): {**_FAT_TRAINING, "arch": "wrn34_10", "epochs": 85,
                           "lr_milestones": (75, 90)} for d in _FAT_DATASETS},
    **{(d, "fat_mart"): {**_FAT_TRAINING, "arch": "wrn34_10", "epochs": 90,
                         "lr_milestones": (60, 90)} for d in _FAT_DATASETS},
}


def canonical_dataset(dataset):
    """The dataset whose cells ``dataset`` reads; ``ValueError`` for one without presets."""
    if dataset not in DATASETS and dataset not in DATASET_ALIASES:
        raise ValueError(f"no preset for dataset {dataset!r}; known: {sorted(DATASETS)}")
    return DATASET_ALIASES.get(dataset, dataset)


def hparam_defaults(method):
    """``{field: default}`` of ``method``'s HParams (the base HParams for a key no
    method registers), ``norm`` (the threat model, not a preset) left out."""
    from tf_st import methods
    from tf_st.methods.hparams import HParams
    cls = methods.METHODS[method].HParams if method in methods.METHODS else HParams
    # ``norm`` is the threat model (--norm), not a paper preset.
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING and f.name != "norm"}


def table_values(method, dataset):
    """What ``PRESETS`` says for one cell, without the HParams defaults."""
    dataset = canonical_dataset(dataset)
    out = {}
    for key in (("*", "*"), (dataset, "*"), ("*", method), (dataset, method)):
        out.update(copy.deepcopy(PRESETS.get(key, {})))
    return out


def resolve(method, dataset):
    """The full preset for ``method`` on ``dataset``: the method's HParams defaults,
    then the cells of ``PRESETS`` in the order of the module docstring."""
    table = table_values(method, dataset)
    return {**hparam_defaults(method), **table}


# Derived view: the dataset-wide cells, per dataset with presets.
DATASET_PRESETS = {d: table_values("*", d) for d in DATASETS}


# AWP, a modifier of any cell (csdongxian/AWP): AT-AWP gamma 0.01 from the first epoch,
# proxy lr 0.01, epochs counted from 0 for the warm-up (AT_AWP/train_cifar10.py);
# TRADES-AWP gamma 0.005 from epoch 10 counted from 1, proxy lr 0.1
# (trades_AWP/train_trades_cifar.py).  The ST paper's "+AWP" rows have no released code
# (qizhangli/ST-AT has no AWP script); ST, and every other method, take the TRADES-AWP
# values.
AWP_PRESETS = {
    "madry": {"gamma": 0.01, "warmup": 0, "proxy_lr": 0.01, "first_epoch": 0},
    "madry2": {"gamma": 0.01, "warmup": 0, "proxy_lr": 0.01, "first_epoch": 0},
    "*": {"gamma": 0.005, "warmup": 10, "proxy_lr": 0.1, "first_epoch": 1},
}
# The method options with which --awp reproduces the official loops around the step:
# AT_AWP/train_cifar10.py attacks in train mode (after the per-epoch test, the first
# batch in eval mode) and runs a train-mode logging forward after the restore;
# trades_AWP/train_trades_cifar.py runs its outer forwards adversarial, clean, clean.
AWP_METHOD_HPARAMS = {
    "madry": {"attack_bn": "train", "log_forward": True, "eval_first_batch": True},
    "madry2": {"attack_bn": "train", "log_forward": True, "eval_first_batch": True},
    "trades": {"forward_order": "adv_nat_nat"},
    "trades2": {"forward_order": "adv_nat_nat"},
}


def awp_preset(method):
    return dict(AWP_PRESETS.get(method, AWP_PRESETS["*"]))


def awp_method_hparams(method):
    return dict(AWP_METHOD_HPARAMS.get(method, {}))


# Robust self-training, a modifier of any cell (yaircarmon/semisup-adv
# robust_self_training.py and qizhangli/ST-AT st_rst.sh): WRN-28-10, batch 256 (half
# pseudo-labelled), 200 epochs, lr 0.1 cosine per epoch, SGD momentum 0.9 with Nesterov,
# wd 5e-4, eps 0.031, step 0.007, 10 steps, beta 6 (a value of its own for every method,
# MART's default beta 5 included); ST-RST starts both points at x + U(-eps, eps)
# and runs its outer forwards adversarial first (semisup-adv losses_stat.py); TRADES
# runs semisup-adv losses.py:trades_loss's two forwards, adversarial then clean.
# On the bundled demo set only the method settings, schedule and Nesterov apply.
RST_TRAINING = {"arch": "wrn28_10", "batch_size": 256, "epochs": 200, "lr": 0.1,
                "momentum": 0.9, "weight_decay": 5e-4}
RST_COMMON = {"lr_schedule": "cosine", "nesterov": True}
RST_HPARAMS = {"epsilon": 0.031, "step_size": 0.007, "steps": 10, "beta": 6.0}
RST_METHOD_HPARAMS = {"st": {"init": "uniform", "forward_order": "adv_nat"},
                      "trades": {"forward_order": "adv_nat"},
                      "trades2": {"forward_order": "adv_nat"}}


# The L2 threat model (--norm=l2), a modifier of any cell applied last (after AWP's and
# RST's): the L-inf cells' epsilon/step_size/steps are L-inf lengths, so under L2 the unset
# ones come from here instead; given values win.  CIFAR-10's L2 budget is eps 0.5 (the
# MadryLab robustness library's CIFAR L2 models, README "CIFAR L2-norm (ResNet50): eps =
# 0.25, 0.5, 1.0"; RobustBench's CIFAR-10 L2 leaderboard, eps 0.5).  The inner attack
# follows the robustness library: 7 steps (robustness/defaults.py PGD_ARGS
# "attack-steps" default 7) of size 0.1 (its documentation's command-line usage page:
# the eps 0.5 L2-PGD of a CIFAR-10 model runs --attack-lr 0.1).  The per-epoch PGD-20 and
# the final PGD attacks step 2.5 * eps / 20 (the robustness README: PGD with a step size
# of 2.5 * eps / num_steps; 0.0625 at eps 0.5) unless --eval_step_size is given.  One
# preset for every dataset: SVHN's and CIFAR-100's L2 settings are not standardised, so
# the CIFAR-10 budget is the default there too.
L2_HPARAMS = {"epsilon": 0.5, "step_size": 0.1, "steps": 7}
L2_EVAL_STEP_FACTOR = 2.5 / 20


def l2_preset():
    """The L2 threat model's inner-attack budget (the comment above ``L2_HPARAMS``).

    Returns:
      ``{"epsilon": 0.5, "step_size": 0.1, "steps": 7}`` (a copy).
    """
    return dict(L2_HPARAMS)


def eval_step_size(norm, epsilon):
    """The step of the evaluation's PGD attacks when ``--eval_step_size`` is unset.

    Args:
      norm: ``'linf'`` or ``'l2'`` (the trainer's ``--norm``).
      epsilon: the run's budget.

    Returns:
      2/255 under L-inf (ST-AT ``utils.py:evaluate``); ``2.5 * epsilon / 20`` under L2
      (the robustness library's rule for its PGD-20).
    """
    if norm == "l2":
        return L2_EVAL_STEP_FACTOR * float(epsilon)
    return 2 / 255


def rst_preset(method, dataset):
    out = dict(RST_COMMON)
    if dataset != "cifar10_mini":
        out.update(RST_TRAINING)
    hparams = dict(RST_HPARAMS)
    hparams.update(RST_METHOD_HPARAMS.get(method, {}))
    return out, hparams
