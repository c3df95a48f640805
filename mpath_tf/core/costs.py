"""Cost of a derived network, exact for a path layout and differentiable in
the membrane gates (issue: latency-aware search).

A derived network's upper hidden layers are paths: maximal runs of neurons
with no closed membrane between them. A ``CostTable`` gives the cost of one
path of width w across all the path layers (``block[w - 1]``), so a layout
with path widths ``(w_1, ..., w_b)`` costs ``sum_k block[w_k - 1]``:

- ``params``: ``(depth - 1) * (w^2 + w)``, the weights and biases of a path
  (the first layer and the classifier do not depend on the paths);
- ``latency``: ``(depth - 1) * (c_op + c_path + c_weight * w^2)`` microseconds,
  with the coefficients the converters fit to a lowering profile on ``edge_bench``
  measurements of the target (``converters.profiles.fit_costs``). The
  per-path lowering is the default because its cost is additive over paths
  (one op per path and layer); batched lowerings share ops between paths of
  one width, so for them this is an upper bound.

``expected_cost`` is the expectation of that cost when membrane k is open
with probability q_k independently of the others: path [i, j) exists when
membranes i .. j-2 are open and the membranes just outside it (if any) are
closed, so ``E[cost] = sum_{i<j} (1 - q_{i-1}) q_i ... q_{j-2} (1 - q_{j-1})
block[j - i - 1]``, O(W^2) tensor work and exact (tested against enumerating
every layout).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpath_tf.errors import ConfigError
from mpath_tf.storage import atomic_write_json

COSTS = ("params", "latency")  # the kinds of cost table

FORMAT = "mpath-tf-cost-table"


@dataclass(frozen=True)
class CostTable:
    """Cost of one path of each width, for one network shape (and device).

    Args:
        kind: ``"params"`` or ``"latency"``.
        width: Network width W the table is for.
        depth: Hidden layers of the network (``depth - 1`` are path layers).
        block: ``block[w - 1]`` is the cost of one path of width w over all
            path layers, w = 1 .. W (parameters, or microseconds).
        unit: ``"parameters"`` or ``"us"``.
        target: Where latencies were measured (None for ``params``).
        quantization: Quantization the latencies are for (None for ``params``).
        lowering: Lowering the latencies are for (None for ``params``).

    Raises:
        ConfigError: From ``validate``.

    Example:
        >>> table = CostTable.params(width=4, depth=3)
        >>> table.cost([2, 2]), table.cost([4])
        (24.0, 40.0)
    """

    kind: str
    width: int
    depth: int
    block: tuple[float, ...] = field(repr=False)
    unit: str = "parameters"
    target: str | None = None
    quantization: str | None = None
    lowering: str | None = None

    def validate(self) -> "CostTable":
        """Check the table; return self.

        Raises:
            ConfigError: Unknown kind, a block list of the wrong length, or a
                negative or non-finite cost.
        """
        if self.kind not in COSTS:
            raise ConfigError(f"Unknown cost '{self.kind}'. Choose one of: {', '.join(COSTS)}.")
        if len(self.block) != self.width:
            raise ConfigError(f"A cost table for width {self.width} needs {self.width} block costs "
                              f"(widths 1..{self.width}). Received: {len(self.block)}")
        if not all(math.isfinite(c) and c >= 0 for c in self.block):
            raise ConfigError("Block costs must be finite and >= 0; the table is damaged, "
                              "make it again.")
        return self

    @classmethod
    def params(cls, width: int, depth: int) -> "CostTable":
        """Parameter count of each path: ``(depth - 1) * (w^2 + w)``."""
        block = tuple(float((depth - 1) * (w * w + w)) for w in range(1, width + 1))
        return cls("params", int(width), int(depth), block).validate()

    @classmethod
    def latency(cls, width: int, depth: int, coefficients, target: str | None = None,
                quantization: str = "int8", lowering: str = "per_path") -> "CostTable":
        """Latency of each path from a lowering's fitted per-layer costs.

        ``converters.profiles.latency_costs`` fits them from a measured
        lowering profile and calls this.

        Args:
            width: Network width W.
            depth: Hidden layers.
            coefficients: The lowering's costs per layer in microseconds,
                ``(fixed, per op group, per path, per weight)``.
            target: Where they were measured.
            quantization: ``float32``, ``dynamic`` or ``int8``.
            lowering: The lowering they describe.

        Example:
            >>> CostTable.latency(3, 2, (0.0, 1.0, 0.5, 0.01)).block
            (1.51, 1.54, 1.59)
        """
        _, per_group, per_path, per_weight = (float(c) for c in coefficients)
        block = tuple(float((depth - 1) * (per_group + per_path + per_weight * w * w))
                      for w in range(1, width + 1))
        return cls("latency", int(width), int(depth), block, "us", target,
                   quantization, lowering).validate()

    def cost(self, widths) -> float:
        """The cost of a layout with these path widths.

        Raises:
            ConfigError: If the widths do not sum to the table's width.
        """
        widths = [int(w) for w in widths]
        if sum(widths) != self.width or min(widths) < 1:
            raise ConfigError(f"Path widths must be >= 1 and sum to the table's width "
                              f"{self.width}. Received: {widths}")
        return float(sum(self.block[w - 1] for w in widths))

    @property
    def dense(self) -> float:
        """Cost of one path through the whole width (the equivalent MLP)."""
        return self.block[-1]

    def check(self, width: int, depth: int, target: str | None = None) -> None:
        """Refuse a table made for another network or device.

        Raises:
            ConfigError: Naming what differs and how to make the right table.
        """
        if (self.width, self.depth) != (int(width), int(depth)):
            raise ConfigError(
                f"The cost table is for mpath-{self.depth}-{self.width}, not mpath-{depth}-{width}; "
                f"make one for this network (`CostTable.{self.kind}(width={width}, depth={depth}, ...)`).")
        if target is not None and self.target is not None and self.target != target:
            raise ConfigError(
                f"The cost table was measured on target '{self.target}', not '{target}'; "
                f"profile '{target}' (`mpath-tf profile --target {target}`) and pass that table.")

    def to_dict(self) -> dict:
        """JSON-ready dict (``from_dict`` reads it back)."""
        return {"format": FORMAT, **asdict(self), "block": list(self.block)}

    @classmethod
    def from_dict(cls, values: dict) -> "CostTable":
        """Rebuild a table from ``to_dict`` output.

        Raises:
            ConfigError: If ``values`` is not a cost table.
        """
        values = dict(values)
        if values.pop("format", None) != FORMAT:
            raise ConfigError("Not an mpath-tf cost table (no 'format': 'mpath-tf-cost-table').")
        try:
            return cls(**{**values, "block": tuple(float(c) for c in values["block"])}).validate()
        except (TypeError, KeyError) as err:
            raise ConfigError(f"Not an mpath-tf cost table: {err}.") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON (atomically)."""
        atomic_write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CostTable":
        """Read a table written by ``save``.

        Raises:
            ConfigError: Missing or damaged file.
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"Cannot read the cost table {path}: {err}.") from None


def expected_cost(open_probability, block) -> Any:
    """Expected cost of the path layout when membranes open independently.

    Args:
        open_probability: (W - 1,) probability that each membrane is open.
        block: (W,) cost of one path of width 1 .. W (``CostTable.block``).

    Returns:
        A scalar tensor, differentiable in ``open_probability``.

    Example:
        >>> import numpy as np
        >>> block = CostTable.params(width=3, depth=2).block
        >>> float(expected_cost(np.array([1.0, 0.0], "float32"), block))  # paths [2, 1]
        8.0
    """
    from keras import ops

    q = ops.clip(ops.convert_to_tensor(open_probability, "float32"), 1e-7, 1.0)
    width = int(q.shape[0]) + 1
    closed = 1.0 - q
    one = ops.ones((1,), "float32")
    starts = ops.concatenate([one, closed])  # (W,): path starts at i (cut before it)
    ends = ops.concatenate([closed, one])  # (W,): path ends at j (cut after it)
    # log of q_0 .. q_{m-1}, m = 0 .. W - 1: product over a path = exp(L[j] - L[i]).
    log_open = ops.concatenate([ops.zeros((1,), "float32"), ops.cumsum(ops.log(q))])
    i, j = np.meshgrid(np.arange(width), np.arange(width), indexing="ij")
    inside = j >= i  # (W, W): path from neuron i to neuron j inclusive
    log_product = ops.where(inside, log_open[None, :] - log_open[:, None], -1e9)
    exists = starts[:, None] * ends[None, :] * ops.exp(log_product)  # (W, W)
    costs = np.where(inside, np.asarray(block, "float32")[np.clip(j - i, 0, width - 1)], 0.0)
    return ops.sum(exists * costs.astype("float32"))
