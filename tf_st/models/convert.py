"""Convert a PyTorch checkpoint of a reference implementation into a Keras weights file.

Usage::

    python -m tf_st.models.convert --arch=resnet18 --num_classes=10 \
        --torch_checkpoint=ep_best.pt --output=resnet18.weights.h5

The checkpoint is read with ``torch.load(path, map_location='cpu', weights_only=True)``
(no pickled code is executed).  It may be a bare ``state_dict`` or a dict holding one under
``'state_dict'`` or ``'model'`` (e.g. RST's ``checkpoint-*.pt``).  torch is imported only
here and only when a file is actually read; tf_st does not depend on it otherwise.  Load
the result with ``tf_st.models.build(arch, num_classes).load_weights(output)``.
"""

import argparse
import sys
from collections.abc import Mapping

from tf_st import cli, models
from tf_st.models.torch_import import DEFAULT_IGNORE_PREFIXES, load_torch_state_dict

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def extract_state_dict(checkpoint):
    """Returns the state dict inside a loaded PyTorch checkpoint.

    Args:
      checkpoint: what ``torch.load`` returned: a bare ``state_dict`` or a dict holding one
        under ``'state_dict'``, ``'model'``, ``'model_state_dict'`` or ``'net'``.

    Returns:
      The mapping of PyTorch parameter keys to tensors.

    Raises:
      ValueError: ``checkpoint`` is not a mapping (e.g. a whole pickled ``nn.Module``).
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint is a {type(checkpoint).__name__}, not a dict; a whole "
                         "pickled nn.Module cannot be read with weights_only=True — save "
                         "model.state_dict() instead")
    for key in _WRAPPER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return inner
    return checkpoint


def load_torch_checkpoint(path):
    """Reads a ``.pt`` file with ``torch.load(path, map_location='cpu', weights_only=True)``.

    Args:
      path: the PyTorch checkpoint file.

    Returns:
      Its state dict (see :func:`extract_state_dict`).

    Raises:
      SystemExit: PyTorch is not installed.
      ValueError: the file does not hold a dict.
    """
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.exit("tf_st.models.convert needs PyTorch to read .pt files "
                 "(pip install torch --index-url https://download.pytorch.org/whl/cpu); "
                 "tf_st itself does not require it.")
    return extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def convert(arch, num_classes, state_dict, output=None, strict=True,
            ignore_prefixes=DEFAULT_IGNORE_PREFIXES):
    """Builds ``arch`` and loads a PyTorch ``state_dict`` into it.

    Args:
      arch: architecture key of :data:`tf_st.models.ARCHS`.
      num_classes: number of logits.
      state_dict: mapping of PyTorch keys to arrays or tensors.
      output: a ``*.weights.h5`` path to save the weights to; None saves nothing.
      strict: missing or unexpected keys are errors (shape mismatches always are).
      ignore_prefixes: key prefixes dropped silently (default: TRADES' ``sub_block1.``).

    Returns:
      The Keras model, with the weights loaded.

    Raises:
      ValueError: unknown ``arch``.
      StateDictMismatchError: the state dict does not fit the model.
    """
    model = models.build(arch, num_classes)
    load_torch_state_dict(model, state_dict, strict=strict, ignore_prefixes=ignore_prefixes)
    if output:
        model.save_weights(output)
    return model


def main(argv=None):
    """The command line: ``python -m tf_st.models.convert --arch=... --torch_checkpoint=...``.

    Args:
      argv: the arguments (without the program name); None reads ``sys.argv``.

    Returns:
      The process exit status (0 on success).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(models.ARCHS))
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--torch_checkpoint", required=True)
    parser.add_argument("--output", required=True, help="Keras weights file (*.weights.h5)")
    parser.add_argument("--non_strict", action="store_true",
                        help="tolerate missing/unexpected keys (shape mismatches still fail)")
    parser.add_argument("--keep_sub_block1", action="store_true",
                        help="do not silently drop TRADES' unused sub_block1.* keys")
    parser.add_argument("--verbose_errors", action="store_true",
                        help="print tracebacks of expected errors too")
    args = parser.parse_args(argv)
    if not args.output.endswith(".weights.h5"):
        parser.error("--output must end with .weights.h5 (Keras 3 requirement)")

    def run(_):
        state_dict = load_torch_checkpoint(args.torch_checkpoint)
        convert(args.arch, args.num_classes, state_dict, args.output,
                strict=not args.non_strict,
                ignore_prefixes=() if args.keep_sub_block1 else DEFAULT_IGNORE_PREFIXES)
        print(f"wrote {args.output} ({args.arch}, {args.num_classes} classes)")
        return 0
    return cli.guarded(run, args.verbose_errors)(None)


if __name__ == "__main__":
    sys.exit(main())
