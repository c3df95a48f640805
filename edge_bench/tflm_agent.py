"""Benchmark agent for TensorFlow Lite for Microcontrollers on this machine.

Runs one ``.tflite`` file in the ``tflite-micro`` package's interpreter (TFLM's
reference kernels, compiled for the host) in its own process, so a TFLM abort
fails one model, not the caller, and prints one JSON object:

- ``prepared``: whether TFLM prepares the file; if not, ``refusal``: the lines
  TFLM logged (the op that failed and why);
- ``arena_bytes``: the arena the recording allocator reports ("Arena
  allocation total"), not an estimate;
- ``times_us``: time per inference of each timed batch of inferences (a
  batch lasts about a millisecond; warm-up first, as ``agent.py``);
  ``batch``: inferences per batch;
- ``parity``: the outputs on ``--parity-inputs`` seeded random inputs against
  LiteRT's (``ai-edge-litert``) on the same inputs: the largest difference in
  output quantization steps (float outputs: absolute) and top-1 agreement.

Usage: ``python -m edge_bench.tflm_agent MODEL [--runs N] [--min-secs S]
[--warmup-runs N] [--parity-inputs N] [--seed S]``. Exit 0 with the JSON
(prepared or not), 3 on a model that cannot even be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version

# A generous arena for preparing: the recording allocator reports what is used.
PREPARE_ARENA_BYTES = 64 << 20


@contextlib.contextmanager
def native_output(lines: list):
    """Capture what native code writes to fds 1 and 2 into ``lines``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def random_inputs(details, count: int, seed: int):
    """``count`` seeded random inputs for a tensor's ``details`` (shape, dtype):
    standard normal for float, uniform over the range for integers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in details["shape"])
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return [rng.normal(size=shape).astype(dtype) for _ in range(count)]
    info = np.iinfo(dtype)
    return [rng.integers(info.min, info.max + 1, size=shape).astype(dtype) for _ in range(count)]


def _litert_outputs(model: str, inputs):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    interpreter = Interpreter(model_path=model)
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    fetch = interpreter.get_output_details()[0]["index"]
    outputs = []
    for x in inputs:
        interpreter.set_tensor(feed, x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(fetch).copy())
    return outputs


def parity(tflm_out, litert_out, details) -> dict:
    """TFLM's outputs against LiteRT's on the same inputs: the largest
    difference (integer outputs: in quantization steps) and top-1 agreement."""
    import numpy as np

    a = np.stack(tflm_out).astype(np.float64)
    b = np.stack(litert_out).astype(np.float64)
    steps = np.dtype(details["dtype"]).kind != "f"
    return {
        "inputs": len(tflm_out),
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "unit": "quantization steps" if steps else "absolute",
        "top1_agreement": float(np.mean(a.reshape(len(a), -1).argmax(1)
                                        == b.reshape(len(b), -1).argmax(1))),
    }


def run(model: str, runs: int, min_secs: float, warmup_runs: int, parity_inputs: int,
        seed: int) -> dict:
    from tflite_micro.python.tflite_micro import runtime

    try:
        with open(model, "rb") as handle:
            content = handle.read()
    except OSError as err:
        return {"ok": False, "error": f"cannot read {model}: {err.strerror}"}
    log: list[str] = []
    try:
        with native_output(log):
            interpreter = runtime.Interpreter.from_bytes(content, arena_size=PREPARE_ARENA_BYTES)
    except (RuntimeError, ValueError) as err:
        reasons = [line.strip() for line in log if line.strip()]
        return {"ok": True, "prepared": False,
                "refusal": "; ".join(reasons[-3:]) or str(err)}
    in_details = interpreter.get_input_details(0)
    out_details = interpreter.get_output_details(0)
    inputs = random_inputs(in_details, max(parity_inputs, 1), seed)

    outputs = []
    for x in inputs:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).copy())
    interpreter.set_input(inputs[0], 0)
    for _ in range(warmup_runs):
        interpreter.invoke()
    # Small models run in microseconds: time batches of invokes of about a
    # millisecond each, so the sample is the mean time per inference of a
    # batch and a second of timing keeps about a thousand samples.
    t0 = time.perf_counter()
    interpreter.invoke()
    batch = max(1, int(1e-3 / max(time.perf_counter() - t0, 1e-7)))
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_secs:
        t0 = time.perf_counter()
        for _ in range(batch):
            interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e6 / batch)
        if time.perf_counter() - start > 60:
            break
    allocations: list[str] = []
    with native_output(allocations):
        interpreter.print_allocations()
    arena = next((int(line.split()[-2]) for line in allocations
                  if "Arena allocation total" in line), None)
    litert = _litert_outputs(model, inputs) if parity_inputs else None
    return {
        "ok": True, "prepared": True, "arena_bytes": arena, "times_us": times, "batch": batch,
        "parity": parity(outputs, litert, out_details) if litert is not None else None,
        "runtime": "tflite-micro", "runtime_version": _version(),
    }


def _version() -> str:
    try:
        return version("tflite-micro")
    except Exception:  # metadata missing in a source tree
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--min-secs", type=float, default=0.5)
    parser.add_argument("--warmup-runs", type=int, default=2)
    parser.add_argument("--parity-inputs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(args.model, args.runs, args.min_secs, args.warmup_runs, args.parity_inputs,
                 args.seed)
    print(json.dumps(result))
    return 0 if result["ok"] else 3


if __name__ == "__main__":
    sys.exit(main())
