"""Datasets with the paper's protocol (section 4).

10% of the training set is held out for validation (stratified, fixed seed),
the test set is kept as it is, pixels are scaled to [0, 1], no augmentation.

Named datasets:

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download).
  It has no official test split, so a stratified 20% is the test set.
- ``mnist``, ``fashion_mnist``, ``cifar10``: from the first source that has
  them, in this order:

  1. TensorFlow Datasets, if the dataset is already prepared in the TFDS data
     directory (``tfds_dir``, else ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``);
  2. the official raw files in ``data_dir`` (or ``$MPATH_TF_DATA_DIR``),
     checked against their published MD5;
  3. a TFDS download (when ``download`` is true and TFDS is installed).

  An explicit directory of official files is preferred to a network download.

Your own data: ``load_file("data.npz")`` or ``load_file("data.csv", label="y")``
(see ``mpath_tf.data.files``); without a test set, a stratified 20% is held out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpath_tf.data import files, official, tfds_source
from mpath_tf.data.official import DATA_DIR_ENV
from mpath_tf.errors import DataError

MAX_CLASSES = 1000  # more distinct labels than this: probably not a label column
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2  # only for data without an official test split
SPLIT_SEED = 0
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")

__all__ = ["DATASETS", "DATA_DIR_ENV", "Dataset", "load_dataset", "load_file"]


@dataclass(frozen=True)
class Dataset:
    """Arrays of one dataset, split as in the paper.

    Attributes:
        name: Dataset name (file stem for the user's files).
        x_train, y_train: Training examples (float32) and labels 0 .. C-1.
        x_val, y_val: The held-out validation part of the training set.
        x_test, y_test: The test set.
        num_classes: Number of classes C.
        source: Where the arrays came from (``tfds:...``, ``files:...``, ...).
        class_labels: The original label of each class index (class names:
            str, int, float or bool, JSON-ready).
        normalize: Whether models for this data standardize their inputs
            (float feature tables: yes; images, already in [0, 1]: no).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str = ""
    class_labels: list = field(default_factory=list)
    normalize: bool = False

    @property
    def class_names(self) -> list[str]:
        """The class names as text, by class index (the lines of ``labels.txt``)."""
        return [str(label) for label in self.class_labels]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch axis."""
        return tuple(self.x_train.shape[1:])


def _stratified_split(x, y, fraction, seed, where: str, names: list | None = None):
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        rare = int(np.flatnonzero(counts == counts[counts > 0].min())[0])
        name = names[rare] if names is not None else rare
        raise DataError(
            f"{where}: class {name!r} has a single example (after the held-out split); a "
            "stratified split needs at least 2 per class (3 without a test set). Add "
            "examples of it or remove its rows."
        )
    try:
        return train_test_split(x, y, test_size=fraction, stratify=y, random_state=seed)
    except ValueError as err:
        raise DataError(f"{where}: cannot split stratified ({err}).") from err


def _make(name, x, y, x_test, y_test, split_seed, source, many_classes: bool = True,
          normalize: bool = False) -> Dataset:
    """Encode labels, hold out test (if none) and validation sets."""
    if y_test is not None and y.dtype.kind != y_test.dtype.kind and "U" in (
            y.dtype.kind, y_test.dtype.kind):
        raise DataError(f"{source}: y_train and y_test hold different kinds of labels "
                        f"({y.dtype} and {y_test.dtype}); give both as text or both as numbers.")
    classes, y_all = np.unique(
        np.concatenate([y, y_test]) if y_test is not None else y, return_inverse=True
    )
    y, y_test = y_all[: len(y)], (y_all[len(y) :] if y_test is not None else None)
    if len(classes) < 2:
        raise DataError(f"{source}: only one class ({classes.tolist()}); need at least 2.")
    if len(classes) > MAX_CLASSES and not many_classes:
        raise DataError(
            f"{source}: the labels hold {len(classes)} distinct values (such as "
            f"{classes[:3].tolist()}), more than {MAX_CLASSES}: probably not a label column "
            "(a measurement or an ID?). Check --label, or pass --many-classes if there "
            "really are that many classes."
        )
    names = classes.tolist()
    if x_test is None:
        x, x_test, y, y_test = _stratified_split(x, y, TEST_FRACTION, split_seed, source, names)
    x_train, x_val, y_train, y_val = _stratified_split(
        x, y, VALIDATION_FRACTION, split_seed, source, names
    )
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(classes),
        source=source,
        class_labels=names,
        normalize=normalize,
    )


def _scale(*arrays):
    return [(a / 255.0).astype("float32") for a in arrays]


def load_dataset(
    name: str = "digits",
    data_dir: str | os.PathLike | None = None,
    split_seed: int = SPLIT_SEED,
    tfds_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify_checksums: bool = True,
) -> Dataset:
    """Load a named dataset split into train / validation / test as in the paper.

    Args:
        name: One of ``DATASETS``.
        data_dir: Directory with the official raw files (default
            ``$MPATH_TF_DATA_DIR``).
        split_seed: Seed of the stratified splits.
        tfds_dir: TensorFlow Datasets data directory.
        download: Let TFDS download the dataset when no other source has it.
        verify_checksums: Check official files against their published MD5.

    Returns:
        A ``Dataset``.

    Raises:
        DataError: Unknown name; no source has the dataset; a file is missing,
            fails its checksum, is truncated or malformed.

    Example:
        >>> data = load_dataset("digits")
        >>> data.input_shape, data.num_classes
        ((8, 8), 10)
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images / 16.0).astype("float32")  # pixels 0..16
        return _make(name, x, bunch.target, None, None, split_seed, "sklearn:load_digits")
    if name not in DATASETS:
        raise DataError(f"Unknown dataset '{name}'. Choose one of: {', '.join(DATASETS)}.")
    if tfds_source.is_prepared(name, tfds_dir):
        x, y, x_test, y_test = tfds_source.read(name, tfds_dir)
        source = f"tfds:{tfds_source.location(name, tfds_dir)}"
    elif (folder := official.find_files(name, data_dir)) is not None:
        if name == "cifar10":
            x, y, x_test, y_test = official.read_cifar10(folder, verify_checksums)
        else:
            x, y, x_test, y_test = official.read_idx_dataset(name, folder, verify_checksums)
        source = f"files:{folder}"
    elif download and tfds_source.available():
        x, y, x_test, y_test = tfds_source.read(name, tfds_dir, download=True)
        source = f"tfds:{tfds_source.location(name, tfds_dir)}"
    else:
        hint = "" if tfds_source.available() else " (or install mpath-tf[tfds])"
        raise DataError(
            f"Dataset '{name}' not found: it is not prepared in TensorFlow Datasets and "
            f"no directory of official files ({', '.join(official.OFFICIAL[name])}) is "
            f"set; pass --data-dir DIR or set {DATA_DIR_ENV}=DIR{hint}."
        )
    x, x_test = _scale(x, x_test)
    return _make(name, x, y, x_test, y_test, split_seed, source)


def load_file(
    path: str | os.PathLike, label: str | None = None, split_seed: int = SPLIT_SEED,
    many_classes: bool = False, normalize: bool = True,
) -> Dataset:
    """Load the user's own ``.npz`` or ``.csv`` data (see ``mpath_tf.data.files``).

    Args:
        path: The file.
        label: Name of the label column (CSV only).
        split_seed: Seed of the stratified splits.
        many_classes: Accept more than ``MAX_CLASSES`` distinct labels
            (refused by default: such a column is usually not a label).
        normalize: Models for float features standardize them in their
            first layer (``Dataset.normalize``); uint8 images never do.

    Returns:
        A ``Dataset`` named after the file.

    Raises:
        DataError: Missing file, unknown extension, missing arrays or label
            column, a class with one example, too many distinct labels,
            non-numeric or NaN features.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(path, x_train=rng.random((100, 3)), y_train=np.arange(100) % 2)
        >>> load_file(path).num_classes
        2
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass an existing .npz or .csv file.")
    suffix = path.suffix.lower()
    images = False
    if suffix == ".npz":
        if label:
            raise DataError(f"{path}: `label` is for CSV files; an .npz holds y_train.")
        x, y, x_test, y_test, images = files.read_npz(path)
    elif suffix == ".csv":
        x, y = files.read_csv(path, label)
        x_test = y_test = None
    else:
        raise DataError(f"{path}: unknown file type '{suffix}'; use .npz or .csv.")
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DataError(
            f"{path}: x_test examples have shape {x_test.shape[1:]}, x_train {x.shape[1:]}."
        )
    return _make(path.stem, x, y, x_test, y_test, split_seed, f"file:{path}",
                 many_classes=many_classes, normalize=normalize and not images)
