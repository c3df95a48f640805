"""Is an instruction a fair unit of cost? Counted instructions against time, on this machine.

The ARM targets (``arm64:CORE``) count instructions; a count stands for
time only as far as the two rank files alike. This machine can give both
for the same files: ``mpath-tf bench`` (``mpath_tf.pipeline.bench.bench_run``)
exports the dense MLP and the derived model at each path count in int8 with
each lowering, times every file with this machine's LiteRT (target
``local``: one thread, XNNPACK) and counts its instructions with the same
LiteRT under ``qemu-x86_64`` (target ``x86_64``: the counting plugin of the
ARM targets, 200 inferences after one). Prints per lowering and path count
the median time (the median of 3 runs of ``mpath-tf bench``'s timing), the
count and the time per instruction; then Pearson and
Spearman of time against count over every file and within each lowering,
of time against parameters (the paper's proxy) for comparison, the spread
of time per instruction by lowering (each lowering is its own mix of ops:
FULLY_CONNECTED, BATCH_MATMUL, grouped CONV_2D), the gain over dense of the
cheapest file by count and by time at each path count, and at how many path
counts the cheapest lowering by count is the fastest by time.

One difference stays: XNNPACK picks its kernels from the CPU it sees, and
QEMU 7.2 emulates AVX2 but not AVX-512, so on a CPU with AVX-512 the counted
kernels are AVX2's and the timed ones AVX-512's (printed).

Run from a clean checkout (after the README's install command), on a
quiet machine (the times are measured), on a search run:

    python benchmarks/instructions_vs_time.py runs/digits-mpath-4-64-seed0

(default path counts: the 25 of the TFLM benchmark up to the run's width.)

Exports, times and counts are journaled in the run's bench/ folder (resumable).
``per_path`` is exported up to ``--max-per-path`` paths.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lowering_sweep import LOWERINGS, path_counts, report_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--paths", default=None,
                        help="comma-separated path counts (default: the 25 up to the width)")
    parser.add_argument("--max-per-path", type=int, default=64)
    parser.add_argument("--lowerings", default=",".join(LOWERINGS))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from scipy.stats import pearsonr, spearmanr

    from edge_bench import BenchSettings, get_target
    from mpath_tf.cli import quiet_native_logs
    from mpath_tf.pipeline.bench import bench_run
    from mpath_tf.pipeline.rundir import RunDir

    quiet_native_logs()
    run = RunDir.open(args.run)
    paths = path_counts(args.paths, run.config.width)
    lowerings = args.lowerings.split(",")
    device = get_target("x86_64").describe()
    files = []  # (lowering, paths, kind, us, instructions, parameters)
    for lowering in lowerings:
        todo = [b for b in paths if lowering != "per_path" or b <= args.max_per_path]
        tables = {}
        for target in ("local", "x86_64"):
            print(f"{target} {lowering}: {len(todo)} path counts", flush=True)
            report = bench_run(run.path, target, paths=todo, quantizations=("int8",),
                               settings=BenchSettings(timeout_s=900),
                               repeats=3 if target == "local" else 1,  # a count repeats exactly
                               lowering=lowering, log=lambda *_: None)
            tables[target] = {(r["kind"], int(r["paths"])): r for r in report_rows(report)
                              if r["status"] == "ok"}
        for key, timed in tables["local"].items():
            counted = tables["x86_64"].get(key)
            if counted is not None and (key[0] == "mpath" or lowering == "per_path"):
                files.append((lowering, key[1], key[0], float(timed["median_us"]),
                              float(counted["instructions_per_inference"]),
                              int(timed["parameters"])))

    print(f"\n{run.path.name}, int8, this machine's LiteRT {device['ai_edge_litert']} timed "
          f"(one thread, XNNPACK; host ISA {device['host_isa']}) and counted under "
          f"{device['emulator'].split(' (')[0]} -cpu {device['qemu_cpu']} (QEMU 7.2: AVX2 at most, no AVX-512); "
          f"{datetime.date.today()}")
    print("| lowering | b | median us | instructions | ns per instruction |")
    print("|---|---|---|---|---|")
    for lowering, b, kind, us, count, _ in sorted(files):
        name = "dense" if kind == "dense" else lowering
        print(f"| {name} | {b} | {us:.2f} | {count:,.0f} | {1000 * us / count:.4f} |")

    us = np.array([f[3] for f in files])
    count = np.array([f[4] for f in files])
    params = np.array([f[5] for f in files])
    print(f"\nevery file ({len(files)}): time vs instructions Pearson "
          f"{pearsonr(count, us)[0]:.3f}, Spearman {spearmanr(count, us)[0]:.3f}; "
          f"time vs parameters Pearson {pearsonr(params, us)[0]:.3f}, "
          f"Spearman {spearmanr(params, us)[0]:.3f}")
    print("| lowering | files | Pearson (time, instructions) | Spearman | "
          "ns per instruction: median | min | max |")
    print("|---|---|---|---|---|---|---|")
    for lowering in lowerings:
        mine = [f for f in files if f[0] == lowering and f[2] == "mpath"]
        if len(mine) < 3:
            continue
        t, c = np.array([f[3] for f in mine]), np.array([f[4] for f in mine])
        ns = 1000 * t / c
        print(f"| {lowering} | {len(mine)} | {pearsonr(c, t)[0]:.3f} | {spearmanr(c, t)[0]:.3f} | "
              f"{np.median(ns):.4f} | {ns.min():.4f} | {ns.max():.4f} |")
    dense = next((f for f in files if f[2] == "dense"), None)
    if dense is not None:
        print("\n| b | cheapest by count | dense / it, instructions | dense / it, time | "
              "count gain / time gain |")
        print("|---|---|---|---|---|")
        over = []
        for b in paths:
            mine = [f for f in files if f[1] == b and f[2] == "mpath"]
            if mine:
                best = min(mine, key=lambda f: (f[4], f[3]))
                by_count, by_time = dense[4] / best[4], dense[3] / best[3]
                over.append(by_count / by_time)
                print(f"| {b} | {best[0]} | {by_count:.2f}x | {by_time:.2f}x | "
                      f"{by_count / by_time:.2f} |")
        print(f"\nthe count's gain over dense is {min(over):.2f}-{max(over):.2f} times the "
              f"time's (median {np.median(over):.2f})")
    agreed, compared, lost = 0, 0, []
    for b in paths:
        mine = [f for f in files if f[1] == b and f[2] == "mpath"]
        if len(mine) < 2:
            continue
        by_count = min(mine, key=lambda f: f[4])
        by_time = min(mine, key=lambda f: f[3])
        compared += 1  # lowerings that make the same ops count the same: a tie, not a miss
        if by_time[4] <= by_count[4] or by_count[3] <= by_time[3] * 1.05:
            agreed += 1
        else:
            lost.append(f"{b} paths: {by_count[0]} by count, {by_time[0]} by time "
                        f"({by_count[3] / by_time[3]:.2f}x its time)")
    print(f"\nthe lowering cheapest by count is the fastest by time (or within 5% of it) at "
          f"{agreed} of {compared} path counts" + (": not at " + "; ".join(lost) if lost else ""))


if __name__ == "__main__":
    main()
