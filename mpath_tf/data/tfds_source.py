"""TensorFlow Datasets as a source (optional: ``pip install mpath-tf[tfds]``).

A dataset already prepared in the TFDS data directory is read from there; a
download through TFDS is the last resort, after the official files.
"""

from __future__ import annotations

import os
import socket

import numpy as np

from mpath_tf.errors import DataError

TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}
# Where TFDS downloads these datasets from. Probed first: offline, TFDS's own
# retries take minutes before they give up.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT_S = 5.0


def _can_reach(host: tuple[str, int]) -> bool:
    try:
        socket.create_connection(host, timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def available() -> bool:
    """Whether ``tensorflow_datasets`` can be imported."""
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        return False
    return True


def _builder(name: str, tfds_dir):
    import tensorflow_datasets as tfds

    return tfds.builder(TFDS_NAMES[name], data_dir=os.fspath(tfds_dir) if tfds_dir else None)


def is_prepared(name: str, tfds_dir=None) -> bool:
    """Whether TFDS has ``name`` prepared in ``tfds_dir`` (default TFDS dir)."""
    return available() and _builder(name, tfds_dir).is_prepared()


def location(name: str, tfds_dir=None) -> str:
    """Where TFDS keeps (or would keep) the prepared dataset."""
    return os.fspath(_builder(name, tfds_dir).data_dir)


def read(name: str, tfds_dir=None, download: bool = False):
    """Arrays (x_train, y_train, x_test, y_test), uint8 images, from TFDS.

    Args:
        name: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        tfds_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        download: Download and prepare the dataset if it is not prepared.

    Raises:
        DataError: Not prepared and ``download`` is False, or the download failed.
    """
    import tensorflow_datasets as tfds

    builder = _builder(name, tfds_dir)
    if not builder.is_prepared():
        if not download:
            raise DataError(f"TFDS has no prepared '{name}' in {builder.data_dir}.")
        if not _can_reach(DOWNLOAD_HOST):
            raise DataError(
                f"Dataset '{name}' is not prepared in TensorFlow Datasets ({builder.data_dir}) "
                f"and {DOWNLOAD_HOST[0]} cannot be reached to download it; put the official "
                "files in a directory and pass --data-dir DIR (or set MPATH_TF_DATA_DIR)."
            )
        try:
            builder.download_and_prepare()
        except Exception as err:  # network, disk: TFDS raises many types
            raise DataError(
                f"TFDS could not download '{name}' ({type(err).__name__}: {err}); "
                "put the official files in --data-dir instead."
            ) from err
    arrays = {}
    for split in ("train", "test"):
        batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        image = np.asarray(batch["image"], dtype=np.uint8)
        if image.shape[-1] == 1:  # (N, 28, 28, 1) -> (N, 28, 28), as the IDX files
            image = image[..., 0]
        arrays[split] = (image, np.asarray(batch["label"], dtype=np.int64))
    return (*arrays["train"], *arrays["test"])
