"""Measure a list of models on one target, journaled and resumable."""

from __future__ import annotations

import os
from pathlib import Path

from edge_bench.journal import Journal, result_key
from edge_bench.stats import row_cost, row_unit
from edge_bench.targets import BenchSettings, Target, sha256_file
from mpath_tf.errors import ConfigError, ModelError

# Repeated tries of one model must agree within this fraction (MLPerf Mobile's rule).
MAX_REPEAT_SPREAD = 0.05


def measure_models(
    target: Target,
    models: list[tuple[dict, str | os.PathLike]],
    journal: Journal,
    settings: BenchSettings | None = None,
    repeats: int = 1,
    log=print,
) -> list[dict]:
    """Time each model on ``target``, skipping what the journal already holds.

    With ``repeats`` > 1 the whole list is measured that many times, one pass
    after another (each model in a fresh process every time), so that a burst
    of load from elsewhere hits one try of a model, not all of them. The row of
    a model is then its try with the median median (``repeat_medians_us`` lists
    all), and tries that disagree by more than 5% make it ``suspect``.

    A model the target cannot load or run (``ModelError``) becomes a row with
    ``status: failed`` and the error, is not tried again, and the next model
    is measured. A ``TargetError`` (device gone) propagates; every try
    finished before it is already in the journal, so rerunning resumes.

    Args:
        target: Where to measure.
        models: ``(labels, path)`` pairs; the labels (for example paths and
            quantization) are stored in the row.
        journal: Where tries are kept (one journal row per try).
        settings: Timing settings.
        repeats: Tries per model (>= 1).
        log: Progress printer.

    Returns:
        One row per model, in order.

    Raises:
        TargetError: The target cannot be reached or used.
        ConfigError: ``repeats`` < 1.
    """
    if repeats < 1:
        raise ConfigError(f"`repeats` must be >= 1. Received: repeats={repeats}")
    settings = settings or BenchSettings()
    keys = [result_key(target.name, sha256_file(path), settings.to_dict()) for _, path in models]
    for attempt in range(repeats):
        for (labels, path), key in zip(models, keys):
            path = Path(path)
            try_key = f"{key}|try{attempt}"
            if journal.get(try_key) is not None or _failed(journal, key, attempt):
                continue
            try:
                row = target.measure(path, settings)
                log(f"  {path.name}: {_shown(row)}"
                    + (f" (try {attempt + 1}/{repeats})" if repeats > 1 else "")
                    + (" [suspect]" if row["suspect"] else ""))
            except ModelError as err:
                row = {"status": "failed", "target": target.name, "model": str(path),
                       "settings": settings.to_dict(), "error": str(err)}
                log(f"  {path.name}: FAILED: {err}")
            journal.add({"key": try_key, "try": attempt, **labels, **row})
    return [combine_tries([journal.get(f"{key}|try{i}") for i in range(repeats)
                           if journal.get(f"{key}|try{i}") is not None]) for key in keys]


def _failed(journal: Journal, key: str, before: int) -> bool:
    return any((row := journal.get(f"{key}|try{i}")) is not None and row["status"] != "ok"
               for i in range(before))


def combine_tries(tries: list[dict]) -> dict:
    """One row from the tries of one model: the try with the median median.

    Example:
        >>> rows = [{"status": "ok", "stats": {"median_us": m}, "warnings": [], "suspect": False}
        ...         for m in (10.0, 30.0, 11.0)]
        >>> combined = combine_tries(rows)
        >>> combined["stats"]["median_us"], combined["suspect"]
        (11.0, True)
    """
    failed = [t for t in tries if t["status"] != "ok"]
    if failed:
        return failed[0]
    if len(tries) == 1:
        return tries[0]
    ordered = sorted(tries, key=row_cost)
    medians = [row_cost(t) for t in ordered]
    spread = medians[-1] / medians[0] - 1
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["repeat_medians_us"] = [row_cost(t) for t in tries]
    row["repeat_spread"] = spread
    if spread > MAX_REPEAT_SPREAD:
        row["warnings"] = [*row.get("warnings", []),
                           f"{len(tries)} tries disagree by {spread:.1%} (> 5%): the machine was busy"]
        row["suspect"] = True
    return row


def _shown(row: dict) -> str:
    """A row's cost for a progress line, in its unit."""
    arena = f", arena {row['arena_bytes']:,} bytes" if row.get("arena_bytes") else ""
    if row_unit(row) == "instructions":
        return f"{row_cost(row) / 1000:,.1f}k instructions per inference (not cycles){arena}"
    return f"median {row_cost(row):.1f} us{arena}"
