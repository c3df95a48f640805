"""edge_bench: measured latency of ``.tflite`` models on a target device.

Targets: ``local`` (this machine's LiteRT interpreter), ``ssh://user@host``
(a Linux board), ``adb[:SERIAL]`` (an Android phone with ``benchmark_model``),
``tflm`` (TFLM's interpreter on this machine) and ``tflm:CORE`` (TFLM with
CMSIS-NN on an emulated Cortex-M core, counted in instructions).
See ``edge_bench/README.md`` for the methodology.

Example:
    >>> from edge_bench import BenchSettings, get_target
    >>> get_target("local").name, BenchSettings().runs
    ('local', 50)
"""

from edge_bench.analysis import LatencyModel, proxy_verdict
from edge_bench.arm64 import Arm64Target
from edge_bench.journal import Journal, result_key
from edge_bench.runner import measure_models
from edge_bench.stats import median_ci, summarize
from edge_bench.targets import AdbTarget, BenchSettings, LocalTarget, SshTarget, Target, get_target
from edge_bench.tflm import CortexMTarget, TflmTarget

__all__ = [
    "AdbTarget", "Arm64Target", "BenchSettings", "CortexMTarget", "Journal", "LatencyModel", "LocalTarget",
    "SshTarget",
    "Target", "TflmTarget", "get_target", "measure_models", "median_ci", "proxy_verdict", "result_key",
    "summarize",
]
