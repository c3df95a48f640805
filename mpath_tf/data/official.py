"""Readers of the official raw distribution files, checked against their MD5.

- MNIST and Fashion-MNIST: four gzip-compressed IDX files each.
- CIFAR-10: ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/`` with
  five training batches and ``test_batch`` (Python 2 pickles of a uint8
  (10000, 3072) array, rows = 1024 red, 1024 green, 1024 blue values).

Files are found in a directory given as ``data_dir`` (or ``$MPATH_TF_DATA_DIR``),
either directly or in a subdirectory named after the dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from mpath_tf.errors import DataError

DATA_DIR_ENV = "MPATH_TF_DATA_DIR"

# Official file names and the MD5 checksums published with each dataset.
IDX_FILES = {
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
CIFAR10_FILE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
OFFICIAL = {**{name: list(files) for name, files in IDX_FILES.items()}, "cifar10": [CIFAR10_FILE]}


def find_files(name: str, data_dir) -> Path | None:
    """The directory holding ``name``'s official files, or None if none is set.

    Raises:
        DataError: If a directory is set but the files are not in it.
    """
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if root is None:
        return None
    root = Path(root)
    wanted = OFFICIAL[name][0]
    for candidate in (root / name, root):
        if (candidate / wanted).is_file():
            return candidate
    raise DataError(
        f"Dataset '{name}': {wanted} not found in {root} or {root / name}; point "
        f"--data-dir (or {DATA_DIR_ENV}) at the directory holding the official files."
    )


def _check_md5(path: Path, raw: bytes, md5: str) -> None:
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise DataError(
            f"{path}: MD5 {digest} does not match the official {md5}; the file is "
            "damaged or not the official one. Download it again."
        )


def _read_idx(path: Path, md5: str | None, magic: int) -> np.ndarray:
    raw = path.read_bytes()
    if md5:
        _check_md5(path, raw, md5)
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


def read_idx_dataset(name: str, folder: Path, verify_checksums: bool = True):
    """Arrays (x_train, y_train, x_test, y_test), uint8, from the IDX files.

    Raises:
        DataError: A file is missing, fails its checksum, or is malformed.
    """
    arrays = {}
    for filename, md5 in IDX_FILES[name].items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"Dataset '{name}': {path} is missing; add the official file.")
        magic = 2051 if "images" in filename else 2049
        arrays[filename.split("-idx")[0]] = _read_idx(path, md5 if verify_checksums else None, magic)
    x, y = arrays["train-images"], arrays["train-labels"]
    x_test, y_test = arrays["t10k-images"], arrays["t10k-labels"]
    if len(x) != len(y) or len(x_test) != len(y_test):
        raise DataError(f"Dataset '{name}' in {folder}: image and label counts differ.")
    return x, y, x_test, y_test


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, NumPy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(archive: tarfile.TarFile, member: str, path: Path):
    try:
        handle = archive.extractfile(f"{CIFAR10_DIR}/{member}")
    except KeyError:
        raise DataError(
            f"{path}: {CIFAR10_DIR}/{member} is missing; the archive is not the "
            "official CIFAR-10 python version."
        ) from None
    batch = _ArrayUnpickler(handle, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"{path}: {member} holds data of shape {data.shape} and {len(labels)} "
            "labels; expected (N, 3072) and N labels."
        )
    # Rows are 1024 red, 1024 green, 1024 blue values: (N, 3, 32, 32) -> NHWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(folder: Path, verify_checksums: bool = True):
    """Arrays (x_train, y_train, x_test, y_test) from ``cifar-10-python.tar.gz``.

    Raises:
        DataError: The archive is missing, fails its checksum, is truncated or
            does not have the official layout.
    """
    path = folder / CIFAR10_FILE
    raw = path.read_bytes()
    if verify_checksums:
        _check_md5(path, raw, CIFAR10_MD5)
    try:
        with tarfile.open(path, "r:gz") as archive:
            parts = [_cifar_batch(archive, f"data_batch_{i}", path) for i in range(1, 6)]
            x_test, y_test = _cifar_batch(archive, "test_batch", path)
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError, KeyError) as err:
        raise DataError(f"{path}: cannot read the archive ({err}); download it again.") from err
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, x_test, y_test
