"""What the lowering benchmarks share (``tflm.py``, ``arm64.py``,
``instructions_vs_time.py``): the path counts they sweep and the table of
a ``mpath-tf bench`` report."""

from __future__ import annotations

import csv
from pathlib import Path

# The 25 path counts of the TFLM and ARM tables of docs/results.md (mpath-4-500).
PATHS_500 = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64, 80, 100, 128, 160, 200,
             250, 320, 400, 500)
LOWERINGS = ("per_path", "batch_matmul", "conv", "bucketed")


def path_counts(given: str | None, width: int) -> list[int]:
    """``given`` (comma-separated), else ``PATHS_500`` up to ``width`` and ``width``."""
    if given:
        return [int(b) for b in given.split(",")]
    return sorted({b for b in PATHS_500 if b <= width} | {width})


def report_rows(report: dict) -> list[dict]:
    """The rows of a ``bench_run`` report's ``latency.csv`` (every status)."""
    with open(Path(report["output"]) / "latency.csv", newline="") as handle:
        return list(csv.DictReader(handle))
