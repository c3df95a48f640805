"""Self-contained benchmark agent: times one ``.tflite`` model and prints JSON.

This file is copied as-is to the device (a Raspberry Pi over ssh, or run
locally in its own process), so it uses only the standard library, NumPy and
whichever LiteRT runtime the device has (``ai-edge-litert``, else the older
``tflite-runtime``). It keeps to Python 3.7 syntax for older boards.

Protocol: ``python agent.py run MODEL --sha256 HEX [options]`` prints one JSON
object on stdout and exits 0; on a problem with the model it prints
``{"ok": false, "error": ..., "kind": ...}`` and exits 3. ``python agent.py
describe`` prints the device description. A crash of the runtime (a signal)
or a hang is caught by the caller, which runs the agent in its own process.

Timing follows LiteRT's ``benchmark_model``: warm-up runs (at least
``--warmup-runs`` and ``--warmup-min-secs``), then timed runs (at least
``--runs`` and ``--min-secs``, stopping after ``--max-secs``). Every timed run
is kept (``times_us``); the statistics are computed by the caller.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

EXIT_MODEL_ERROR = 3

_CPUFREQ = "/sys/devices/system/cpu/cpu{}/cpufreq/{}"
_THERMAL = "/sys/class/thermal"


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, ValueError):
        return None


def _runtime():
    """The LiteRT Python runtime on this device: (module, name, version)."""
    try:
        from ai_edge_litert import interpreter as module
        import ai_edge_litert

        return module, "ai-edge-litert", getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as module
        import tflite_runtime

        return module, "tflite-runtime", getattr(tflite_runtime, "__version__", "unknown")
    except ImportError:
        return None, None, None


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key = line.split(":")[0].strip().lower()
        if key in ("model name", "hardware", "cpu model"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# Instruction-set features that decide which kernels LiteRT (XNNPACK) runs.
_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
        "avx512_bf16", "amx_int8", "asimd", "neon", "asimddp", "i8mm", "sve", "sve2")


def _cpu_isa():
    """The features of ``_ISA`` this CPU has (x86 ``flags``, ARM ``Features``)."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key = line.split(":")[0].strip().lower()
        if key in ("flags", "features"):
            have = set(line.split(":", 1)[1].split())
            return [flag for flag in _ISA if flag in have]
    return []


def system_state(cpus):
    """CPU governor and frequencies of the pinned CPUs, and every thermal zone."""
    state = {"cpus": {}, "temperatures_c": {}}
    for cpu in cpus:
        freq = _read(_CPUFREQ.format(cpu, "scaling_cur_freq"))
        max_freq = _read(_CPUFREQ.format(cpu, "scaling_max_freq"))
        state["cpus"][str(cpu)] = {
            "governor": _read(_CPUFREQ.format(cpu, "scaling_governor")),
            "cur_freq_khz": int(freq) if freq and freq.isdigit() else None,
            "max_freq_khz": int(max_freq) if max_freq and max_freq.isdigit() else None,
        }
    if os.path.isdir(_THERMAL):
        for zone in sorted(os.listdir(_THERMAL)):
            temp = _read(os.path.join(_THERMAL, zone, "temp"))
            if temp and temp.lstrip("-").isdigit():
                state["temperatures_c"][zone] = int(temp) / 1000.0
    return state


def state_changes(before, after, freq_drop=0.1, temp_rise_c=5.0):
    """Warnings for a changed governor, a capped or lower clock, or heating up."""
    warnings = []
    for cpu, old in before["cpus"].items():
        new = after["cpus"].get(cpu, {})
        if old["governor"] != new.get("governor"):
            warnings.append("cpu{} governor changed {} -> {}".format(cpu, old["governor"], new.get("governor")))
        if old["max_freq_khz"] and new.get("max_freq_khz") and new["max_freq_khz"] < old["max_freq_khz"]:
            warnings.append("cpu{} max frequency capped {} -> {} kHz (thermal throttling?)".format(
                cpu, old["max_freq_khz"], new["max_freq_khz"]))
        if old["cur_freq_khz"] and new.get("cur_freq_khz") and \
                new["cur_freq_khz"] < (1 - freq_drop) * old["cur_freq_khz"]:
            warnings.append("cpu{} frequency fell {} -> {} kHz".format(cpu, old["cur_freq_khz"], new["cur_freq_khz"]))
    for zone, old in before["temperatures_c"].items():
        new = after["temperatures_c"].get(zone)
        if new is not None and new - old > temp_rise_c:
            warnings.append("{} rose {:.1f} -> {:.1f} C".format(zone, old, new))
    return warnings


def describe():
    """What this device is and what it runs."""
    _, runtime, version = _runtime()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_isa": _cpu_isa(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runtime": runtime,
        "runtime_version": version,
        "numpy": _numpy_version(),
        "state": system_state(cpus[:1] if cpus else []),
    }


def _numpy_version():
    try:
        import numpy

        return numpy.__version__
    except ImportError:
        return None


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _CaptureStderr:
    """Capture the runtime's C++ log lines (fd 2) while the model loads."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.lines = [line for line in self._file.read().decode("utf-8", "replace").splitlines() if line.strip()]
        self._file.close()
        return False


def delegation(ops):
    """Which ops the delegate took, and how many partitions the graph has.

    The interpreter lists the model's original ops and then one ``DELEGATE``
    node per delegated partition. An original op belongs to a partition when it
    produces one of the partition's outputs, or a tensor that an op of the
    partition consumes and that is not one of the partition's own inputs.
    Original ops that belong to no partition run on the reference kernels.
    """
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    producer = {}
    for op in originals:
        for tensor in op["outputs"]:
            producer[int(tensor)] = op
    taken = set()
    for partition in partitions:
        boundary = set(int(t) for t in partition["inputs"])
        stack = [int(t) for t in partition["outputs"]]
        while stack:
            op = producer.get(stack.pop())
            if op is None or op["index"] in taken:
                continue
            taken.add(op["index"])
            stack.extend(int(t) for t in op["inputs"] if int(t) >= 0 and int(t) not in boundary)

    def count(selected):
        counts = {}
        for op in selected:
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return counts

    return {
        "partitions": len(partitions),
        "ops": count(originals),
        "delegated_ops": count(op for op in originals if op["index"] in taken),
        "undelegated_ops": count(op for op in originals if op["index"] not in taken),
    }


def _fail(kind, message):
    print(json.dumps({"ok": False, "kind": kind, "error": message}))
    sys.stdout.flush()
    sys.exit(EXIT_MODEL_ERROR)


# Runs faster than this are timed in groups of back-to-back invokes (the
# group's mean is one sample), as Google Benchmark does: reading the clock
# from Python costs about 0.1 us, 10-20% of a tiny model's invoke.
MIN_SAMPLE_US = 20.0


def _timed_loop(invoke, min_runs, min_secs, max_secs, group=1):
    """Time ``invoke`` for at least ``min_runs`` samples and ``min_secs`` seconds.

    Each sample is the mean of ``group`` back-to-back invokes, in microseconds.
    """
    times_ns = []
    start = time.perf_counter_ns()
    min_end = start + int(min_secs * 1e9)
    max_end = start + int(max_secs * 1e9)
    now = start
    calls = range(group)
    while (len(times_ns) < min_runs or now < min_end) and now <= max_end:
        begin = time.perf_counter_ns()
        for _ in calls:
            invoke()
        now = time.perf_counter_ns()
        times_ns.append(now - begin)
    return [t / 1000.0 / group for t in times_ns]


def run(args):
    import numpy as np

    if not os.path.isfile(args.model):
        _fail("missing", "model file {} does not exist on the device".format(args.model))
    digest = sha256_file(args.model)
    if args.sha256 and digest != args.sha256:
        _fail("checksum", "model file {} has sha256 {} on the device, expected {}: the "
              "transfer corrupted it".format(args.model, digest, args.sha256))
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else []
    if cpus:
        os.sched_setaffinity(0, cpus)
    pinned = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    module, runtime, version = _runtime()
    if module is None:
        print(json.dumps({"ok": False, "kind": "runtime", "error": "no LiteRT runtime on the device: "
                          "pip install ai-edge-litert (or tflite-runtime on older boards)"}))
        sys.exit(EXIT_MODEL_ERROR)
    before = system_state(pinned[:4])

    kwargs = {"model_path": args.model, "num_threads": args.threads}
    if not args.xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    init_start = time.perf_counter_ns()
    with _CaptureStderr() as log:
        try:
            interpreter = module.Interpreter(**kwargs)
            inputs = interpreter.get_input_details()
            if args.input_shape:
                shape = [int(d) for d in args.input_shape.split(",")]
                model_shape = [int(d) for d in inputs[0]["shape"][1:]]
                if shape[1:] != model_shape:
                    raise _ShapeError("the model expects inputs of shape {} per example, "
                                      "received input shape {}".format(model_shape, shape[1:]))
                interpreter.resize_tensor_input(inputs[0]["index"], shape)
            interpreter.allocate_tensors()
        except _ShapeError as err:
            _fail("input_shape", str(err))
        except (ValueError, RuntimeError) as err:
            _fail("load", "the runtime cannot load {}: {}".format(args.model, err))
    init_us = (time.perf_counter_ns() - init_start) / 1000.0

    rng = np.random.default_rng(args.seed)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.random(detail["shape"]).astype(dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
        interpreter.set_tensor(detail["index"], value)

    begin = time.perf_counter_ns()
    interpreter.invoke()
    first_us = (time.perf_counter_ns() - begin) / 1000.0
    warmup_us = _timed_loop(interpreter.invoke, args.warmup_runs, args.warmup_min_secs, args.max_secs)
    typical_us = sorted(warmup_us)[len(warmup_us) // 2]
    group = max(1, int(MIN_SAMPLE_US // max(typical_us, 1e-3))) if typical_us < MIN_SAMPLE_US else 1
    times_us = _timed_loop(interpreter.invoke, args.runs, args.min_secs, args.max_secs, group)
    after = system_state(pinned[:4])

    warnings = state_changes(before, after)
    suspect = bool(warnings)  # the machine changed under the measurement
    delegate = delegation(interpreter._get_ops_details())
    if args.xnnpack and delegate["undelegated_ops"]:
        warnings.append("ops not taken by the XNNPACK delegate run on reference kernels: {}".format(
            ", ".join("{} x{}".format(k, v) for k, v in sorted(delegate["undelegated_ops"].items()))))
    print(json.dumps({
        "ok": True,
        "runtime": runtime,
        "runtime_version": version,
        "model_sha256": digest,
        "input_shape": [int(d) for d in interpreter.get_input_details()[0]["shape"]],
        "settings": {
            "threads": args.threads, "xnnpack": bool(args.xnnpack), "cpus": pinned,
            "warmup_runs": args.warmup_runs, "warmup_min_secs": args.warmup_min_secs,
            "runs": args.runs, "min_secs": args.min_secs, "max_secs": args.max_secs,
        },
        "init_us": init_us,
        "first_us": first_us,
        "warmup_us": warmup_us,
        "times_us": times_us,
        "invokes_per_sample": group,
        "delegate": delegate,
        "runtime_log": log.lines[-20:],
        "state_before": before,
        "state_after": after,
        "warnings": warnings,
        "suspect": suspect,
    }))


class _ShapeError(Exception):
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("describe")
    bench = commands.add_parser("run")
    bench.add_argument("model")
    bench.add_argument("--sha256", default=None)
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--xnnpack", type=int, default=1)
    bench.add_argument("--cpus", default="")
    bench.add_argument("--warmup-runs", type=int, default=1)
    bench.add_argument("--warmup-min-secs", type=float, default=0.5)
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--min-secs", type=float, default=1.0)
    bench.add_argument("--max-secs", type=float, default=150.0)
    bench.add_argument("--input-shape", default="")
    bench.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "describe":
        print(json.dumps(describe()))
    elif args.command == "run":
        run(args)
    else:
        parser.error("choose a command: describe or run")


if __name__ == "__main__":
    main()
