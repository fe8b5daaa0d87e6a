"""Tests for tf_st.data (offline: bundled mini set, TFDS mock data, tiny PNG folders)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_st import data as D
from tf_st.training import presets

from tests.helpers import shared_data

CIFAR10_JPEG = shared_data("cifar10-jpeg")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _epoch(ds):
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _indexed_split(n=40, size=8):
    """Split whose label is the example index and whose image encodes it too."""
    x = np.zeros((n, size, size, 3), np.uint8)
    x[:] = (np.arange(n) * 5 % 256).astype(np.uint8)[:, None, None, None]
    return D.from_arrays(x, np.arange(n), num_classes=n)


# ----------------------------------------------------------------------------- registry

def test_registry_and_presets():
    for name in ("cifar10", "cifar100", "svhn", "svhn_cropped", "cifar10_mini", "image_folder"):
        assert name in D.DATASETS
    assert D.DATASETS["svhn"].tfds_name == "svhn_cropped"
    # The augmentation presets live with every other preset (one table).
    assert presets.resolve("madry", "svhn")["augment"] == "none"
    for name in ("cifar10", "cifar100", "cifar10_mini", "image_folder"):
        assert presets.resolve("madry", name)["augment"] == "crop_flip"
    assert D.canonical_name("SVHN_cropped") == "svhn"


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'") as e:
        D.load("mnist", "train")
    for name in ("cifar10", "cifar100", "svhn", "cifar10_mini", "image_folder"):
        assert name in str(e.value)


def test_unknown_split():
    with pytest.raises(ValueError, match="Unknown split"):
        D.load("cifar10_mini", "validation")


# ----------------------------------------------------------------------------- mini

def test_cifar10_mini_shapes_counts_range():
    tr = D.load("cifar10_mini", "train")
    te = D.load("cifar10_mini", "test")
    assert (tr.num_examples, te.num_examples) == (3000, 1000)
    assert tr.num_classes == te.num_classes == 10
    assert tr.class_names == CIFAR10_CLASSES
    assert "training" in te.note and "not" in te.note.lower()
    assert tr.dataset.element_spec[0] == tf.TensorSpec((32, 32, 3), tf.float32)
    assert tr.dataset.element_spec[1] == tf.TensorSpec((), tf.int64)
    x, y = D.as_numpy(te)
    assert x.shape == (1000, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (1000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 1000 and counts.min() >= 60 and counts.max() <= 140
    _, ytr = D.as_numpy(tr, limit=5)
    np.testing.assert_array_equal(ytr, [6, 9, 9, 4, 1])  # canonical CIFAR-10 train labels


def test_cifar10_mini_matches_source():
    src = shared_data("cifar10-lossless-4000.npz")
    if src is None:
        pytest.skip("cifar10-lossless-4000.npz not found in $TF_ST_SHARED_DATA, "
                    "../shared/data or /work/shared/data (only on the development machine)")
    with np.load(src) as d:
        images = d["images"][[0, 2999, 3000, 3999]]
    xtr, _ = D.as_numpy(D.load("cifar10_mini", "train"))
    xte, _ = D.as_numpy(D.load("cifar10_mini", "test"))
    got = np.stack([xtr[0], xtr[2999], xte[0], xte[999]])
    np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), images)


# ----------------------------------------------------------------------------- train pipeline

def test_train_pipeline_reproducible_and_reshuffles():
    split = _indexed_split()

    def two_epochs(seed):
        ds = D.train_pipeline(split, 8, "crop_flip", seed)
        return [_epoch(ds) for _ in range(2)]

    a, b, c = two_epochs(3), two_epochs(3), two_epochs(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    assert len(a[0][1]) == 40 and sorted(a[0][1]) == list(range(40))
    assert not np.array_equal(a[0][1], a[1][1]), "no reshuffle between epochs"
    assert not np.array_equal(a[0][1], c[0][1]), "different seeds gave the same order"


def test_train_pipeline_drop_remainder_and_no_shuffle():
    split = _indexed_split(n=20)
    ds = D.train_pipeline(split, 8, "none", 0, shuffle=False, cache=False)
    x, y = _epoch(ds)
    np.testing.assert_array_equal(y, np.arange(16))
    ds = D.train_pipeline(split, 8, "none", 0, shuffle=False, drop_remainder=False)
    assert len(_epoch(ds)[1]) == 20


def test_augment_none_leaves_images_unchanged():
    split = D.load("cifar10_mini", "test")
    ds = D.train_pipeline(split, 50, "none", 0, shuffle=False)
    x, y = next(iter(ds))
    x_ref, y_ref = D.as_numpy(split, limit=50)
    np.testing.assert_array_equal(x.numpy(), x_ref)
    np.testing.assert_array_equal(y.numpy(), y_ref)


def test_crop_flip_is_per_example():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, size=(32, 32, 3), dtype=np.uint8)
    split = D.from_arrays(np.repeat(img[None], 16, axis=0), np.zeros(16), num_classes=1)
    x, _ = next(iter(D.train_pipeline(split, 16, "crop_flip", 0)))
    x = x.numpy()
    distinct = {x[i].tobytes() for i in range(16)}
    assert len(distinct) >= 8  # 162 equally likely (offset, flip) outcomes per example
    # every output is some crop/flip of the image
    assert x.shape == (16, 32, 32, 3)


def test_crop_flip_pads_with_zeros():
    ones = tf.ones((32, 32, 3))
    out = D.crop_flip(ones, 0, 0, False).numpy()  # shifted by 4 down and right
    assert (out[:4] == 0).all() and (out[:, :4] == 0).all() and (out[4:, 4:] == 1).all()
    out = D.crop_flip(ones, 8, 2, False).numpy()  # shifted 4 up, 2 right
    assert (out[-4:] == 0).all() and (out[:, :2] == 0).all() and (out[:-4, 2:] == 1).all()
    out = D.crop_flip(ones, 4, 0, True).numpy()  # shifted right then mirrored
    assert (out[:, -4:] == 0).all() and (out[:, :-4] == 1).all()
    img = tf.random.stateless_uniform((32, 32, 3), (1, 2))
    np.testing.assert_array_equal(D.crop_flip(img, 4, 4, False).numpy(), img.numpy())
    np.testing.assert_array_equal(D.crop_flip(img, 4, 4, True).numpy(),
                                  img.numpy()[:, ::-1])
    # through the pipeline: constant images keep a one interior and only 0/1 values
    split = D.from_arrays(np.full((32, 32, 32, 3), 255, np.uint8), np.zeros(32), num_classes=1)
    x, _ = next(iter(D.train_pipeline(split, 32, "crop_flip", 1)))
    x = x.numpy()
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert (x[:, 4:28, 4:28] == 1).all()
    assert (x == 0).any(axis=(1, 2, 3)).mean() > 0.5  # most crops are shifted


def test_unknown_augment():
    with pytest.raises(ValueError, match="augment"):
        D.train_pipeline(_indexed_split(), 4, "autoaugment", 0)


# ----------------------------------------------------------------------------- eval pipeline

def test_eval_pipeline_order_and_remainder():
    split = _indexed_split(n=23)
    batches = list(D.eval_pipeline(split, 5).as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(23))
    batches = list(D.eval_pipeline(split, 5, limit=7).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(7))
    x, y = D.as_numpy(split, limit=12)
    assert x.shape == (12, 8, 8, 3) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(12))


# ----------------------------------------------------------------------------- TFDS

@pytest.mark.parametrize("name,tfds_name,classes", [("cifar100", "cifar100", 100),
                                                    ("svhn", "svhn_cropped", 10),
                                                    ("svhn_cropped", "svhn_cropped", 10)])
def test_tfds_mock(name, tfds_name, classes, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        split = D.load(name, "train", data_dir=str(tmp_path))
        assert split.num_classes == classes and split.num_examples == 6
        assert split.name == D.canonical_name(name)
        x, y = D.as_numpy(split)
        ds = D.train_pipeline(split, 4, presets.resolve("madry", name)["augment"], 0)
        xb, yb = next(iter(ds))
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and ((0 <= y) & (y < classes)).all()
    assert xb.shape == (4, 32, 32, 3) and yb.dtype == tf.int64


def test_tfds_missing_data_raises_with_hint(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.load("cifar100", "test", data_dir=str(tmp_path))
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    for hint in ("tfds build cifar100", "--data_dir=", "TFDS_DATA_DIR",
                 "--dataset=image_folder", "cifar10_mini", str(tmp_path)):
        assert hint in msg, hint


# ----------------------------------------------------------------------------- image folder

def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(array))


def _make_folder(root, sizes=None):
    """train: cat x2, dog x1; test: cat x1, dog x1; pixel value = 10*label + index."""
    layout = {"train": {"dog": 1, "cat": 2}, "test": {"cat": 1, "dog": 1}}
    for split, classes in layout.items():
        for c, n in classes.items():
            for i in range(n):
                label = ["cat", "dog"].index(c)
                img = np.full((6, 5, 3), 10 * label + i, np.uint8)
                _write_png(os.path.join(root, split, c, f"{i:03d}.png"), img)
    return root


def test_image_folder_png(tmp_path):
    root = _make_folder(str(tmp_path))
    tr = D.load("image_folder", "train", data_dir=root)
    assert tr.class_names == ["cat", "dog"] and tr.num_classes == 2
    assert tr.num_examples == 3
    x, y = D.as_numpy(tr)
    assert x.shape == (3, 6, 5, 3) and x.dtype == np.float32
    # Round-robin over classes: cat/000, dog/000, cat/001.
    np.testing.assert_array_equal(y, [0, 1, 0])
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, [0, 10, 1], atol=1e-4)
    first2 = D.take(tr, 2)
    assert first2.num_examples == 2 and "first 2" in first2.note
    np.testing.assert_array_equal(D.as_numpy(first2)[1], [0, 1])
    assert D.take(tr, None) is tr and D.take(tr, 10) is tr
    te = D.load("image_folder", "test", data_dir=root)
    assert te.class_names == tr.class_names
    np.testing.assert_array_equal(D.as_numpy(te)[1], [0, 1])
    x, y = next(iter(D.train_pipeline(te, 2, "crop_flip", 0)))
    assert x.shape == (2, 6, 5, 3)
    cached = D.load_image_folder(root, "train", cache=True)
    np.testing.assert_array_equal(D.as_numpy(cached)[0], D.as_numpy(tr)[0])


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        D.load("image_folder", "train")
    with pytest.raises(D.DatasetNotFoundError, match="not a directory"):
        D.load("image_folder", "train", data_dir=str(tmp_path / "nope"))
    root = str(tmp_path / "only_train")
    _write_png(os.path.join(root, "train", "a", "0.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(D.DatasetNotFoundError, match="does not exist"):
        D.load("image_folder", "test", data_dir=root)
    # mismatched sizes: error names the offending file
    _write_png(os.path.join(root, "train", "b", "odd_one.png"), np.zeros((5, 4, 3), np.uint8))
    split = D.load("image_folder", "train", data_dir=root)
    with pytest.raises(tf.errors.InvalidArgumentError, match="odd_one.png"):
        D.as_numpy(split)


@pytest.mark.skipif(CIFAR10_JPEG is None,
                    reason="cifar10-jpeg not found in $TF_ST_SHARED_DATA, ../shared/data or "
                    "/work/shared/data (CIFAR-10 as JPEG folders is only on the dev machine)")
def test_cifar10_jpeg_folder():
    te = D.load("image_folder", "test", data_dir=CIFAR10_JPEG)  # lists files, decodes one
    assert te.class_names == CIFAR10_CLASSES
    assert te.num_examples == 10000 and te.num_classes == 10
    x, y = D.as_numpy(te, limit=3)
    assert x.shape == (3, 32, 32, 3) and list(y) == [0, 1, 2]  # classes interleaved


def test_image_folder_refuses_empty_class_folders_and_broken_files(tmp_path):
    import tensorflow as tf

    from tf_st import data
    img = tf.io.encode_png(tf.zeros((4, 4, 3), tf.uint8)).numpy()
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            (tmp_path / split / c / "0.png").write_bytes(img)
    assert data.load("image_folder", "train", data_dir=str(tmp_path)).num_classes == 2
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(data.DatasetNotFoundError, match="c' has no images"):
        data.load("image_folder", "train", data_dir=str(tmp_path))
    (tmp_path / "train" / "c").rmdir()
    (tmp_path / "train" / "a" / "1.jpg").write_bytes(b"")
    with pytest.raises(data.DatasetNotFoundError, match="1.jpg is empty"):
        data.load("image_folder", "train", data_dir=str(tmp_path))
    (tmp_path / "train" / "a" / "1.jpg").write_bytes(b"<html>not an image</html>")
    with pytest.raises(data.DatasetNotFoundError, match="1.jpg is not a valid image"):
        data.load("image_folder", "train", data_dir=str(tmp_path))
