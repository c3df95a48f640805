"""Datasets with the paper's protocol (section 4).

10% of the training set is held out for validation (stratified, fixed seed),
the test set is kept as it is, pixels are scaled to [0, 1], no augmentation.

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download).
  It has no official test split, so a stratified 20% is held out as the test
  set with the same fixed seed.
- ``mnist``, ``fashion_mnist``: the official IDX ``.gz`` files, read from a
  directory given as ``data_dir`` or by the ``MPATH_TF_DATA_DIR`` environment
  variable (files either directly in it or in a ``mnist/`` or
  ``fashion_mnist/`` subdirectory). Each file is checked against the MD5
  published with the dataset before it is parsed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mpath_tf.errors import DataError

DATA_DIR_ENV = "MPATH_TF_DATA_DIR"
VALIDATION_FRACTION = 0.1
SPLIT_SEED = 0

# Official file names and their published MD5 checksums.
_IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
DATASETS = ("digits", *_IDX_FILES)


@dataclass(frozen=True)
class Dataset:
    """Arrays of one dataset, split as in the paper.

    Attributes:
        name: Dataset name.
        x_train, y_train: Training examples (float32 in [0, 1]) and int labels.
        x_val, y_val: The held-out validation part of the training set.
        x_test, y_test: The test set.
        num_classes: Number of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch axis."""
        return tuple(self.x_train.shape[1:])


def _split_validation(name, x, y, x_test, y_test, split_seed) -> Dataset:
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=split_seed
    )
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=int(max(y.max(), y_test.max()) + 1),
    )


def _load_digits(split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype("float32")  # (1797, 8, 8), pixels 0..16
    y = bunch.target.astype("int64")
    x, x_test, y, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=split_seed
    )
    return _split_validation("digits", x, y, x_test, y_test, split_seed)


def _find_data_dir(name: str, data_dir) -> Path:
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    wanted = next(iter(_IDX_FILES[name]))
    if root is None:
        raise DataError(
            f"Dataset '{name}' needs its official files ({', '.join(_IDX_FILES[name])}); "
            f"pass --data-dir DIR (data_dir=...) or set {DATA_DIR_ENV}=DIR to a "
            f"directory that holds them, directly or under '{name}/'."
        )
    root = Path(root)
    for candidate in (root / name, root):
        if (candidate / wanted).is_file():
            return candidate
    raise DataError(
        f"Dataset '{name}': {wanted} not found in {root} or {root / name}; point "
        f"--data-dir (or {DATA_DIR_ENV}) at the directory holding the official files."
    )


def _read_idx(path: Path, md5: str, magic: int) -> np.ndarray:
    raw = path.read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise DataError(
            f"{path}: MD5 {digest} does not match the official {md5}; the file is "
            "damaged or not the official one. Download it again."
        )
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a complete gzip file ({err}); download it again.")
    ndim = magic & 0xFF
    found = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}.")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(
            f"{path}: header says {shape} but holds {body.size} values; the file "
            "is truncated. Download it again."
        )
    return body.reshape(shape)


def _load_idx_dataset(name: str, data_dir, split_seed: int) -> Dataset:
    folder = _find_data_dir(name, data_dir)
    arrays = {}
    for filename, md5 in _IDX_FILES[name].items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"Dataset '{name}': {path} is missing; add the official file.")
        magic = 2051 if "images" in filename else 2049
        arrays[filename.split("-idx")[0]] = _read_idx(path, md5, magic)
    x = (arrays["train-images"] / 255.0).astype("float32")
    x_test = (arrays["t10k-images"] / 255.0).astype("float32")
    y = arrays["train-labels"].astype("int64")
    y_test = arrays["t10k-labels"].astype("int64")
    if len(x) != len(y) or len(x_test) != len(y_test):
        raise DataError(f"Dataset '{name}' in {folder}: image and label counts differ.")
    return _split_validation(name, x, y, x_test, y_test, split_seed)


def load_dataset(
    name: str = "digits", data_dir: str | os.PathLike | None = None, split_seed: int = SPLIT_SEED
) -> Dataset:
    """Load a dataset split into train / validation / test as in the paper.

    Args:
        name: One of ``DATASETS``: ``digits`` (bundled), ``mnist``,
            ``fashion_mnist``.
        data_dir: Directory with the official files (not needed for
            ``digits``); defaults to ``$MPATH_TF_DATA_DIR``.
        split_seed: Seed of the stratified validation (and digits test) split.

    Returns:
        A ``Dataset``.

    Raises:
        DataError: Unknown name, missing directory or file, wrong checksum,
            truncated or malformed file.

    Example:
        >>> data = load_dataset("digits")
        >>> data.input_shape, data.num_classes
        ((8, 8), 10)
    """
    if name == "digits":
        return _load_digits(split_seed)
    if name in _IDX_FILES:
        return _load_idx_dataset(name, data_dir, split_seed)
    raise DataError(
        f"Unknown dataset '{name}'. Choose one of: {', '.join(DATASETS)}."
    )
