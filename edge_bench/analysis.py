"""What the measurements say: the parameter-count proxy's verdict, and a
per-device latency model fitted on a few measured path counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_bench.stats import row_cost, row_unit
from mpath_tf.errors import ConfigError


def proxy_verdict(rows: list[dict]) -> dict:
    """How well parameter count predicts measured latency, per quantization.

    Args:
        rows: Successful result rows of derived models with ``quantization``,
            ``paths`` and ``parameters`` labels (dense rows, ``kind: dense``,
            are used only as the reference).

    Returns:
        Per quantization: the cost's ``unit`` (``us``, or ``instructions``
        on a counting target), ``pearson`` and ``spearman`` correlation of
        parameters vs median latency over the derived models (``macs_*``:
        of multiply-adds, where the rows have them; ``arena_*``: of
        parameters vs TFLM's arena, on TFLM targets), the fastest
        path count, the path count beyond which latency stops falling (the
        first measured count after which no larger count is faster by more
        than the fastest's confidence interval), latency at the most paths
        relative to the fastest, and speed-ups against the dense model.
    """
    from scipy.stats import pearsonr, spearmanr

    verdict = {}
    for quantization in sorted({r["quantization"] for r in rows}):
        derived = sorted((r for r in rows if r["quantization"] == quantization
                          and r.get("kind") == "mpath" and r["status"] == "ok"),
                         key=lambda r: r["paths"])
        dense = [r for r in rows if r["quantization"] == quantization
                 and r.get("kind") == "dense" and r["status"] == "ok"]
        if len(derived) < 3:
            continue
        params = np.array([r["parameters"] for r in derived], dtype=float)
        latency = np.array([row_cost(r) for r in derived])
        best = int(np.argmin(latency))
        entry = {
            "models": len(derived),
            "unit": row_unit(derived[0]),
            "pearson": _correlation(pearsonr, params, latency),
            "spearman": _correlation(spearmanr, params, latency),
            "fastest_paths": derived[best]["paths"],
            "fastest_us": float(latency[best]),
            "stops_falling_after_paths": _stops_falling(derived, latency),
            "most_paths": derived[-1]["paths"],
            "most_paths_vs_fastest": float(latency[-1] / latency[best]),
        }
        if all(r.get("macs") is not None for r in derived):
            macs = np.array([r["macs"] for r in derived], dtype=float)
            entry["macs_pearson"] = _correlation(pearsonr, macs, latency)
            entry["macs_spearman"] = _correlation(spearmanr, macs, latency)
        if all(r.get("arena_bytes") is not None for r in derived):  # TFLM targets
            arena = np.array([r["arena_bytes"] for r in derived], dtype=float)
            entry["arena_pearson"] = _correlation(pearsonr, params, arena)
            entry["arena_spearman"] = _correlation(spearmanr, params, arena)
            entry["largest_arena_bytes"] = int(arena.max())
            if dense and dense[0].get("arena_bytes"):
                entry["dense_arena_bytes"] = int(dense[0]["arena_bytes"])
        if dense:
            dense_us = row_cost(dense[0])
            entry["dense_us"] = dense_us
            entry["fastest_speedup_vs_dense"] = float(dense_us / latency[best])
            entry["most_paths_speedup_vs_dense"] = float(dense_us / latency[-1])
        verdict[quantization] = entry
    return verdict


def _correlation(method, x: np.ndarray, y: np.ndarray) -> float | None:
    """The correlation, or None where it is undefined (a constant series)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(method(x, y)[0])


def _stops_falling(rows: list[dict], latency: np.ndarray) -> int:
    """The path count after which more paths no longer run faster."""
    for i, row in enumerate(rows):
        ci_low = row["stats"].get("median_ci_low_us")
        floor = ci_low if ci_low is not None else 0.98 * latency[i]
        if not np.any(latency[i + 1:] < floor):
            return row["paths"]
    return rows[-1]["paths"]


def row_features(row: dict) -> dict:
    """Features of one model that the latency model may use.

    ``parameters`` and ``fc_ops`` (FULLY_CONNECTED ops: one per dense layer
    and one per path of each block-diagonal layer) follow from the
    architecture, so they are known for path counts that were never exported
    or measured; ``ops``, ``undelegated_ops`` and ``partitions`` come from
    the runtime and exist only for measured models.
    """
    delegate = row.get("delegate") or {}
    ops = delegate.get("ops") or {}
    return {
        "parameters": float(row["parameters"]),
        "fc_ops": float(row["fc_ops"] if row.get("fc_ops") is not None
                        else ops.get("FULLY_CONNECTED", 0)),
        "ops": float(sum(ops.values())),
        "undelegated_ops": float(sum((delegate.get("undelegated_ops") or {}).values())),
        "partitions": float(delegate.get("partitions") or 0),
    }


def choose_fit_paths(paths: list[int], count: int = 5) -> list[int]:
    """Up to ``count`` path counts spread evenly on a log scale, ends included.

    Example:
        >>> choose_fit_paths([1, 2, 4, 8, 16, 32, 64, 128, 256], 5)
        [1, 4, 16, 64, 256]
    """
    paths = sorted(set(paths))
    if len(paths) <= count:
        return paths
    targets = np.exp(np.linspace(np.log(paths[0]), np.log(paths[-1]), count))
    chosen: list[int] = []
    for t in targets:
        remaining = [b for b in paths if b not in chosen]
        chosen.append(min(remaining, key=lambda b: abs(math.log(b) - math.log(t))))
    return sorted(chosen)


@dataclass
class LatencyModel:
    """Latency = c0 + c1 * parameters + c2 * fc_ops, non-negative
    coefficients, fitted to a few measured models of one quantization on one
    device by minimizing the relative error.

    Why these terms: a FULLY_CONNECTED op costs a fixed overhead plus a cost
    per weight read, so a layer split into b paths of width W/b costs about
    b * overhead + (W^2 / b) * per-weight cost. Both features follow from the
    architecture, so the model predicts path counts never exported.

    Attributes:
        quantization: The quantization it models.
        features: Names from ``row_features``.
        coef_: Fitted coefficients (intercept first), after ``fit``.
        fit_paths_: Path counts it was fitted on, after ``fit``.
    """

    quantization: str
    features: tuple[str, ...] = ("parameters", "fc_ops")
    coef_: list[float] | None = None
    fit_paths_: list[int] = field(default_factory=list)

    def _design(self, rows: list[dict]) -> np.ndarray:
        return np.array([[1.0] + [row_features(r)[f] for f in self.features] for r in rows])

    def fit(self, rows: list[dict]) -> "LatencyModel":
        """Fit on successful rows of this quantization.

        Raises:
            ConfigError: Fewer rows than coefficients.
        """
        from scipy.optimize import nnls

        rows = [r for r in rows if r["status"] == "ok" and r["quantization"] == self.quantization]
        if len(rows) < len(self.features) + 1:
            raise ConfigError(
                f"A latency model over {', '.join(self.features)} needs at least "
                f"{len(self.features) + 1} measured models; received {len(rows)}."
            )
        x = self._design(rows)
        y = np.array([row_cost(r) for r in rows])
        scale = np.abs(x).max(axis=0)  # columns of very different size: solve in unit scale
        scale[scale == 0] = 1.0  # a feature the target does not report (0 everywhere)
        coef, _ = nnls((x / scale) / y[:, None], np.ones_like(y))
        self.coef_ = (coef / scale).tolist()
        self.fit_paths_ = sorted(r["paths"] for r in rows)
        return self

    def predict(self, rows: list[dict]) -> np.ndarray:
        """Predicted latency in microseconds for rows (or feature dicts)."""
        if self.coef_ is None:
            raise ConfigError("This LatencyModel is not fitted yet; call fit first.")
        return self._design(rows) @ np.array(self.coef_)

    def evaluate(self, rows: list[dict], tolerance: float = 0.1) -> dict:
        """Hit rate within +-``tolerance`` on the held-out measured path counts."""
        held_out = [r for r in rows if r["status"] == "ok" and r["quantization"] == self.quantization
                    and r.get("kind") == "mpath" and r["paths"] not in self.fit_paths_]
        if not held_out:
            return {"fit_paths": self.fit_paths_, "held_out": 0}
        truth = np.array([row_cost(r) for r in held_out])
        error = self.predict(held_out) / truth - 1
        return {
            "fit_paths": self.fit_paths_,
            "held_out": len(held_out),
            "hit_rate_10pct": float(np.mean(np.abs(error) <= tolerance)),
            "mean_abs_rel_error": float(np.mean(np.abs(error))),
            "max_abs_rel_error": float(np.max(np.abs(error))),
        }

    def to_dict(self) -> dict:
        return {"quantization": self.quantization, "features": list(self.features),
                "coef_": self.coef_, "fit_paths_": self.fit_paths_}

    @classmethod
    def from_dict(cls, config: dict) -> "LatencyModel":
        return cls(config["quantization"], tuple(config["features"]), config["coef_"],
                   config["fit_paths_"])

    @classmethod
    def fit_rows(cls, rows: list[dict], fit_paths: list[int] | None = None,
                 count: int = 5) -> dict[str, "LatencyModel"]:
        """One model per quantization, fitted on ``fit_paths`` (default: up to
        ``count`` path counts spread over those measured)."""
        models = {}
        for quantization in sorted({r["quantization"] for r in rows}):
            derived = [r for r in rows if r["quantization"] == quantization
                       and r.get("kind") == "mpath" and r["status"] == "ok"]
            chosen = fit_paths or choose_fit_paths([r["paths"] for r in derived], count)
            subset = [r for r in derived if r["paths"] in chosen]
            model = cls(quantization)
            if len(subset) >= len(model.features) + 1:
                models[quantization] = model.fit(subset)
        return models
