r"""Writes a pseudo-labelled set for robust self-training (``--unlabeled``) from any
exported classifier.

  python -m trainers.pseudo_label --saved_model=runs/natural/export \
      --dataset=image_folder --data_dir=/path/to/cifar10-jpeg --split=train \
      --skip=5000 --output=pseudo.npz
  python -m trainers.st --dataset=image_folder --data_dir=/path/to/cifar10-jpeg \
      --train_examples=5000 --unlabeled=pseudo.npz

RST (Carmon et al. 2019) labels 500K extra images with a standard classifier; here any
SavedModel does it for any dataset split.  ``--skip`` leaves out the first N examples of
the split, which are the ones a trainer uses with ``--train_examples=N`` (image folders
are class-interleaved, so both parts stay balanced).  The ``.npz`` holds ``images``
(uint8), ``labels`` (the pseudo-labels), ``confidence`` (the top softmax probability)
and ``true_labels`` (the split's own labels, to report pseudo-label accuracy; the
trainer ignores them).
"""

import os
import sys

import numpy as np
from absl import flags

from tf_st import cli, data

# Its own flag registry, so that importing this module next to the trainers (tests, one
# process) never defines --dataset or --output twice.
FLAGS = flags.FlagValues()
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "Classifier SavedModel (or its TF-Serving base directory).",
    flag_values=FLAGS)
_DATASET = flags.DEFINE_enum("dataset", "image_folder", sorted(data.DATASETS),
                             "Dataset whose images get pseudo-labels.", flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir or image-folder root.",
                                flag_values=FLAGS)
_SPLIT = flags.DEFINE_enum("split", "train", list(data.SPLITS), "Split to label.",
                           flag_values=FLAGS)
_SKIP = flags.DEFINE_integer("skip", 0, "Leave out the first N examples (the labelled "
                             "subset of --train_examples=N).", lower_bound=0, flag_values=FLAGS)
_EXAMPLES = flags.DEFINE_integer("examples", None, "Label at most N examples after --skip.",
                                 lower_bound=1, flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 500, "Inference batch size.", lower_bound=1,
                                   flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "Output .npz path.", flag_values=FLAGS)
_VERBOSE = cli.define_verbose_errors(FLAGS)


def pseudo_label(logits_fn, images_uint8, batch_size=500):
    """``(labels, confidence)``: argmax and top softmax probability of ``logits_fn``."""
    import tensorflow as tf
    labels, conf = [], []
    for i in range(0, len(images_uint8), batch_size):
        x = tf.constant(images_uint8[i:i + batch_size], tf.float32) / 255.0
        p = tf.nn.softmax(tf.cast(logits_fn(x), tf.float32)).numpy()
        labels.append(p.argmax(1))
        conf.append(p.max(1))
    return np.concatenate(labels).astype(np.int64), np.concatenate(conf).astype(np.float32)


def _help(full=False):
    return cli.help_text(
        "python -m trainers.pseudo_label",
        "Writes a pseudo-labelled set for robust self-training (the trainers' --unlabeled) "
        "from any exported classifier.",
        [("model and data", ["saved_model", "dataset", "data_dir", "split", "skip",
                             "examples", "batch_size"]),
         ("output", ["output"]), ("messages", ["verbose", "verbose_errors"])], FLAGS,
        footer="Example: python -m trainers.pseudo_label --saved_model=runs/natural/export "
               "--dataset=image_folder --data_dir=/path/to/images --split=train --skip=5000 "
               "--output=pseudo.npz")


def main(argv):
    """The command line (``tf_st.cli``'s policy).

    Args:
      argv: the command line, program name first.

    Returns:
      The exit status: 0, or 2 for bad input.
    """
    return cli.run_command(_main, argv, FLAGS, _help, _VERBOSE)


def _main(argv):
    from export.saved_model import load
    from tf_st.data import rst
    from tf_st.fileio import atomic_write_npz

    if not _SAVED_MODEL.value or not _OUTPUT.value:
        raise ValueError("--saved_model and --output are required")
    out_dir = os.path.dirname(os.path.abspath(_OUTPUT.value))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise ValueError(f"cannot write {_OUTPUT.value}: {out_dir} is not a writable "
                         "directory")
    model = load(_SAVED_MODEL.value)
    split = data.load(_DATASET.value, _SPLIT.value, data_dir=_DATA_DIR.value)
    with data.naming_bad_images(_DATASET.value, _DATA_DIR.value):
        images, true_labels = rst.split_arrays(split)  # decodes every image
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"the model takes {model.image_shape} images, the split has "
                         f"{images.shape[1:]}")
    end = None if _EXAMPLES.value is None else _SKIP.value + _EXAMPLES.value
    images, true_labels = images[_SKIP.value:end], true_labels[_SKIP.value:end]
    if not len(images):
        raise ValueError(f"--skip={_SKIP.value} leaves no examples of {split.num_examples} in "
                         f"{_DATASET.value}/{_SPLIT.value}")
    labels, confidence = pseudo_label(model, images, _BATCH_SIZE.value)
    atomic_write_npz(_OUTPUT.value, images=images, labels=labels, confidence=confidence,
                     true_labels=true_labels)
    print(f"wrote {len(labels)} pseudo-labelled images to {_OUTPUT.value}; pseudo-label "
          f"accuracy against the split's labels {100 * float((labels == true_labels).mean()):.2f}%, "
          f"mean confidence {float(confidence.mean()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
