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

import sys
from collections.abc import Mapping

from absl import flags

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
      ValueError: PyTorch is not installed.
      ValueError: the file does not hold a dict.
    """
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ValueError("tf_st.models.convert needs PyTorch to read .pt files "
                         "(pip install torch --index-url "
                         "https://download.pytorch.org/whl/cpu); tf_st itself does not "
                         "require it") from None
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


# Its own registry, so that importing this module next to a trainer defines nothing twice.
FLAGS = flags.FlagValues()
flags.DEFINE_enum("arch", None, sorted(models.ARCHS), "Architecture of the checkpoint.",
                  flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 10, "Number of classes.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("torch_checkpoint", None, "PyTorch checkpoint (.pt) of a reference "
                    "implementation.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Keras weights file to write (*.weights.h5).",
                    flag_values=FLAGS)
flags.DEFINE_bool("non_strict", False, "Tolerate missing/unexpected keys (shape mismatches "
                  "still fail).", flag_values=FLAGS)
flags.DEFINE_bool("keep_sub_block1", False, "Do not silently drop TRADES' unused "
                  "sub_block1.* keys.", flag_values=FLAGS)
_VERBOSE = cli.define_verbose_errors(FLAGS)


def _help(full=False):
    return cli.help_text(
        "python -m tf_st.models.convert", __doc__.split("\n")[0],
        [("input", ["arch", "num_classes", "torch_checkpoint", "non_strict",
                    "keep_sub_block1"]),
         ("output", ["output"]), ("messages", ["verbose", "verbose_errors"])], FLAGS,
        footer="Example: python -m tf_st.models.convert --arch=resnet18 --num_classes=10 "
               "--torch_checkpoint=ep_best.pt --output=resnet18.weights.h5")


def main(argv=None):
    """The command line (``tf_st.cli``'s policy).

    Args:
      argv: the command line, program name first (default ``sys.argv``).

    Returns:
      The exit status: 0, or 2 for bad input.
    """
    argv = list(sys.argv if argv is None else argv)

    def run(_):
        for name in ("arch", "torch_checkpoint", "output"):
            if not FLAGS[name].value:
                raise ValueError(f"--{name} is required")
        if not FLAGS.output.endswith(".weights.h5"):
            raise ValueError("--output must end with .weights.h5 (Keras 3 requirement)")
        state_dict = load_torch_checkpoint(FLAGS.torch_checkpoint)
        convert(FLAGS.arch, FLAGS.num_classes, state_dict, FLAGS.output,
                strict=not FLAGS.non_strict,
                ignore_prefixes=() if FLAGS.keep_sub_block1 else DEFAULT_IGNORE_PREFIXES)
        print(f"wrote {FLAGS.output} ({FLAGS.arch}, {FLAGS.num_classes} classes)")
        return 0
    return cli.run_command(run, argv, FLAGS, _help, _VERBOSE)


if __name__ == "__main__":
    sys.exit(main())
