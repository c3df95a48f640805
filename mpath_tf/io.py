"""Atomic file writes and the library versions recorded in every run.

A file is written to a temporary sibling and renamed into place, so a reader
(or a resumed run) sees either the old complete file or the new complete file,
never a half-written one.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Raises:
        OSError: If the directory cannot be written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model to a ``.keras`` file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_model(path: str | os.PathLike):
    """Load a ``.keras`` file that holds mpath-tf layers.

    Keras finds custom layers only once their classes are registered, that
    is, once their modules are imported; ``import mpath_tf`` alone does not
    import them (the API is loaded lazily), so load through this function.

    Args:
        path: The ``.keras`` file.

    Returns:
        The Keras model.

    Example:
        >>> import tempfile, pathlib
        >>> from mpath_tf import build_supernet, derive
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.keras"
        >>> atomic_save_model(derive(build_supernet((4,), 2, 2, 4, seed=0), 2), path)
        >>> load_model(path).name
        'mpath-2-4-b2'
    """
    import keras

    import converters.lowering  # noqa: F401  (registers PathChain)
    import mpath_tf.layers  # noqa: F401  (registers PathDense, MembraneDense)
    import mpath_tf.gates  # noqa: F401  (registers GatedSupernet, HyperSupernet)
    import mpath_tf.models  # noqa: F401  (registers Supernet)

    return keras.saving.load_model(path)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for dist in ("mpath-tf", "tensorflow", "keras", "ai-edge-litert", "numpy", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
