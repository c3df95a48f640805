"""Choosing a model by budget: the most accurate path count that meets every
limit the user sets, or a plain answer that none does and which is nearest.

The search predicts the validation accuracy of every path count; parameters
are exact; the int8 file size and the latency on a target are measured for
the candidates that need them (``mpath_tf.pipeline.steps`` supplies the callables).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

from edge_bench.targets import counts_instructions
from mpath_tf.errors import ConfigError


class BudgetError(ConfigError):
    """No model meets the budget (CLI exit 2); the message names the nearest one."""


@dataclass(frozen=True)
class Budget:
    """The limits a chosen model must meet (None: no limit).

    Args:
        min_accuracy: Lowest predicted validation accuracy, in [0, 1].
        max_params: Most parameters.
        max_size_kb: Largest int8 ``.tflite`` file, in KB (1000 bytes).
        max_latency_ms: Slowest median latency of the int8 file on ``target``.
        target: ``edge_bench`` target of the latency limit (and of the RAM
            and flash limits when it is a TFLM one).
        max_ram_kb: Largest TFLM arena of the int8 file, in KB.
        max_flash_kb: Largest int8 file for TFLM without metadata, in KB.

    Example:
        >>> Budget(max_params=5000).active
        True
    """

    min_accuracy: float | None = None
    max_params: int | None = None
    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    target: str = "local"
    max_ram_kb: float | None = None
    max_flash_kb: float | None = None

    @property
    def active(self) -> bool:
        """True when any limit is set."""
        return any(v is not None for v in (self.min_accuracy, self.max_params, self.max_size_kb,
                                           self.max_latency_ms, self.max_ram_kb,
                                           self.max_flash_kb))

    def validate(self) -> "Budget":
        """Check each limit; return self.

        Raises:
            ConfigError: A limit out of range.
        """
        if self.min_accuracy is not None and not 0 < self.min_accuracy <= 1:
            raise ConfigError("`min_accuracy` is a fraction in (0, 1] (0.97 = 97%). "
                              f"Received: min_accuracy={self.min_accuracy}")
        for name in ("max_params", "max_size_kb", "max_latency_ms", "max_ram_kb", "max_flash_kb"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"`{name}` must be a finite number > 0. Received: {name}={value}")
        if self.max_latency_ms is not None and counts_instructions(self.target):
            raise ConfigError(f"`max_latency_ms` needs a target that measures time; {self.target} "
                              "counts instructions (an emulated core). Use a target that "
                              "times (local, ssh://..., adb, tflm), or `objective='latency'`, "
                              "which chooses the fewest instructions within the accuracy limit.")
        return self

    def describe(self) -> str:
        """The limits in words, for messages (in the API's argument names,
        which the CLI's error messages turn into its options)."""
        parts = []
        if self.min_accuracy is not None:
            parts.append(f"min_accuracy={self.min_accuracy}")
        if self.max_params is not None:
            parts.append(f"max_params={self.max_params}")
        if self.max_size_kb is not None:
            parts.append(f"max_size_kb={self.max_size_kb:g}")
        if self.max_latency_ms is not None:
            parts.append(f"max_latency_ms={self.max_latency_ms:g} on {self.target}")
        where = self.target if self.target.startswith("tflm") else "tflm"
        if self.max_ram_kb is not None:
            parts.append(f"max_ram_kb={self.max_ram_kb:g} on {where}")
        if self.max_flash_kb is not None:
            parts.append(f"max_flash_kb={self.max_flash_kb:g}")
        return " and ".join(parts)


def pareto_paths(rows: list[dict], cost: dict[int, float]) -> list[int]:
    """Path counts on the front of predicted accuracy (higher) against ``cost`` (lower).

    Example:
        >>> rows = [{"paths": b, "predicted_val_accuracy": a} for b, a in
        ...         [(1, 0.99), (2, 0.98), (3, 0.985), (4, 0.90)]]
        >>> pareto_paths(rows, {1: 10, 2: 8, 3: 9, 4: 5})
        [4, 2, 3, 1]
    """
    front, best = [], float("-inf")
    for row in sorted((r for r in rows if r["paths"] in cost),
                      key=lambda r: (cost[r["paths"]], -r["predicted_val_accuracy"])):
        if row["predicted_val_accuracy"] > best:
            front.append(row["paths"])
            best = row["predicted_val_accuracy"]
    return front


def choose_by_budget(
    rows: list[dict],
    budget: Budget,
    size_kb: Callable[[int], float] | None = None,
    latency_ms: Callable[[int], float] | None = None,
    tflm_row: Callable[[int], dict] | None = None,
) -> dict:
    """The most accurate path count meeting every limit of ``budget``.

    Candidates are tried by predicted accuracy (then fewer parameters); the
    size and latency callables are asked only for candidates that pass the
    cheaper limits, so only a few files are converted or measured.

    Args:
        rows: Search result rows (``paths``, ``parameters``,
            ``predicted_val_accuracy``).
        budget: The limits.
        size_kb: Int8 file size of a path count, in KB (needed with ``max_size_kb``).
        latency_ms: Median latency of a path count on the target, in ms
            (needed with ``max_latency_ms``).
        tflm_row: The TFLM measurement of a path count's int8 file for TFLM
            (``arena_bytes``, ``flash_bytes_no_metadata``; needed with
            ``max_ram_kb`` or ``max_flash_kb``).

    Returns:
        ``{"paths": b, "checked": {b: {...numbers...}}}``.

    Raises:
        BudgetError: No path count meets the budget; names the nearest one.

    Example:
        >>> rows = [{"paths": b, "parameters": 100 // b, "predicted_val_accuracy": 1 - b / 100}
        ...         for b in range(1, 11)]
        >>> choose_by_budget(rows, Budget(max_params=30))["paths"]
        4
    """
    checked: dict[int, dict] = {}
    excess: dict[int, float] = {}
    order = sorted(rows, key=lambda r: (-r["predicted_val_accuracy"], r["parameters"]))
    for row in order:
        b = row["paths"]
        numbers = {"parameters": row["parameters"],
                   "predicted_val_accuracy": row["predicted_val_accuracy"]}
        over = 0.0
        if budget.min_accuracy is not None:
            over += max(0.0, budget.min_accuracy - row["predicted_val_accuracy"]) / budget.min_accuracy
        if budget.max_params is not None:
            over += max(0.0, row["parameters"] / budget.max_params - 1)
        # Size and latency only for candidates that pass the exact limits.
        if over == 0 and budget.max_size_kb is not None:
            if row["parameters"] / 1000 > budget.max_size_kb:  # >= 1 byte per int8 weight
                over += row["parameters"] / 1000 / budget.max_size_kb - 1
            else:
                numbers["size_kb"] = size_kb(b)
                over += max(0.0, numbers["size_kb"] / budget.max_size_kb - 1)
        if over == 0 and budget.max_latency_ms is not None:
            numbers["latency_ms"] = latency_ms(b)
            over += max(0.0, numbers["latency_ms"] / budget.max_latency_ms - 1)
        if over == 0 and (budget.max_ram_kb is not None or budget.max_flash_kb is not None):
            measured = tflm_row(b)
            numbers["ram_kb"] = measured["arena_bytes"] / 1000
            numbers["flash_kb"] = measured["flash_bytes_no_metadata"] / 1000
            for limit, key in ((budget.max_ram_kb, "ram_kb"), (budget.max_flash_kb, "flash_kb")):
                if limit is not None:
                    over += max(0.0, numbers[key] / limit - 1)
        checked[b] = numbers
        excess[b] = over
        if over == 0:
            return {"paths": b, "checked": checked}
    nearest = min(excess, key=lambda b: (excess[b], -checked[b]["predicted_val_accuracy"]))
    n = checked[nearest]
    details = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in n.items())
    raise BudgetError(
        f"No model meets {budget.describe()}. The nearest is {nearest} paths ({details}); "
        "loosen a limit, or train a wider or longer supernet."
    )
