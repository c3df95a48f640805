"""edge_bench's own quality on the local target: repeatability and overhead.

1. Repeatability: one model (mpath-4-500 derived at 4 paths, MNIST input,
   float32) measured ``--repeats`` times in a row with the local target at its
   default settings (each a fresh process); prints each median and the spread
   (largest / smallest median - 1). Target: within +-5% on a quiet machine
   (MLPerf Mobile's rule for repeated tries).
2. Harness overhead: a tiny model (mlp-2-8 on 64 inputs) timed by the local
   target and by a bare ``interpreter.invoke()`` loop in this process, in
   alternation, ``--repeats`` times; prints the ratio of the target's median
   to the bare loop's median per-call time (and to the loop's mean time per
   call, a loop that reads the clock once). Target: within 10%.

Run from a clean checkout (after the README's install command):

    python benchmarks/edge_bench_quality.py --cpus 1

Weights are untrained: latency does not depend on their values.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path


def bare_loop(path: Path, cpus: tuple[int, ...], seconds: float) -> tuple[float, float]:
    """(median per-call us, mean us per call of an unclocked loop) in this process."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    if cpus:
        os.sched_setaffinity(0, cpus)
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).random(detail["shape"], dtype="float32"))
    invoke = interpreter.invoke
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:  # warm-up, as the target does
        invoke()
    times = []
    end = time.perf_counter_ns() + int(seconds * 1e9)
    while (now := time.perf_counter_ns()) < end:
        invoke()
        times.append(time.perf_counter_ns() - now)
    count = len(times)
    start = time.perf_counter_ns()
    for _ in range(count):
        invoke()
    mean = (time.perf_counter_ns() - start) / count / 1000
    os.sched_setaffinity(0, range(os.cpu_count()))
    return statistics.median(times) / 1000, mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 1")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from converters import export_tflite
    from edge_bench import BenchSettings, LocalTarget
    from mpath_tf import build_mlp, build_supernet, derive

    cpus = tuple(int(c) for c in args.cpus.split(",") if c)
    settings = BenchSettings(cpus=cpus)
    folder = Path(tempfile.mkdtemp())
    model = export_tflite(derive(build_supernet((784,), 10, 4, 500, seed=0), 4), folder / "p4.tflite")
    tiny = export_tflite(build_mlp((64,), 10, 2, 8, seed=0), folder / "tiny.tflite")
    target = LocalTarget()
    print(f"{datetime.date.today()}  device: {target.describe()['cpu_model']}, "
          f"{os.cpu_count()} cores, settings {settings.to_dict()}")

    medians = [target.measure(model, settings)["stats"]["median_us"] for _ in range(args.repeats)]
    spread = max(medians) / min(medians) - 1
    print("repeatability, mpath-4-500 at 4 paths, float32, medians (us): "
          + ", ".join(f"{m:.2f}" for m in medians))
    print(f"  spread (max/min - 1): {spread:.2%}; largest deviation from their median: "
          f"{max(abs(m / statistics.median(medians) - 1) for m in medians):.2%}")

    ratios, mean_ratios = [], []
    for _ in range(args.repeats):
        reported = target.measure(tiny, settings)["stats"]["median_us"]
        bare_median, bare_mean = bare_loop(tiny, cpus, seconds=1.0)
        ratios.append(reported / bare_median)
        mean_ratios.append(reported / bare_mean)
        print(f"  tiny model: target median {reported:.3f} us, bare loop median {bare_median:.3f} us, "
              f"unclocked loop mean {bare_mean:.3f} us")
    print("harness overhead, target median / bare-loop median: "
          + ", ".join(f"{r:.3f}" for r in ratios) + f" (median {statistics.median(ratios):.3f})")
    print("  target median / unclocked-loop mean: "
          + ", ".join(f"{r:.3f}" for r in mean_ratios) + f" (median {statistics.median(mean_ratios):.3f})")


if __name__ == "__main__":
    main()
