"""Image folders ``<data_dir>/<split>/<class>/<image>``, classes interleaved so that any
prefix of a split is class-balanced."""

import os

import tensorflow as tf

from tf_st.data.splits import IMAGE_EXTENSIONS, SPLITS, DatasetNotFoundError, _from_uint8


def _list_images(directory):
    return sorted(e.name for e in os.scandir(directory)
                  if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _class_dirs(directory):
    return {e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")}


MAGIC = {".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",), ".png": (b"\x89PNG",),
         ".bmp": (b"BM",)}


# What a complete file ends with, within its last bytes (JPEG writers may pad after the
# end-of-image marker; PNG's last chunk is IEND).
TRAILER = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}


def check_image_file(path):
    """Fails naming ``path`` if it is empty, not the image its name says or truncated (a
    decode error deep in an epoch would not name it).  Reads at most 72 bytes."""
    ext = os.path.splitext(path)[1].lower()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 64))
        tail = f.read(64)
    problem = None
    if not head:
        problem = "empty"
    elif not head.startswith(MAGIC[ext]):
        problem = "not a valid image"
    elif ext in TRAILER and TRAILER[ext] not in tail.rstrip(b"\x00\r\n "):
        problem = "truncated (no end-of-image marker)"
    elif ext == ".bmp" and (size < 6 or int.from_bytes(head[2:6], "little") > size):
        problem = "truncated (shorter than its header says)"
    if problem:
        raise DatasetNotFoundError(f"image_folder: {path} is {problem} (expected a complete "
                                   f"{ext} file); fix or remove it")


def check_image_headers(paths):
    for path in paths:
        check_image_file(path)


def first_undecodable(paths):
    """``(path, reason)`` of the first file TF cannot decode to an image, else None.  Slow
    (decodes everything): only called after a decode error, to name the file."""
    for path in paths:
        try:
            check_image_file(path)
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (DatasetNotFoundError, tf.errors.OpError) as e:
            reason = getattr(e, "message", str(e)).strip().splitlines()[0]
            return path, reason
    return None


def load_image_folder(data_dir, split, *, cache=False, name="image_folder"):
    """Split from ``data_dir/split/<class>/<file>`` (jpg/jpeg/png/bmp).

    Classes: sorted union of the class folders under ``train/`` and ``test/`` (labels are
    consistent across splits).  Examples are ordered round-robin over classes (files
    sorted within a class), so any prefix of the split is class-balanced. Images are decoded to 3 channels; every image must have the
    height/width of the first one, otherwise iteration fails with an error naming the file.
    """
    if not data_dir:
        raise ValueError("dataset 'image_folder' needs data_dir=<folder containing "
                         "train/<class>/... and test/<class>/...>")
    root = os.path.expanduser(str(data_dir))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"image_folder: data_dir {root!r} is not a directory")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        present = sorted(_class_dirs(root))
        raise DatasetNotFoundError(
            f"image_folder: split folder {split_dir!r} does not exist (expected layout "
            f"{root}/{split}/<class>/<image>; subfolders present: {present})")
    classes = set()
    for s in SPLITS:
        if os.path.isdir(os.path.join(root, s)):
            classes |= _class_dirs(os.path.join(root, s))
    class_names = sorted(classes)
    if not class_names:
        raise DatasetNotFoundError(f"image_folder: no class folders in {split_dir!r}")
    per_class = []
    for i, c in enumerate(class_names):
        cdir = os.path.join(split_dir, c)
        if os.path.isdir(cdir):
            files = _list_images(cdir)
            if not files:
                # An empty class folder would silently add a class without data.
                raise DatasetNotFoundError(
                    f"image_folder: class folder {cdir!r} has no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images")
            per_class.append([(os.path.join(cdir, f), i) for f in files])
    # Classes are interleaved (1st file of every class, then the 2nd, ...), so that the
    # first N examples -- what --eval_examples and --train_examples take -- are balanced.
    order = sorted(((rank, label, path) for files in per_class
                    for rank, (path, label) in enumerate(files)))
    paths = [path for _, _, path in order]
    check_image_headers(paths)
    labels = [label for _, label, _ in order]
    if not paths:
        raise DatasetNotFoundError(
            f"image_folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {split_dir!r}")

    first = tf.io.decode_image(tf.io.read_file(paths[0]), channels=3, dtype=tf.uint8,
                               expand_animations=False)
    shape = [int(first.shape[0]), int(first.shape[1]), 3]
    expected = tf.constant(shape, tf.int32)

    def decode(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8,
                                 expand_animations=False)
        ok = tf.reduce_all(tf.equal(tf.shape(img), expected))
        check = tf.debugging.Assert(
            ok, ["image_folder: image", path, "has shape", tf.shape(img),
                 "but the first image", paths[0], "has shape", expected,
                 "(all images must share one size)"], summarize=8)
        with tf.control_dependencies([check]):
            img = tf.identity(img)
        img = tf.ensure_shape(img, shape)
        return img, label

    files = tf.data.Dataset.from_tensor_slices((tf.constant(paths),
                                                tf.constant(labels, tf.int64)))
    raw = files.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        raw = raw.cache()
    return _from_uint8(raw, num_classes=len(class_names), num_examples=len(paths),
                       class_names=class_names, name=name, split=split,
                       note=f"image folder {split_dir}")
