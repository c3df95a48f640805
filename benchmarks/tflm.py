"""Multipath models on microcontroller runtimes: every lowering against dense.

For a search run, ``mpath-tf bench`` (``mpath_tf.pipeline.bench.bench_run``)
exports the dense MLP and the derived model at each path count in int8 with
each lowering (per_path, batch_matmul, conv, bucketed) and with ``auto`` (the
target's own lowering profile, never a lowering TFLM refuses), and measures
them on a TFLM target: ``tflm`` (TFLM's reference kernels on this machine,
microseconds) or ``tflm:cortex-m4`` (TFLM with CMSIS-NN on an emulated
Cortex-M4, instructions per inference: not cycles). Prints per path count the
cost of each lowering (``refused`` where TFLM would not prepare the file),
auto's pick and its cost over the best lowering's, the best lowering's gain
over dense and the multiply-add ratio; then the proxy verdicts of ``auto``
(Pearson and Spearman of parameters and of multiply-adds against the cost and
against the arena) and the arena and flash of dense and of the cheapest model.

Run from a clean checkout (after the README's install command; the Cortex-M
target needs ``mpath-tf setup mcu``), on a short search run (the weights do
not change the cost):

    mpath-tf search --dataset mnist --data-dir ../shared/datasets --width 500 --epochs 1 \\
        --finetune-epochs 1 --samples 2 --final-epochs 1 --no-reference --no-bench \\
        --run-dir runs/mnist-4-500-bench
    python benchmarks/tflm.py runs/mnist-4-500-bench --target tflm:cortex-m4

Exports and measurements are journaled in the run's bench/ folder (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lowering_sweep import LOWERINGS, path_counts, report_rows  # noqa: E402


def _cost(row: dict) -> float | None:
    if row["status"] != "ok":
        return None
    return float(row["instructions_per_inference"] or row["median_us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--target", default="tflm:cortex-m4")
    parser.add_argument("--paths", default=None,
                        help="path counts (default: the 25 of mpath-4-500 up to the width)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="tries per model (default: 1 on a counting target, else 3)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from edge_bench import BenchSettings
    from mpath_tf.cli import quiet_native_logs
    from mpath_tf.pipeline.bench import bench_run
    from mpath_tf.pipeline.rundir import RunDir

    quiet_native_logs()
    run = RunDir.open(args.run)
    paths = path_counts(args.paths, run.config.width)
    counting = args.target.startswith("tflm:")
    repeats = args.repeats or (1 if counting else 3)
    settings = BenchSettings(warmup_runs=2, warmup_min_secs=0.1, runs=50, min_secs=0.5)
    reports = {}
    for lowering in (*LOWERINGS, "auto"):
        print(f"{lowering}:", flush=True)
        reports[lowering] = bench_run(run.path, args.target, paths=paths, quantizations=("int8",),
                                      settings=settings, repeats=repeats, lowering=lowering,
                                      log=lambda *_: None)
    tables = {lowering: report_rows(report) for lowering, report in reports.items()}
    dense = next(r for r in tables["per_path"] if r["kind"] == "dense")
    dense_cost, dense_macs = _cost(dense), int(dense["macs"])
    unit = "instructions" if counting else "us"
    fmt = "{:,.0f}" if counting else "{:,.2f}"  # instructions, or microseconds
    print(f"\n{run.path.name} on {args.target}, int8, {unit} per inference"
          + (" (instructions, not cycles)" if counting else "") + f"; {datetime.date.today()}")
    print(f"dense: {fmt.format(dense_cost)} {unit}, arena {int(dense['arena_bytes']):,} bytes, "
          f"flash {int(dense['flash_bytes_no_metadata']):,} bytes")
    print("| b | " + " | ".join(LOWERINGS) + " | auto (pick) | auto / best | dense / best | "
          "dense / auto | MAC ratio | arena (auto) |")
    print("|---" * (len(LOWERINGS) + 7) + "|")
    within, ratios = 0, {}
    for b in paths:
        costs = {}
        for lowering in LOWERINGS:
            row = next((r for r in tables[lowering] if r["kind"] == "mpath" and int(r["paths"]) == b),
                       None)
            costs[lowering] = _cost(row) if row else None
        auto = next(r for r in tables["auto"] if r["kind"] == "mpath" and int(r["paths"]) == b)
        auto_cost = _cost(auto)
        best = min(c for c in costs.values() if c is not None)
        within += auto_cost is not None and auto_cost <= 1.10 * best
        ratios[b] = (dense_cost / best, dense_cost / auto_cost if auto_cost else None)
        cells = [fmt.format(c) if c is not None else "refused" for c in costs.values()]
        print(f"| {b} | " + " | ".join(cells)
              + f" | {fmt.format(auto_cost)} ({auto['chosen_lowering']}) | {auto_cost / best:.3f} | "
              f"{dense_cost / best:.2f}x | {dense_cost / auto_cost:.2f}x | "
              f"{dense_macs / int(auto['macs']):.2f} | {int(auto['arena_bytes']):,} |")
    print(f"\nauto within 10% of the best lowering at {within} of {len(paths)} path counts")
    for lowering, report in reports.items():
        entry = report["proxy"].get("int8")
        if entry:
            print(f"{lowering}: params vs cost Pearson {entry['pearson']:.3f} Spearman "
                  f"{entry['spearman']:.3f}; MACs vs cost Pearson {entry.get('macs_pearson', 0):.3f}"
                  f" Spearman {entry.get('macs_spearman', 0):.3f}; params vs arena Pearson "
                  f"{entry.get('arena_pearson') or 0:.3f} Spearman "
                  f"{entry.get('arena_spearman') or 0:.3f}; largest arena "
                  f"{entry.get('largest_arena_bytes', 0):,} bytes; latency model within 10%: "
                  + (f"{report['latency_model']['int8']['hit_rate_10pct']:.0%} of "
                     f"{report['latency_model']['int8']['held_out']}"
                     if report["latency_model"].get("int8", {}).get("held_out") else "n/a"))


if __name__ == "__main__":
    main()
