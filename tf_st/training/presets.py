"""Paper settings as readable presets, per (method, dataset).

A trainer flag left unset takes its value from here; every value cites its source.
ST: Li et al., ICLR 2023, Section 5 ("Experimental settings") and Section 5.1 (beta),
and ST-AT ``train_stat.py`` (reference-implementations.md §1.1).
"""

import copy

# Settings every method shares on a dataset in the ST paper's comparisons (Section 5):
# ResNet-18, batch 128, SGD momentum 0.9, weight decay 5e-4 (coupled, PyTorch-style),
# eps 8/255, K = 10 inner steps.
_COMMON = {"arch": "resnet18", "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4,
           "epsilon": 8 / 255, "steps": 10}

DATASET_PRESETS = {
    # CIFAR: 120 epochs, lr 0.1 cut x0.1 at epochs 80 and 100, step 2/255, crop + flip.
    "cifar10": {**_COMMON, "epochs": 120, "lr": 0.1, "lr_milestones": (80, 100),
                "step_size": 2 / 255, "augment": "crop_flip"},
    "cifar100": {**_COMMON, "epochs": 120, "lr": 0.1, "lr_milestones": (80, 100),
                 "step_size": 2 / 255, "augment": "crop_flip"},
    # SVHN: 80 epochs, lr 0.01 cut at 50 and 65, step 1/255, no augmentation
    # (ST-AT trains SVHN with transform_test).
    "svhn": {**_COMMON, "epochs": 80, "lr": 0.01, "lr_milestones": (50, 65),
             "step_size": 1 / 255, "augment": "none"},
    # Image folders are treated like CIFAR-10.
    "image_folder": None,
    # The bundled 3,000-image demo set: a small model and a few epochs, so that the
    # README's main command runs in minutes on 2 CPU cores.  Not a paper setting.
    "cifar10_mini": {**_COMMON, "arch": "small_cnn", "epochs": 5, "lr": 0.05,
                     "lr_milestones": (4,), "step_size": 2 / 255, "augment": "crop_flip",
                     "batch_size": 64},
}
DATASET_PRESETS["image_folder"] = DATASET_PRESETS["cifar10"]

METHOD_PRESETS = {
    # ST paper Section 5.1: beta 6 (CIFAR-10), 4 (CIFAR-100), 8 (SVHN); symmetric KL.
    "st": {"cifar10": {"beta": 6.0}, "cifar100": {"beta": 4.0}, "svhn": {"beta": 8.0},
           "image_folder": {"beta": 6.0}, "cifar10_mini": {"beta": 6.0},
           "*": {"reg": "symmetric_kl"}},
    # ST paper Section 5: "beta = 6 for TRADES and beta = 5 for MART by following their
    # original papers"; other settings as ST's (the paper trains all methods alike).
    "trades": {"*": {"beta": 6.0, "reg": "kl"}},
    "trades2": {"*": {"beta": 6.0, "reg": "kl"}},
    "mart": {"*": {"beta": 5.0}},
    "mart2": {"*": {"beta": 5.0}},
    # Eq. 5 (Section 3.2) gives no beta; 6, TRADES' value, is our choice.
    "col": {"*": {"beta": 6.0}},
    # CAT (liuxingbin/CAT train_cat.sh / train_cat.py, reference-implementations.md §2.1):
    # 200 epochs, lr 0.1 cut x0.1 at epochs 100 and 150, batch 128, SGD momentum 0.9,
    # wd 5e-4, eps 8/255, step 2/255, 10 steps, ResNet-18; alpha 1/20, TRADES beta 6.
    # ALP alone is trained like CAT's ALP network.  The bundled demo set keeps its
    # smoke-scale schedule.
    "cat": {**{d: {"epochs": 200, "lr": 0.1, "lr_milestones": (100, 150)}
               for d in ("cifar10", "cifar100", "image_folder")},
            "*": {"members": "trades,alp", "alpha": 1 / 20, "beta": 6.0}},
    "alp": {d: {"epochs": 200, "lr": 0.1, "lr_milestones": (100, 150)}
            for d in ("cifar10", "cifar100", "image_folder")},
    # FAT (zjfheart/Friendly-Adversarial-Training FAT.py / FAT_for_TRADES.py /
    # FAT_for_MART.py, reference-implementations.md §3.2): eps 0.031, step 0.007, K 10,
    # batch 128, SGD momentum 0.9, wd 2e-4; FAT: WRN-32-10 (WRN_madry), 120 epochs, lr 0.1
    # x0.1 at 60, x0.01 at 90, x0.005 at 110; FAT-TRADES: WRN-34-10, 85 epochs,
    # x0.1 at 75 (x0.01 at 90 is never reached); FAT-MART: WRN-34-10, 90 epochs, x0.1 at
    # 60, x0.01 at 90.  tau schedules and omega are the methods' HParams defaults.  The
    # scripts' seeds (FAT 7, the others 1) are not presets: --seed.
    "fat": {**{d: {"arch": "wrn32_10", "epochs": 120, "lr_milestones": (60, 90, 110),
                   "lr_multipliers": (0.1, 0.01, 0.005), "weight_decay": 2e-4, "lr": 0.1}
               for d in ("cifar10", "cifar100", "image_folder", "svhn")},
            "*": {"epsilon": 0.031, "step_size": 0.007}},
    "fat_trades": {**{d: {"arch": "wrn34_10", "epochs": 85, "lr_milestones": (75, 90),
                          "weight_decay": 2e-4, "lr": 0.1}
                      for d in ("cifar10", "cifar100", "image_folder", "svhn")},
                   "*": {"epsilon": 0.031, "step_size": 0.007, "beta": 6.0}},
    "fat_mart": {**{d: {"arch": "wrn34_10", "epochs": 90, "lr_milestones": (60, 90),
                        "weight_decay": 2e-4, "lr": 0.1}
                    for d in ("cifar10", "cifar100", "image_folder", "svhn")},
                 "*": {"epsilon": 0.031, "step_size": 0.007, "beta": 6.0}},
}


def resolve(method, dataset):
    """The full preset for ``method`` on ``dataset`` (dataset settings, then the
    method's ``*`` entries, then its per-dataset entries)."""
    dataset = "svhn" if dataset == "svhn_cropped" else dataset
    if dataset not in DATASET_PRESETS:
        raise ValueError(f"no preset for dataset {dataset!r}; known: {sorted(DATASET_PRESETS)}")
    preset = copy.deepcopy(DATASET_PRESETS[dataset])
    per_method = METHOD_PRESETS.get(method, {})
    preset.update(per_method.get("*", {}))
    preset.update(per_method.get(dataset, {}))
    return preset


# AWP (csdongxian/AWP, reference-implementations.md §4.3): AT-AWP gamma 0.01 from the
# first epoch, proxy lr 0.01, epochs counted from 0 for the warm-up
# (AT_AWP/train_cifar10.py); TRADES-AWP gamma 0.005 from epoch 10 counted from 1, proxy
# lr 0.1 (trades_AWP/train_trades_cifar.py).  The ST paper's "+AWP" rows have no
# released code (§1.7); ST, and every other method, take the TRADES-AWP values.
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


# Robust self-training (semisup-adv robust_self_training.py and ST-AT st_rst.sh,
# reference-implementations.md §1.6, §4.4): WRN-28-10, batch 256 (half pseudo-labelled),
# 200 epochs, lr 0.1 cosine per epoch, SGD momentum 0.9 with Nesterov, wd 5e-4,
# eps 0.031, step 0.007, 10 steps, beta 6; ST-RST starts both points at x + U(-eps, eps)
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


def rst_preset(method, dataset):
    out = dict(RST_COMMON)
    if dataset != "cifar10_mini":
        out.update(RST_TRAINING)
    hparams = dict(RST_HPARAMS)
    hparams.update(RST_METHOD_HPARAMS.get(method, {}))
    return out, hparams
