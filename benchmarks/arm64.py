"""Multipath models on emulated ARM Cortex-A cores: every lowering against dense.

For a search run, ``mpath-tf bench`` (``mpath_tf.pipeline.bench.bench_run``)
exports the dense MLP and the derived model at each path count in int8 with
each lowering (per_path, batch_matmul, conv, bucketed, and ``auto``: the
core's bundled lowering profile's pick, ``converters/profiles/arm64-CORE.json``)
and counts the instructions per inference of each file on each ``arm64:CORE``
target (LiteRT's aarch64 wheel under qemu-aarch64 with that core's cpuinfo;
``edge_bench.arm64``; instructions, not cycles). Prints per core and path
count the count of each lowering, auto's pick and its count over the best,
dense's count over the best and the multiply-add ratio; then per core the
Pearson and Spearman correlations of parameters and of multiply-adds with
the cheapest count, per lowering ``mpath-tf bench``'s verdict (the same
correlations, and the latency model's hit rate: edge_bench's c0 + c1 *
parameters + c2 * FC ops fitted on 5 path counts, within 10% of the
count on how many of the others), and the share of int8 outputs identical
to x86 LiteRT's.

Run from a clean checkout (after the README's install command and
``mpath-tf setup arm64``), on a search run (the weights do not change the
count); the default path counts are the 25 of the TFLM benchmark up to the
run's width:

    python benchmarks/arm64.py runs/digits-mpath-4-64-seed0

Exports and counts are journaled in the run's bench/ folder (resumable).
``per_path`` is exported up to ``--max-per-path`` paths (its exports of
hundreds of paths take minutes, and it is never the cheapest there).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lowering_sweep import LOWERINGS, path_counts, report_rows  # noqa: E402
CORES = ("cortex-a53", "cortex-a55", "cortex-a72", "cortex-a76")


def _verdict(lowering: str, report: dict) -> str:
    entry = report["proxy"].get("int8")
    if not entry:
        return f"{lowering}: no verdict"
    model = report["latency_model"].get("int8", {})
    return (f"{lowering}: params vs count Pearson {entry['pearson']:.3f} Spearman "
            f"{entry['spearman']:.3f}; MACs vs count Pearson {entry['macs_pearson']:.3f} "
            f"Spearman {entry['macs_spearman']:.3f}; latency model within 10%: "
            + (f"{model['hit_rate_10pct']:.0%} of {model['held_out']} (fitted on "
               f"{','.join(map(str, model['fit_paths']))})" if model.get("held_out") else "n/a"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--paths", default=None,
                        help="comma-separated path counts (default: the 25 up to the width)")
    parser.add_argument("--cores", default=",".join(CORES))
    parser.add_argument("--max-per-path", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from scipy.stats import pearsonr, spearmanr

    from edge_bench import BenchSettings
    from mpath_tf.cli import quiet_native_logs
    from mpath_tf.pipeline.bench import bench_run
    from mpath_tf.pipeline.rundir import RunDir

    quiet_native_logs()
    run = RunDir.open(args.run)
    paths = path_counts(args.paths, run.config.width)
    settings = BenchSettings(timeout_s=900)
    for core in args.cores.split(","):
        target = f"arm64:{core}"
        tables, reports = {}, {}
        for lowering in (*LOWERINGS, "auto"):
            todo = [b for b in paths if lowering != "per_path" or b <= args.max_per_path]
            print(f"{target} {lowering}: {len(todo)} path counts", flush=True)
            reports[lowering] = bench_run(run.path, target, paths=todo, quantizations=("int8",),
                                          settings=settings, repeats=1, lowering=lowering,
                                          log=lambda *_: None)
            tables[lowering] = [r for r in report_rows(reports[lowering]) if r["status"] == "ok"]
        dense = next(r for r in tables["per_path"] if r["kind"] == "dense")
        dense_cost, dense_macs = float(dense["instructions_per_inference"]), int(dense["macs"])
        print(f"\n{run.path.name} on {target}, int8, instructions per inference (not cycles); "
              f"{datetime.date.today()}; dense {dense_cost:,.0f}")
        print("| b | " + " | ".join(LOWERINGS) + " | cheapest | auto (pick) | auto / cheapest | "
              "dense / cheapest | dense / auto | MAC ratio |")
        print("|---" * (len(LOWERINGS) + 7) + "|")
        best_costs, params, macs, within = [], [], [], 0
        for b in paths:
            costs = {}
            for lowering in LOWERINGS:
                row = next((r for r in tables[lowering]
                            if r["kind"] == "mpath" and int(r["paths"]) == b), None)
                costs[lowering] = float(row["instructions_per_inference"]) if row else None
                if row:
                    params_b, macs_b = int(row["parameters"]), int(row["macs"])
            auto = next(r for r in tables["auto"] if r["kind"] == "mpath" and int(r["paths"]) == b)
            auto_cost = float(auto["instructions_per_inference"])
            cheapest = min((c, l) for l, c in costs.items() if c is not None)
            within += auto_cost <= 1.10 * cheapest[0]
            best_costs.append(cheapest[0])
            params.append(params_b)
            macs.append(macs_b)
            cells = [f"{c:,.0f}" if c is not None else "-" for c in costs.values()]
            print(f"| {b} | " + " | ".join(cells) + f" | {cheapest[1]} | {auto_cost:,.0f} "
                  f"({auto['chosen_lowering']}) | {auto_cost / cheapest[0]:.3f} | "
                  f"{dense_cost / cheapest[0]:.2f}x | {dense_cost / auto_cost:.2f}x | "
                  f"{dense_macs / macs_b:.2f} |")
        best = np.array(best_costs)
        print(f"\nauto within 10% of the cheapest lowering at {within} of {len(paths)} path counts")
        print(f"params vs cheapest count: Pearson {pearsonr(params, best)[0]:.3f}, Spearman "
              f"{spearmanr(params, best)[0]:.3f}; MACs: Pearson {pearsonr(macs, best)[0]:.3f}, "
              f"Spearman {spearmanr(macs, best)[0]:.3f}")
        for lowering, report in reports.items():
            print(_verdict(lowering, report))
        identical = [row["parity"]["identical_share"] for report in reports.values()
                     for row in map(json.loads, (Path(report["output"]) / "latency.jsonl")
                                    .read_text().splitlines())
                     if row.get("status") == "ok" and row.get("parity")]
        if identical:
            print(f"int8 outputs identical to x86 LiteRT's: {min(identical):.0%} of every file "
                  f"at least ({len(identical)} files)")
        print(flush=True)


if __name__ == "__main__":
    main()
