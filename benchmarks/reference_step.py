"""The official side of the speed benchmarks: one optimizer step of the official PyTorch
code, imported from a checkout (``--reference_dir``) and never copied, as
``benchmarks.vs_reference`` races it and ``benchmarks.onednn_kernels`` dissects it."""

import os
import sys

from benchmarks.tf_step import BETA, EPS, LR, STEP

REFERENCES = {
    # reference -> (tf_st method key, file that must exist in the checkout)
    "st-at": ("st", "losses.py"),
    "trades": ("trades", "trades.py"),
}


def check_reference(reference, reference_dir):
    """Raises ValueError saying what is missing (torch, the checkout, its files)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError("this benchmark needs PyTorch to run the official code "
                         "(pip install torch==2.13.0)") from None
    if not reference_dir:
        raise ValueError(f"--reference_dir: give a checkout of the official "
                         f"{'qizhangli/ST-AT' if reference == 'st-at' else 'yaodongyu/TRADES'}"
                         f" repository")
    for name in (REFERENCES[reference][1], os.path.join("models", "resnet.py")):
        if not os.path.isfile(os.path.join(reference_dir, name)):
            raise ValueError(f"--reference_dir={reference_dir} is not a {reference} checkout: "
                             f"{name} is missing")


def reference_step(reference, reference_dir, threads, k, autocast=False):
    """One optimizer step of the official code as its training script runs it.

    Imports torch and the checkout, so it runs in a process of its own.

    Args:
        reference: ``"st-at"`` or ``"trades"``.
        reference_dir: the official checkout.
        threads: ``torch.set_num_threads``.
        k: inner iterations.
        autocast: run the official loss call (``stat_loss`` / ``trades_loss``: every
            forward and the inner attack) under ``torch.autocast("cpu",
            dtype=torch.bfloat16)``, backward and ``SGD.step`` outside it, as PyTorch's
            AMP recipe does; the model's logits are cast to float32 as they leave it.

    Returns:
        ``(step, make_batch, forwards)``: the step (``step(x, y)``), the batch it trains
        on (``make_batch(batch_size)``) and a count of forward calls so far
        (``forwards()``).
    """
    import contextlib

    import numpy as np
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if not torch.cuda.is_available():
        # The official code moves every new tensor with .cuda(); here it stays on the CPU.
        torch.Tensor.cuda = lambda self, *a, **kw: self
        torch.nn.Module.cuda = lambda self, *a, **kw: self
    sys.path.insert(0, reference_dir)
    from models.resnet import ResNet18
    if reference == "st-at":
        from losses import stat_loss
        model = ResNet18(num_classes=10)
    else:
        from trades import trades_loss
        model = ResNet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    # Forward passes per step, counted (ST-AT forwards the clean batch again in every
    # iteration in which any row selects it, so its cost depends on the data).
    forwards = [0]
    model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    if autocast:
        # Under autocast the last Linear returns bfloat16 logits, and ST-AT's
        # get_upper_lower writes them into float32 zeros with an index put, which refuses
        # mixed dtypes.  float32 logits are what tf_st's mixed policy gives too (its last
        # Dense computes in float32); the cast of a (batch, 10) tensor costs nothing.
        model.register_forward_hook(lambda module, inputs, output: output.float())

    def precision():
        if autocast:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(x, y):
        optimizer.zero_grad()
        with precision():
            if reference == "st-at":
                loss, *_ = stat_loss(model=model, x_natural=x, y=y, optimizer=optimizer,
                                     step_size=STEP, epsilon=EPS, perturb_steps=k, beta=BETA,
                                     loss_mode="symmkl")
            else:
                loss = trades_loss(model=model, x_natural=x, y=y, optimizer=optimizer,
                                   step_size=STEP, epsilon=EPS, perturb_steps=k, beta=BETA)
        if reference == "st-at":
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def make_batch(b):
        return (torch.from_numpy(
                    np.random.RandomState(b).uniform(0, 1, (b, 3, 32, 32)).astype("float32")),
                torch.from_numpy(np.random.RandomState(b + 1).randint(0, 10, b)))

    return step, make_batch, lambda: forwards[0]
