"""Read the results of LiteRT's ``benchmark_model`` binaries.

Two different tools share the name, and both are read here:

* the classic TFLite tool (``tensorflow/lite/tools/benchmark``) logs
  ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg):
  ..., Inference (avg): ...`` and, for each of the warm-up and the timed
  phase, a statistics line ``count= first= curr= min= max= avg= std=`` in
  microseconds (newer builds append ``p5= median= p95=``; a phase whose runs
  all took the same time prints ``count=N curr=T(all same)``; an empty phase
  prints ``count=0``; averages can be in e-notation). Memory is reported as
  ``Memory footprint delta from the start of the tool (MB): init= overall=``
  or, in older builds, ``Peak memory footprint (MB): init= overall=``.
* the newer LiteRT tool (``litert/tools/benchmark``) prints a ``BENCHMARK
  RESULTS`` block in milliseconds with two decimals, 10 us steps: too coarse
  for models that run in microseconds, so such a block is refused when its
  rounding could move the average by more than 1%.

Builds that accept ``--result_file_path`` write a ``tflite.tools.benchmark.
BenchmarkResult`` protocol buffer (``benchmark_result.proto``) with float
milliseconds; it is preferred when present. It is decoded here with a small
wire-format reader, so no generated code is needed.
"""

from __future__ import annotations

import re
import struct

from mpath_tf.errors import MpathError


class BenchmarkOutputError(MpathError):
    """The tool's output holds no usable timing (crash, empty run, too coarse)."""


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({_NUMBER}), First inference: ({_NUMBER}), "
    rf"Warmup \(avg\): ({_NUMBER}), Inference \(avg\): ({_NUMBER})"
)
_STATS = re.compile(r"\bcount=\d+.*$")
_MEMORY = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=({_NUMBER}) overall=({_NUMBER})"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")
_LITERT_LINE = re.compile(rf"(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \(avg\)|"
                          rf"Inference \(min\)|Inference \(max\)|Inference \(std\)):\s+({_NUMBER})")

# The LiteRT tool prints milliseconds with two decimals: a value is off by up
# to 0.005 ms, which must stay within this fraction of the value.
MAX_ROUNDING_ERROR = 0.01


def parse_stats_line(line: str) -> dict:
    """Parse one ``Stat`` line of the classic tool (values in microseconds).

    Args:
        line: Text containing ``count=...``.

    Returns:
        ``runs`` plus whichever of ``first_us``, ``curr_us``, ``min_us``,
        ``max_us``, ``mean_us``, ``std_us``, ``p5_us``, ``median_us``,
        ``p95_us`` the line holds (an "all same" line sets min = max = mean).

    Example:
        >>> parse_stats_line("count=3 curr=52(all same)")["mean_us"]
        52.0
    """
    fields = dict(re.findall(rf"(\w+)=({_NUMBER})", line))
    stats = {"runs": int(float(fields.get("count", 0)))}
    names = {"first": "first_us", "curr": "curr_us", "min": "min_us", "max": "max_us",
             "avg": "mean_us", "std": "std_us", "p5": "p5_us", "median": "median_us",
             "p95": "p95_us"}
    for key, name in names.items():
        if key in fields:
            stats[name] = float(fields[key])
    if "(all same)" in line or (stats["runs"] == 1 and "min_us" not in stats):
        value = stats.get("curr_us")
        stats.update(min_us=value, max_us=value, mean_us=value, std_us=0.0)
        stats.setdefault("median_us", value)
    return stats


def parse_classic(text: str) -> dict:
    """Parse the classic TFLite ``benchmark_model`` log.

    Args:
        text: Its stdout and stderr.

    Returns:
        ``tool``, ``init_us``, ``first_us``, ``warmup_mean_us`` and the timed
        phase's statistics (``runs``, ``min_us``, ``max_us``, ``mean_us``,
        ``std_us`` and, from newer builds, ``median_us``, ``p5_us``,
        ``p95_us``), plus memory in MB where printed.

    Raises:
        BenchmarkOutputError: No timing line (the tool failed) or no timed runs.
    """
    timings = _TIMINGS.search(text)
    if timings is None:
        raise BenchmarkOutputError(
            "benchmark_model printed no 'Inference timings in us' line; it failed "
            f"before finishing. Last lines: {last_lines(text)}"
        )
    stats_lines = [m.group(0) for line in text.splitlines() if (m := _STATS.search(line))]
    if not stats_lines:
        raise BenchmarkOutputError("benchmark_model printed no statistics line (count=...).")
    timed = parse_stats_line(stats_lines[-1])  # warm-up first, then the timed phase
    if timed["runs"] == 0:
        raise BenchmarkOutputError("benchmark_model made no timed runs (count=0); raise --runs.")
    result = {
        "tool": "tflite-benchmark_model",
        "init_us": float(timings.group(1)),
        "first_us": float(timings.group(2)),
        "warmup_mean_us": float(timings.group(3)),
        **{k: v for k, v in timed.items() if k not in ("first_us", "curr_us")},
    }
    if memory := _MEMORY.search(text):
        result["memory_init_mb"] = float(memory.group(1))
        result["memory_overall_mb"] = float(memory.group(2))
    if peak := _PEAK.search(text):
        result["peak_memory_mb"] = float(peak.group(1))
    return result


def parse_litert(text: str) -> dict:
    """Parse the ``BENCHMARK RESULTS`` block of the LiteRT ``benchmark_model``.

    Raises:
        BenchmarkOutputError: No block, or values too coarse to be measured
            (two-decimal milliseconds for a model that runs in microseconds).
    """
    block = text[text.index("BENCHMARK RESULTS"):]
    values = {name: float(value) for name, value in _LITERT_LINE.findall(block)}
    mean_ms = values.get("Inference (avg)")
    if mean_ms is None:
        raise BenchmarkOutputError(f"The BENCHMARK RESULTS block has no 'Inference (avg)'. {last_lines(text)}")
    if mean_ms <= 0 or 0.005 / mean_ms > MAX_ROUNDING_ERROR:
        raise BenchmarkOutputError(
            f"The LiteRT benchmark_model printed Inference (avg): {mean_ms:.2f} ms; it rounds to "
            "0.01 ms, too coarse for this model (error above 1%). Use a build that writes "
            "--result_file_path, or the classic TFLite benchmark_model."
        )
    runs = re.search(r"Inference \(avg\):\s+[^\(]*\((\d+) runs\)", block)
    result = {"tool": "litert-benchmark_model", "runs": int(runs.group(1)) if runs else None,
              "mean_us": mean_ms * 1000.0}
    for name, key in (("Model initialization", "init_us"), ("Warmup (first)", "first_us"),
                      ("Warmup (avg)", "warmup_mean_us"), ("Inference (min)", "min_us"),
                      ("Inference (max)", "max_us"), ("Inference (std)", "std_us")):
        if name in values:
            result[key] = values[name] * 1000.0
    return result


def parse_output(text: str) -> dict:
    """Parse either tool's log; see ``parse_classic`` and ``parse_litert``."""
    if "BENCHMARK RESULTS" in text:
        return parse_litert(text)
    return parse_classic(text)


# Field numbers from tensorflow/lite/tools/benchmark/proto/benchmark_result.proto.
_LATENCY_FIELDS = {1: "mean_ms", 2: "min_ms", 3: "max_ms", 4: "std_ms", 5: "median_ms",
                   6: "p5_ms", 7: "p95_ms", 8: "init_ms", 9: "first_ms", 10: "warmup_mean_ms"}
_MEMORY_FIELDS = {1: "init_footprint_kb", 2: "overall_footprint_kb", 3: "peak_memory_mb"}
_MISC_FIELDS = {1: "model_size_mb", 2: "runs", 3: "warmup_runs", 4: "throughput_mb_per_s"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise BenchmarkOutputError("The result file is truncated (inside a varint).")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) for each field of one message."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<d", data, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<f", data, pos)[0], pos + 4
        else:
            raise BenchmarkOutputError(f"The result file is not a BenchmarkResult (wire type {wire}).")
        if pos > len(data):
            raise BenchmarkOutputError("The result file is truncated.")
        out.append((number, wire, value))
    return out


def parse_result_file(data: bytes) -> dict:
    """Decode a ``BenchmarkResult`` written by ``--result_file_path``.

    Returns:
        ``tool`` and the statistics in microseconds (``mean_us``, ``min_us``,
        ``max_us``, ``std_us``, ``median_us``, ``p5_us``, ``p95_us``,
        ``init_us``, ``first_us``, ``warmup_mean_us``), ``runs`` and memory.

    Raises:
        BenchmarkOutputError: Not a result file, or one without latencies.
    """
    latency, memory, misc = {}, {}, {}
    for number, wire, value in _fields(data):
        if number in (2, 3, 4) and wire == 2:
            names = {2: _LATENCY_FIELDS, 3: _MEMORY_FIELDS, 4: _MISC_FIELDS}[number]
            target = {2: latency, 3: memory, 4: misc}[number]
            for sub, _, sub_value in _fields(value):
                if sub in names:
                    target[names[sub]] = sub_value
    if "mean_ms" not in latency:
        raise BenchmarkOutputError("The result file holds no latency metrics.")
    result = {"tool": "benchmark_model-result_file"}
    for key, value in latency.items():
        result[key.removesuffix("_ms") + "_us"] = float(value) * 1000.0
    result.update({k: v for k, v in misc.items() if k in ("runs", "warmup_runs")})
    result.update(memory)
    return result


def last_lines(text: str, lines: int = 3) -> str:
    """The last lines of a tool's output, on one line, for error messages."""
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"
