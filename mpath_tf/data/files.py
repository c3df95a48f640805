"""The user's own data: ``.npz`` arrays or a ``.csv`` table.

- ``.npz``: arrays ``x_train`` and ``y_train``, optionally ``x_test`` and
  ``y_test`` (both or neither). Loaded with ``allow_pickle=False``.
- ``.csv``: a header row, one column of labels (named by ``label``), every
  other column a numeric feature. This is the common shape of sensor and IoT
  data.

Labels may be of any kind: class names (``walking``), integers that are
not 0 .. C-1 (``3, 7, 12``), booleans or integral floats. They are mapped to
class indices 0 .. C-1 in sorted order, and the original values are kept as
``class_labels`` (the class names of ``labels.txt`` and of the exported
files). In a CSV a label column is read as numbers when every value is one
(so ``10`` sorts after ``9``) and as text otherwise. Features are used as
given (uint8 arrays are scaled to [0, 1] as images); float features are
standardized inside the model (``mpath_tf.models``), so raw sensor readings
of any scale can be given.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from mpath_tf.errors import DataError


def _labels(values, path: Path, what: str) -> np.ndarray:
    """Labels as a 1-D array of ints, floats, bools or strings (sortable, one kind)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{path}: {what} must be one label per example (a 1-D array); "
                        f"found shape {array.shape}.")
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"{path}: {what} holds {int(bad.sum())} NaN or infinite labels "
                            f"(first at index {int(np.flatnonzero(bad)[0])}); remove those rows.")
        return array.astype(np.int64) if np.all(array == np.round(array)) else array
    if array.dtype.kind in "US":
        return array.astype(str)
    raise DataError(f"{path}: {what} has dtype {array.dtype}; labels must be numbers, "
                    "booleans or strings.")


def _is_integer(value) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


def _features(values, path: Path, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: {what} must be numeric; found dtype {array.dtype}.")
    if array.dtype == np.uint8:
        return (array / 255.0).astype("float32")
    array = array.astype("float32")
    bad = ~np.isfinite(array)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise DataError(
            f"{path}: {what} holds {int(bad.sum())} NaN or infinite values (first at "
            f"index {first}); remove or impute them."
        )
    return array


def read_npz(path: Path):
    """(x_train, y_train, x_test, y_test, images) from an ``.npz`` file.

    The test arrays may be None; ``images`` is True when ``x_train`` is uint8
    (pixels, scaled to [0, 1] here and not standardized in the model).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file, damaged or truncated ({err}); "
                        "write it again with numpy.savez.") from err
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing arrays {missing}; an .npz needs x_train and y_train "
            f"(and optionally x_test, y_test). Found: {sorted(arrays)}."
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both x_test and y_test, or neither.")
    images = arrays["x_train"].dtype == np.uint8
    out = [_features(arrays["x_train"], path, "x_train"), _labels(arrays["y_train"], path, "y_train")]
    if "x_test" in arrays:
        out += [_features(arrays["x_test"], path, "x_test"), _labels(arrays["y_test"], path, "y_test")]
    else:
        out += [None, None]
    for x, y, name in ((out[0], out[1], "train"), (out[2], out[3], "test")):
        if x is not None and len(x) != len(y):
            raise DataError(f"{path}: x_{name} has {len(x)} rows but y_{name} has {len(y)}.")
    return (*out, images)


def read_csv(path: Path, label: str | None):
    """(features, labels) from a ``.csv`` file with a header row."""
    if not label:
        raise DataError(f"{path}: a CSV file needs `label`, the name of its label column.")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty.") from None
        header = [h.strip() for h in header]
        if label not in header:
            raise DataError(
                f"{path}: no column named '{label}'. Columns: {', '.join(header)}."
            )
        column = header.index(label)
        names = [h for i, h in enumerate(header) if i != column]
        features, labels, lines = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {line}: {len(row)} fields, the header has {len(header)}."
                )
            labels.append(row[column].strip())
            lines.append(line)
            try:
                features.append(
                    [float(v) if v.strip() else np.nan for i, v in enumerate(row) if i != column]
                )
            except ValueError:
                bad = next(
                    (header[i], v) for i, v in enumerate(row) if i != column and not _is_float(v)
                )
                raise DataError(
                    f"{path}, line {line}: column '{bad[0]}' holds '{bad[1]}', not a "
                    "number; every column but the label must be numeric."
                ) from None
    if not labels:
        raise DataError(f"{path}: no data rows after the header; add rows of data.")
    empty = [i for i, v in enumerate(labels) if v == ""]
    if empty:
        raise DataError(f"{path}, line {empty[0] + 2}: the label column '{label}' is empty "
                        f"({len(empty)} rows); fill in or remove those rows.")
    if all(_is_integer(v) for v in labels):
        labels = [int(float(v)) for v in labels]
    elif all(_is_float(v) for v in labels):
        labels = [float(v) for v in labels]
    values = np.array(features, dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}, line {lines[row]}: column '{names[col]}' is "
            f"{'empty or NaN' if np.isnan(values[row, col]) else 'infinite'} ({int(bad.sum())} such "
            "values in the file); fill in or remove those rows (or drop the column)."
        )
    return _features(values, path, "features"), _labels(labels, path, f"column '{label}'")


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return value.strip() == ""
    return True
