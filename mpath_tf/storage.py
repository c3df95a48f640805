"""Atomic file writes and the library versions recorded in every run.

A file is written to a temporary sibling and renamed into place, so a reader
(or a resumed run) sees either the old complete file or the new complete file,
never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from mpath_tf.errors import DamagedFileError

CHECKSUM_KEY = "_sha256"  # of a record's other content (``atomic_write_record``)


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


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


def atomic_write_record(path: str | os.PathLike, record: dict) -> None:
    """Write a dict as JSON atomically with a checksum of its content
    (``CHECKSUM_KEY``), so ``read_json`` catches a flipped byte that still parses."""
    atomic_write_json(path, {**record, CHECKSUM_KEY: _digest(record)})


def read_json(path: str | os.PathLike):
    """Read a JSON file back, checked: the one way mpath-tf reads its files.

    A record written by ``atomic_write_record`` has its checksum verified
    and removed.

    Args:
        path: The file.

    Returns:
        The parsed content.

    Raises:
        FileNotFoundError: The file does not exist.
        DamagedFileError: It cannot be read, is not UTF-8 JSON, or its
            checksum does not match its content.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.json"
        >>> atomic_write_record(path, {"val_accuracy": 0.9})
        >>> read_json(path)
        {'val_accuracy': 0.9}
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise DamagedFileError(path, f"cannot be read: {err.strerror or err}") from err
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DamagedFileError(path, "not UTF-8 text") from err
    except json.JSONDecodeError as err:
        what = "empty" if not raw.strip() else f"not valid JSON: {err.msg} at line {err.lineno}"
        raise DamagedFileError(path, what) from err
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        if _digest({k: v for k, v in obj.items() if k != CHECKSUM_KEY}) != obj.pop(CHECKSUM_KEY):
            raise DamagedFileError(path, "its checksum does not match: changed after it was "
                                         "written")
    return obj


def set_aside(path: str | os.PathLike) -> Path:
    """Move a damaged file or folder out of the way, to ``<name>.damaged``
    beside it (replacing an older one), and return the new path."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    if aside.is_dir():
        shutil.rmtree(aside)
    os.replace(path, aside)
    return aside


def atomic_save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model to a ``.keras`` file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for dist in ("mpath-tf", "tensorflow", "keras", "ai-edge-litert", "numpy", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
