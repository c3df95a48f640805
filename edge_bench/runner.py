"""Measure a list of models on one target, journaled and resumable."""

from __future__ import annotations

import os
from pathlib import Path

from edge_bench.journal import Journal, result_key
from edge_bench.targets import BenchSettings, Target, sha256_file
from mpath_tf.errors import ModelError


def measure_models(
    target: Target,
    models: list[tuple[dict, str | os.PathLike]],
    journal: Journal,
    settings: BenchSettings | None = None,
    log=print,
) -> list[dict]:
    """Time each model on ``target``, skipping those the journal already holds.

    A model the target cannot load or run (``ModelError``) becomes a row with
    ``status: failed`` and the error, and the next model is measured. A
    ``TargetError`` (device gone) propagates; every row finished before it is
    already in the journal, so rerunning resumes.

    Args:
        target: Where to measure.
        models: ``(labels, path)`` pairs; the labels (for example paths and
            quantization) are stored in the row.
        journal: Where rows are kept.
        settings: Timing settings.
        log: Progress printer.

    Returns:
        One row per model, in order (from the journal where already measured).

    Raises:
        TargetError: The target cannot be reached or used.
    """
    settings = settings or BenchSettings()
    rows = []
    for labels, path in models:
        path = Path(path)
        key = result_key(target.name, sha256_file(path), settings.to_dict())
        row = journal.get(key)
        if row is not None:
            rows.append(row)
            continue
        try:
            row = target.measure(path, settings)
            stats = row["stats"]
            log(f"  {path.name}: median {stats['median_us'] if stats['median_us'] is not None else stats['mean_us']:.1f} us"
                + (" [suspect]" if row["suspect"] else ""))
        except ModelError as err:
            row = {"status": "failed", "target": target.name, "model": str(path),
                   "settings": settings.to_dict(), "error": str(err)}
            log(f"  {path.name}: FAILED: {err}")
        row = {"key": key, **labels, **row}
        journal.add(row)
        rows.append(row)
    return rows
