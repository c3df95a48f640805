"""Latency of the built-in CNN's derived models against the dense CNN.

For ``mpath-cnn-<depth>-<width>`` on one image shape, the dense network and
the networks derived for several path counts (weights of an untrained
supernet: latency does not depend on them; path widths from its membranes)
are exported in float32 and int8 as ``mpath-tf search`` exports them
(``lowering="auto"``: a stage's paths grouped by width, one convolution per
distinct width) and timed side by side with edge_bench's local target
(LiteRT, XNNPACK). Prints, per path count: the path widths, parameters, the
median latency of each file, the speed-up over the dense file, and the
multiply-add ratio of the convolutions (dense over derived: the speed-up an
op with no per-op cost would reach).

Run from a clean checkout (after the README's install command):

    python benchmarks/cnn_latency.py --cpus 1
    python benchmarks/cnn_latency.py --shape 8,8 --width 16    # digits-sized
    python benchmarks/cnn_latency.py --cpus 1 --no-xnnpack     # built-in kernels

Exports and measurements are journaled under ``--workdir`` (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

MODES = ("float32", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="28,28", help="image shape, e.g. 28,28 or 32,32,3")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--paths", default="2,4,8,16,32")
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-xnnpack", action="store_true",
                        help="time LiteRT's built-in kernels (a target without the delegate)")
    parser.add_argument("--workdir", default="runs/cnn-latency")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from converters import export_tflite, get_quantization
    from edge_bench import BenchSettings, Journal, LocalTarget, measure_models
    from mpath_tf import build_supernet, derive, to_dense

    shape = tuple(int(d) for d in args.shape.split(","))
    workdir = Path(args.workdir) / f"{'x'.join(map(str, shape))}-{args.depth}-{args.width}"
    journal = workdir / f"latency{'-no-xnnpack' if args.no_xnnpack else ''}.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c),
                             xnnpack=not args.no_xnnpack)
    net = build_supernet(shape, 10, args.depth, args.width, seed=0, arch="cnn")
    representative = np.random.default_rng(0).random((200, *shape), dtype="float32")
    paths = [b for b in (int(p) for p in args.paths.split(",")) if b <= args.width]
    models = {1: to_dense(net), **{b: derive(net, b) for b in paths}}
    jobs = []
    for b, model in models.items():
        for mode in MODES:
            path = workdir / f"paths-{b}_{mode}.tflite"
            if not path.is_file():
                print(f"exporting {path.name}", flush=True)
                export_tflite(model, path, get_quantization(mode), representative,
                              lowering="auto")
            jobs.append(({"paths": b, "quantization": mode}, path))
    target = LocalTarget()
    rows = measure_models(target, jobs, Journal(journal), settings,
                          repeats=args.repeats, log=lambda line: print(line, flush=True))
    median = {(labels["paths"], labels["quantization"]): row["stats"]["median_us"]
              for (labels, _), row in zip(jobs, rows) if row["status"] == "ok"}

    def conv_macs(model) -> int:  # per output pixel, summed over the convolutions
        return sum(int(np.prod(w.shape)) for layer in model.layers
                   for w in layer.weights if len(w.shape) == 4)

    print(f"\n{datetime.date.today()}  {target.describe()['cpu_model']}, mpath-cnn-{args.depth}-"
          f"{args.width} on {shape}, settings {settings.to_dict()}, {args.repeats} tries "
          "(median try)")
    print("| b | path widths | params | f32 us | f32 speed-up | int8 us | int8 speed-up "
          "| conv MAC ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for b, model in models.items():
        cells = []
        for mode in MODES:
            us = median.get((b, mode))
            dense = median.get((1, mode))
            cells += (["-", "-"] if us is None or dense is None
                      else [f"{us:.1f}", f"{dense / us:.2f}x"])
        widths = "dense" if b == 1 else str(sorted(net.derived_widths(b)))
        print(f"| {b} | {widths} | {model.count_params():,} | {' | '.join(cells)} | "
              f"{conv_macs(models[1]) / conv_macs(model):.2f} |")


if __name__ == "__main__":
    main()
