"""Latency of mpath-4-500 per lowering of its block-diagonal layers.

For b in {1, 2, 4, 8, 16, 32, 64, 125, 250, 500} and float32, dynamic-range
and int8, each derived model is exported with every lowering (per_path,
batch_matmul, conv, bucketed) and with ``auto`` (the choice of the lowering
table, ``converters/profiles/local-x86_64.json`` unless --profile is
given), and timed with edge_bench's local target beside the dense mlp-4-500.
Prints, per model, the median latency of each lowering, auto's choice, auto
over the fastest lowering, auto's speed-up over the dense MLP and the derived
model's own multiply-add ratio (dense kernel weights over the derived
model's, padding not counted: the speed-up a lowering with no per-op cost
would reach), and the speed-up as a share of that ratio.

Run from a clean checkout (after the README's install command):

    python benchmarks/lowering.py --cpus 1

Weights come from an untrained supernet (latency does not depend on them).
Exports and measurements are journaled under runs/lowering/ (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

PATHS = (1, 2, 4, 8, 16, 32, 64, 125, 250, 500)
MODES = ("float32", "dynamic", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", "--calibration", dest="profile", default=None)
    parser.add_argument("--paths", default=",".join(map(str, PATHS)))
    parser.add_argument("--workdir", default="runs/lowering")
    parser.add_argument("--export-only", action="store_true", help="export, do not time")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from converters import LOWERINGS, choose_lowerings, export_tflite, get_quantization
    from edge_bench import BenchSettings, Journal, LocalTarget, measure_models
    from mpath_tf import build_mlp, build_supernet, derive

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c))
    net = build_supernet((784,), 10, 4, 500, seed=0)
    representative = np.random.default_rng(0).random((200, 784), dtype="float32")
    jobs, choices, models = [], {}, {}
    dense = build_mlp((784,), 10, 4, 500, seed=0)
    for mode in MODES:
        path = workdir / f"dense_{mode}.tflite"
        if not path.is_file():
            export_tflite(dense, path, get_quantization(mode), representative)
        jobs.append(({"kind": "dense", "paths": 1, "quantization": mode, "lowering": "dense"}, path))
    for b in (int(p) for p in args.paths.split(",")):
        model = models[b] = derive(net, b)
        for mode in MODES:
            for lowering in LOWERINGS if b > 1 else ["per_path"]:
                path = workdir / f"paths-{b}_{lowering}_{mode}.tflite"
                if not path.is_file():
                    print(f"exporting {path.name}", flush=True)
                    export_tflite(model, path, get_quantization(mode), representative, lowering)
                jobs.append(({"kind": "mpath", "paths": b, "quantization": mode,
                              "lowering": lowering}, path))
    if args.export_only:
        return
    for (b, mode) in [(b, m) for b in models for m in MODES]:
        auto = choose_lowerings(models[b], mode, "auto", args.profile)
        choices[(b, mode)] = sorted(set(auto.values()))
    target = LocalTarget()
    rows = measure_models(target, jobs, Journal(workdir / "latency.jsonl"), settings,
                          repeats=args.repeats, log=lambda line: print(line, flush=True))
    median = {}
    for (labels, _), row in zip(jobs, rows):
        if row["status"] == "ok":
            median[(labels["kind"], labels["paths"], labels["quantization"],
                    labels["lowering"])] = row["stats"]["median_us"]
        else:
            print(f"FAILED {labels}: {row.get('error')}")
    print(f"\n{datetime.date.today()}  {target.describe()['cpu_model']}, settings "
          f"{settings.to_dict()}, {args.repeats} tries (median try)")
    def kernel_weights(model):
        return sum(int(np.prod(w.shape)) for w in model.trainable_weights if len(w.shape) != 1) \
            + sum(int(np.prod(l.kernel.shape)) for l in model.layers if hasattr(l, "path_widths"))

    names = " | ".join(LOWERINGS)
    print(f"| b | mode | dense | {names} | auto picks | auto / fastest | speed-up over dense "
          "| MAC ratio | speed-up / MAC ratio |")
    print("|---|---|---|" + "---|" * len(LOWERINGS) + "---|---|---|---|---|")
    for b in (int(p) for p in args.paths.split(",")):
        for mode in MODES:
            cells = {l: median.get(("mpath", b, mode, l)) for l in LOWERINGS}
            if b == 1:
                cells = {l: cells["per_path"] for l in LOWERINGS}
            fastest = min(v for v in cells.values() if v is not None)
            picked = choices[(b, mode)]
            auto = cells[picked[0]] if b > 1 else cells["per_path"]
            dense_us = median[("dense", 1, mode, "dense")]
            macs = kernel_weights(dense) / kernel_weights(models[b])
            print(f"| {b} | {mode} | {dense_us:.1f} | "
                  + " | ".join("-" if cells[l] is None else f"{cells[l]:.1f}" for l in LOWERINGS)
                  + f" | {'/'.join(picked)} | {auto / fastest:.3f} | {dense_us / auto:.2f}x | "
                  f"{macs:.2f} | {dense_us / auto / macs:.2f} |")


if __name__ == "__main__":
    main()
