"""TFDS datasets (CIFAR-10/100, SVHN), read from prepared data only: nothing is
downloaded, and a missing dataset fails with instructions."""

from tf_st.data.splits import DatasetNotFoundError, _from_uint8


def _not_found_message(name, tfds_name, split, data_dir, err):
    where = (f"data_dir={data_dir!r}" if data_dir else
             "the TFDS default data dir ($TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    return (
        f"Dataset {name!r} (TFDS name {tfds_name!r}, split {split!r}) is not prepared in "
        f"{where}, and tf_st never downloads. To fix, do one of:\n"
        f"  1. on a machine with internet, run `tfds build {tfds_name} --data_dir=DIR` (or "
        f"`python -c \"import tensorflow_datasets as tfds; tfds.load('{tfds_name}', "
        f"data_dir='DIR')\"`), copy DIR here and pass --data_dir=DIR (the directory that "
        f"contains {tfds_name}/), or set TFDS_DATA_DIR=DIR;\n"
        f"  2. use images on disk: --dataset=image_folder --data_dir=ROOT with "
        f"ROOT/train/<class>/*.png and ROOT/test/<class>/*.png;\n"
        f"  3. use the bundled offline subset: --dataset=cifar10_mini.\n"
        f"(TFDS said: {type(err).__name__}: {str(err).strip()[:500]})")


def _load_tfds(name, spec, split, data_dir):
    import tensorflow_datasets as tfds

    try:
        raw, info = tfds.load(spec.tfds_name, split=split, data_dir=data_dir, download=False,
                              as_supervised=True, with_info=True, shuffle_files=False,
                              try_gcs=False)
    except Exception as err:  # TFDS raises AssertionError/FileNotFoundError/... when missing
        raise DatasetNotFoundError(
            _not_found_message(name, spec.tfds_name, split, data_dir, err)) from err
    label = info.features["label"]
    num_examples = None
    try:
        num_examples = int(info.splits[split].num_examples)
    except (KeyError, ValueError):  # no split metadata (e.g. tfds.testing.mock_data)
        pass
    if not num_examples:
        card = int(raw.cardinality())
        num_examples = card if card >= 0 else int(raw.reduce(0, lambda n, _: n + 1))
    return _from_uint8(raw, num_classes=int(label.num_classes), num_examples=num_examples,
                       class_names=list(label.names), name=name, split=split,
                       note=f"TFDS {spec.tfds_name} {split}")
