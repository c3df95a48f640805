"""The user's own data: ``.npz`` arrays or a ``.csv`` table.

- ``.npz``: arrays ``x_train`` and ``y_train``, optionally ``x_test`` and
  ``y_test`` (both or neither). Loaded with ``allow_pickle=False``.
- ``.csv``: a header row, one column of labels (named by ``label``), every
  other column a numeric feature. This is the common shape of sensor and IoT
  data.

Labels must be integers; they are mapped to 0 .. C-1 in sorted order (the
original values are kept as ``class_labels``). Features are used as given
(uint8 arrays are scaled to [0, 1] as images); scale tabular features
yourself if their ranges differ widely.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mpath_tf.errors import DataError


def _labels(values, path: Path, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    sample = [v for v in array.ravel()[:200] if not _is_integer(v)][:3]
    raise DataError(
        f"{path}: {what} must be integer class labels; found values such as {sample}. "
        "Encode classes as integers."
    )


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
    """(x_train, y_train, x_test, y_test) from an ``.npz`` file; test may be None."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}).") from err
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing arrays {missing}; an .npz needs x_train and y_train "
            f"(and optionally x_test, y_test). Found: {sorted(arrays)}."
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both x_test and y_test, or neither.")
    out = [_features(arrays["x_train"], path, "x_train"), _labels(arrays["y_train"], path, "y_train")]
    if "x_test" in arrays:
        out += [_features(arrays["x_test"], path, "x_test"), _labels(arrays["y_test"], path, "y_test")]
    else:
        out += [None, None]
    for x, y, name in ((out[0], out[1], "train"), (out[2], out[3], "test")):
        if x is not None and len(x) != len(y):
            raise DataError(f"{path}: x_{name} has {len(x)} rows but y_{name} has {len(y)}.")
    return tuple(out)


def read_csv(path: Path, label: str | None):
    """(features, labels) from a ``.csv`` file with a header row."""
    if not label:
        raise DataError(f"{path}: a CSV file needs --label COLUMN naming its label column.")
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
        features, labels = [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {line}: {len(row)} fields, the header has {len(header)}."
                )
            labels.append(row[column].strip())
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
        raise DataError(f"{path}: no data rows after the header.")
    labels = [int(float(v)) if _is_integer(v) else v for v in labels]
    return _features(np.array(features), path, "features"), _labels(labels, path, f"column '{label}'")


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return value.strip() == ""
    return True
