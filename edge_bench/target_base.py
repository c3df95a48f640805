"""What every benchmark target shares: timing settings and the ``Target`` template.

``Target.measure`` validates, hashes and summarizes once; each target
(``edge_bench.targets``: local, ssh, adb; ``edge_bench.tflm``: TFLM on this
machine and on emulated Cortex-M cores) supplies only ``_describe`` and
``_measure``.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_bench import agent
from edge_bench.benchmark_model import last_lines
from edge_bench.stats import summarize
from mpath_tf.errors import ConfigError, ModelError


@dataclass(frozen=True)
class BenchSettings:
    """How each model is timed; recorded with every result.

    Defaults follow LiteRT's ``benchmark_model``: at least 1 warm-up run and
    0.5 s, then at least 50 timed runs and 1 s, on one thread with XNNPACK.

    Attributes:
        threads: Interpreter threads (>= 1).
        xnnpack: Use the XNNPACK delegate (the runtime's default on CPU).
        cpus: CPU cores to pin the process to (``taskset``); empty: no pinning.
        warmup_runs: Minimum warm-up runs.
        warmup_min_secs: Minimum warm-up seconds.
        runs: Minimum timed runs.
        min_secs: Minimum timed seconds.
        max_secs: The timed phase stops starting runs after this many seconds.
        timeout_s: The whole measurement of one model is killed after this.
        input_shape: Input shape to run with, batch first (default: the model's).
        seed: Seed of the random input.
    """

    threads: int = 1
    xnnpack: bool = True
    cpus: tuple[int, ...] = ()
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 60.0
    timeout_s: float = 300.0
    input_shape: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("threads", "runs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        for name in ("warmup_runs", "warmup_min_secs", "min_secs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0. Received: {name}={getattr(self, name)}")
        for name in ("timeout_s", "max_secs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"`{name}` must be > 0. Received: {name}={getattr(self, name)}")
        if any(c < 0 for c in self.cpus):
            raise ConfigError(f"`cpus` must be core numbers >= 0. Received: cpus={self.cpus}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def agent_args(self) -> list[str]:
        args = [
            "--threads", str(self.threads), "--xnnpack", str(int(self.xnnpack)),
            "--warmup-runs", str(self.warmup_runs), "--warmup-min-secs", str(self.warmup_min_secs),
            "--runs", str(self.runs), "--min-secs", str(self.min_secs),
            "--max-secs", str(self.max_secs), "--seed", str(self.seed),
        ]
        if self.cpus:
            args += ["--cpus", ",".join(map(str, self.cpus))]
        if self.input_shape:
            args += ["--input-shape", ",".join(map(str, self.input_shape))]
        return args


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    return agent.sha256_file(str(path))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Target:
    """Base class: turns one timing into a result row.

    Subclasses set ``name`` and implement ``_describe()`` and
    ``_measure(model, sha256, settings)``; the latter returns the tool's
    timing dict (per-run ``times_us`` or the tool's own statistics).
    """

    name = "target"

    def __init__(self):
        self._device = None

    def describe(self) -> dict:
        """The device: hardware, OS, runtime (asked once, then cached).

        Raises:
            TargetError: The device cannot be reached.
        """
        if self._device is None:
            self._device = self._describe()
        return self._device

    def measure(self, model: str | os.PathLike, settings: BenchSettings | None = None) -> dict:
        """Time one model on this target.

        Args:
            model: A ``.tflite`` file on this machine.
            settings: Timing settings (default ``BenchSettings()``).

        Returns:
            A result row: target, device, model and its sha256, settings,
            runtime/tool and version, statistics (``stats``), per-run times
            when the tool gives them, delegate partitions, warnings, ``suspect``.

        Raises:
            ModelError: This model cannot be loaded or run on the target.
            TargetError: The target cannot be reached or used.
        """
        settings = settings or BenchSettings()
        model = Path(model)
        if not model.is_file():
            raise ModelError(f"{self.name}: model file {model} does not exist.")
        digest = sha256_file(model)
        device = self.describe()
        timing = self._measure(model, digest, settings)
        times = timing.pop("times_us", None)
        stats = summarize(times) if times else timing.pop("stats")
        return {
            "status": "ok",
            "target": self.name,
            "device": device,
            "model": str(model),
            "model_sha256": digest,
            "model_bytes": model.stat().st_size,
            "settings": settings.to_dict(),
            "measured_at": _now(),
            "stats": stats,
            "times_us": times,
            **timing,
        }

    def _describe(self) -> dict:
        raise NotImplementedError

    def _measure(self, model: Path, sha256: str, settings: BenchSettings) -> dict:
        raise NotImplementedError

    def _agent_result(self, proc: subprocess.CompletedProcess, model: Path) -> dict:
        """Interpret the agent's exit status and JSON line."""
        if proc.returncode < 0 or proc.returncode >= 128:
            signal = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
            raise ModelError(
                f"{self.name}: the runtime crashed on {model.name} (signal {signal}); the file "
                f"may be corrupt. {last_lines(proc.stderr)}"
            )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise ModelError(
                f"{self.name}: the benchmark agent failed on {model.name} (exit "
                f"{proc.returncode}) without a result. {last_lines(proc.stderr)}"
            ) from None
        if not result.pop("ok", False):
            raise ModelError(f"{self.name}: {model.name}: {result.get('error')}")
        result.pop("settings", None)  # the caller records its own settings
        result["tool"] = "mpath-tf agent"
        return result
