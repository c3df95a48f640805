"""Multipath against dense on each Cortex-M core, with float and int8 input/output.

For mlp-4-64 (64 inputs, the digits size) and mlp-4-500 (784 inputs, the
paper's MNIST size), the dense MLP and derived models at a few path counts
(untrained supernet weights: the instructions executed do not depend on them)
are exported in int8 for each core with ``--lowering auto`` and that core's
lowering profile (``converters.tflm.tflm_convert``: never a lowering TFLM refuses),
once with float32 input and output (a QUANTIZE and a DEQUANTIZE at the ends,
in soft float on a core without an FPU) and once with int8 input and output
(``Int8(int8_io=True)``: what a sensor pipeline that already has int8 data
deploys). Each file runs on TFLM with CMSIS-NN on the emulated core
(``tflm:CORE``, ``mpath-tf setup mcu --core ...``). Prints instructions per
inference (not cycles), the dense model's over the derived model's, and the
arena, for every core and input/output type.

Run from a clean checkout (after the README's install command):

    mpath-tf setup mcu --core cortex-m4,cortex-m4f,cortex-m7
    python benchmarks/tflm_cores.py

Files and measurements are kept under ``--workdir`` (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from dataclasses import replace
from pathlib import Path

SIZES = {"mlp-4-64": ((64,), 64, (4, 16, 46)), "mlp-4-500": ((784,), 500, (4, 16, 64))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="cortex-m4,cortex-m4f,cortex-m7")
    parser.add_argument("--workdir", default="runs/tflm-cores")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import numpy as np

    from converters import Int8
    from converters.tflm import tflm_convert
    from edge_bench import BenchSettings, Journal, get_target, measure_models
    from mpath_tf import build_mlp, build_supernet, derive
    from mpath_tf.cli import quiet_native_logs
    from mpath_tf.storage import atomic_write_bytes, atomic_write_json

    quiet_native_logs()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(runs=1, min_secs=0.0, warmup_runs=0, warmup_min_secs=0.0)
    print(f"{datetime.date.today()}: int8, instructions per inference on TFLM with CMSIS-NN "
          "(emulated; instructions, not cycles)")
    print("| core | model | b | lowering | float I/O | vs dense | int8 I/O | vs dense | "
          "arena (int8 I/O) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for core in args.cores.split(","):
        target = get_target(f"tflm:{core}")
        for name, (shape, width, counts) in SIZES.items():
            representative = np.random.default_rng(0).random((200, *shape), dtype="float32")
            net = build_supernet(shape, 10, 4, width, seed=0)
            models = {1: build_mlp(shape, 10, 4, width, seed=0),
                      **{b: derive(net, b) for b in counts}}
            jobs, chosen = [], {}
            for b, model in models.items():
                for io in ("float", "int8"):
                    scheme = replace(Int8(), int8_io=(io == "int8"))
                    path = workdir / core / f"{name}-b{b}-{io}io.tflite"
                    record = path.with_name(path.name + ".json")
                    if not path.is_file():
                        content, kept = tflm_convert(model, scheme, representative,
                                                     target=f"tflm:{core}")
                        path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_json(record, kept)
                        atomic_write_bytes(path, content)
                    lowerings = set(json.loads(record.read_text())["lowerings"].values())
                    chosen[b] = ",".join(sorted(lowerings)) or "dense"
                    jobs.append(({"b": b, "io": io}, path))
            rows = measure_models(target, jobs, Journal(workdir / core / "counts.jsonl"),
                                  settings, log=lambda *_: None)
            count = {(labels["b"], labels["io"]): row for (labels, _), row in zip(jobs, rows)}
            for b in models:
                cells = []
                for io in ("float", "int8"):
                    row = count[(b, io)]
                    if row["status"] != "ok":
                        cells += ["refused", "-"]
                        continue
                    dense = count[(1, io)]["instructions_per_inference"]
                    ours = row["instructions_per_inference"]
                    cells += [f"{ours / 1000:,.1f}k", f"{dense / ours:.2f}x"]
                arena = count[(b, "int8")].get("arena_bytes")
                print(f"| {core} | {name} | {'dense' if b == 1 else b} | {chosen[b]} | "
                      f"{' | '.join(cells)} | " + (f"{arena:,} |" if arena else "- |"),
                      flush=True)


if __name__ == "__main__":
    main()
