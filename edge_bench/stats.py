"""Latency statistics from per-run times, as reported by every target."""

from __future__ import annotations


import numpy as np


def median_ci(times_us, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics).

    With n runs, the number of runs faster than the true median is
    Binomial(n, 1/2). The interval runs from the r-th smallest to the r-th
    largest time, with r the largest rank whose binomial tail is at most
    (1 - confidence) / 2, so it covers the median at least ``confidence`` of
    the time whatever the shape of the (skewed) latency distribution. With too
    few runs for that, it is the whole range.

    Args:
        times_us: Per-run times.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        (low, high) in the unit of ``times_us``.

    Raises:
        ValueError: If ``confidence`` is outside (0, 1) or there are no times.

    Example:
        >>> median_ci(range(100))
        (39, 60)
    """
    from scipy.stats import binom

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1). Received: confidence={confidence}")
    values = sorted(times_us)
    n = len(values)
    if n == 0:
        raise ValueError("median_ci needs at least one time; received none.")
    tail = binom.cdf(np.arange(n + 1), n, 0.5)
    r = int(np.count_nonzero(tail <= (1 - confidence) / 2))  # ranks 1..r are excluded below
    if r == 0:
        return values[0], values[-1]
    return values[r - 1], values[n - r]


def row_latency_us(row: dict) -> float:
    """The latency a result row stands for: its median, or the mean where the
    tool reports no median (older ``benchmark_model`` builds).

    Example:
        >>> row_latency_us({"stats": {"median_us": None, "mean_us": 7.5}})
        7.5
    """
    stats = row["stats"]
    return stats["median_us"] if stats.get("median_us") is not None else stats["mean_us"]


def row_cost(row: dict) -> float:
    """The cost a result row stands for, in ``row_unit(row)``: instructions
    per inference on a counting target (``tflm:cortex-m4``), else its latency
    in microseconds (``row_latency_us``).

    Example:
        >>> row_cost({"unit": "instructions", "instructions_per_inference": 5e4})
        50000.0
    """
    if row.get("unit") == "instructions":
        return float(row["instructions_per_inference"])
    return row_latency_us(row)


def row_unit(row: dict) -> str:
    """``"instructions"`` or ``"us"``: the unit of ``row_cost(row)``.

    Example:
        >>> row_unit({"stats": {"median_us": 3.0}})
        'us'
    """
    return "instructions" if row.get("unit") == "instructions" else "us"


def summarize(times_us) -> dict:
    """Median, p90, min, mean, std and the 95% interval of the median.

    Args:
        times_us: Per-run times in microseconds (at least one).

    Returns:
        A dict with ``runs``, ``median_us``, ``p90_us``, ``min_us``, ``max_us``,
        ``mean_us``, ``std_us``, ``median_ci_low_us``, ``median_ci_high_us``.

    Raises:
        ValueError: If there are no times.

    Example:
        >>> summarize([10.0, 12.0, 11.0])["median_us"]
        11.0
    """
    values = np.asarray(list(times_us), dtype="float64")
    if values.size == 0:
        raise ValueError("summarize needs at least one timed run; received none.")
    low, high = median_ci(values.tolist())
    return {
        "runs": int(values.size),
        "median_us": float(np.median(values)),
        "p90_us": float(np.percentile(values, 90)),
        "min_us": float(values.min()),
        "max_us": float(values.max()),
        "mean_us": float(values.mean()),
        "std_us": float(values.std()),
        "median_ci_low_us": float(low),
        "median_ci_high_us": float(high),
    }
