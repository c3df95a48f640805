"""Plots of a search, in the layout of the paper's Figs. 4-6 (top row).

Left: validation error against path count. Right: the same against the
percentage of the equivalent MLP's parameters. Measured samples are dots, the
predictor's curve is a line, the chosen model is a star.
"""

from __future__ import annotations

import io
import os

from mpath_tf.storage import atomic_write_bytes
from edge_bench.stats import row_cost as latency, row_unit


def plot_search(rows: list[dict], chosen: int | None, path: str | os.PathLike, title: str) -> None:
    """Write the search plot as a PNG, atomically.

    Args:
        rows: Result rows with ``paths``, ``percent_of_mlp``,
            ``predicted_val_accuracy`` and ``measured_val_accuracy`` (or None).
        chosen: Path count of the chosen model, or None.
        path: Destination ``.png``.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    measured = [r for r in rows if r["measured_val_accuracy"] is not None]
    for ax, key, label in (
        (axes[0], "paths", "path count"),
        (axes[1], "percent_of_mlp", "parameters (% of equivalent MLP)"),
    ):
        ax.plot(
            [r[key] for r in rows],
            [100 * (1 - r["predicted_val_accuracy"]) for r in rows],
            "-",
            color="tab:blue",
            lw=1.2,
            label="predicted",
        )
        band = [r for r in rows if r.get("predicted_std") is not None]
        if band:
            ax.fill_between(
                [r[key] for r in band],
                [100 * (1 - r["predicted_val_accuracy"] - r["predicted_std"]) for r in band],
                [100 * (1 - r["predicted_val_accuracy"] + r["predicted_std"]) for r in band],
                color="tab:blue", alpha=0.15, lw=0,
                label="predicted +- leave-one-out RMS error",
            )
        ax.plot(
            [r[key] for r in measured],
            [100 * (1 - r["measured_val_accuracy"]) for r in measured],
            "o",
            color="tab:orange",
            label="fine-tuned samples",
        )
        if chosen is not None:
            row = next(r for r in rows if r["paths"] == chosen)
            ax.plot(
                row[key],
                100 * (1 - row["predicted_val_accuracy"]),
                "*",
                ms=14,
                color="tab:red",
                label=f"chosen ({chosen} paths)",
            )
        ax.set_xlabel(label)
        ax.set_ylabel("validation error (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_latency(rows: list[dict], path: str | os.PathLike, title: str) -> None:
    """Median latency against parameters (left) and path count (right), one
    line per quantization; the dense MLP is a dashed line of the same colour.

    Args:
        rows: Result rows from ``edge_bench`` with ``kind``, ``paths``,
            ``parameters``, ``quantization``, ``status`` and ``stats``.
        path: Destination ``.png``.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ok = [r for r in rows if r["status"] == "ok"]
    for color, quantization in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"),
                                    sorted({r["quantization"] for r in ok})):
        derived = sorted((r for r in ok if r["kind"] == "mpath" and r["quantization"] == quantization),
                         key=lambda r: r["paths"])
        dense = [r for r in ok if r["kind"] == "dense" and r["quantization"] == quantization]
        for ax, key in ((axes[0], "parameters"), (axes[1], "paths")):
            ax.plot([r[key] for r in derived], [latency(r) for r in derived], "o-", ms=3.5,
                    color=color, label=f"mpath {quantization}")
            if dense:
                ax.axhline(latency(dense[0]), ls="--", lw=1, color=color,
                           label=f"dense MLP {quantization}")
    for ax, label in ((axes[0], "parameters"), (axes[1], "path count")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("instructions per inference (not cycles)"
                      if ok and row_unit(ok[0]) == "instructions" else "median latency (us)")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
