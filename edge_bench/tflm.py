"""TensorFlow Lite for Microcontrollers targets: ``tflm`` and ``tflm:CORE``.

``tflm`` runs each file in the ``tflite-micro`` package's interpreter on this
machine (TFLM's reference kernels, timed in microseconds). ``tflm:cortex-m4``
(and ``cortex-m4f``, ``cortex-m7``, ``cortex-m55``) runs it in TFLM built with CMSIS-NN's
kernels for that core (``mpath-tf setup mcu``), bare-metal on a QEMU board,
and counts the instructions executed per inference with a QEMU plugin.
Instructions are not cycles: a Cortex-M4 takes one to several cycles per
instruction and waits on flash; the count ranks models run by the same
kernels, it is not a latency.

Both report, beside the cost, whether TFLM prepares the file (a refusal
names the op and the reason), the arena the allocator used (``arena_bytes``),
the flash the model takes (``flash_bytes``: the file; ``flash_bytes_no_metadata``
without its metadata buffers) and the outputs against LiteRT's on the same
inputs (``parity``).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_bench import tflm_agent
from edge_bench.benchmark_model import last_lines
from edge_bench.mcu.build import APT_HINT, get_core, is_built, plugin_path, runner_path
from edge_bench.stats import row_cost, row_unit
from edge_bench.target_base import Target, sha256_file
from mpath_tf.errors import ModelError, TargetError

AGENT = Path(tflm_agent.__file__)
# Inferences counted on the Cortex-M targets: instructions per inference =
# (count with 1 + COUNTED invokes - count with 1) / COUNTED. The count is
# deterministic (same binary, same inputs), so a few suffice.
COUNTED = 10


def metadata_bytes(content: bytes) -> int:
    """Bytes of a ``.tflite`` file's metadata buffers (labels, descriptions,
    the converter's records): flash a microcontroller project need not keep.

    Example:
        >>> metadata_bytes(b"")
        0
    """
    if len(content) < 8:
        return 0
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(content, 0)
    total = 0
    for i in range(model.MetadataLength()):
        buffer = model.Buffers(model.Metadata(i).Buffer())
        total += buffer.DataLength() if buffer is not None else 0
    return total


def _flash(model: Path) -> dict:
    content = model.read_bytes()
    return {"flash_bytes": len(content),
            "flash_bytes_no_metadata": len(content) - metadata_bytes(content)}


def summary(row: dict) -> dict:
    """What a TFLM row says of a file: ``cost`` in ``unit`` (``row_cost``),
    ``arena_bytes``, ``flash_bytes``, ``flash_bytes_no_metadata``, ``parity``.

    Example:
        >>> summary({"stats": {"median_us": 2.0}, "arena_bytes": 64})["cost"]
        2.0
    """
    return {"cost": row_cost(row), "unit": row_unit(row),
            **{k: row.get(k) for k in ("arena_bytes", "flash_bytes", "flash_bytes_no_metadata",
                                       "parity")}}


class TflmTarget(Target):
    """TFLM's interpreter on this machine (``tflite-micro``, reference kernels).

    Each model runs in a fresh process of ``python`` (``edge_bench/tflm_agent.py``).

    Example:
        >>> TflmTarget().name
        'tflm'
    """

    name = "tflm"

    def __init__(self, python: str = sys.executable):
        super().__init__()
        self.python = python

    def _describe(self) -> dict:
        proc = subprocess.run(
            [self.python, "-c", "import importlib.metadata as m; print(m.version('tflite-micro'))"],
            capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise TargetError("tflm: the tflite-micro package is not installed for "
                              f"'{self.python}': pip install 'mpath-tf[mcu]' (or tflite-micro).")
        return {"runtime": "tflite-micro", "runtime_version": proc.stdout.strip(),
                "kernels": "reference", "machine": platform.machine(),
                "processor": platform.processor() or None}

    def _run_agent(self, model: Path, args: list[str], timeout: float) -> dict:
        """The agent's result for ``model`` (prepared or not); ModelError if it
        crashed, hung or gave none (``Target._agent_result``)."""
        try:
            proc = subprocess.run([self.python, str(AGENT), str(model), *args],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ModelError(f"tflm: {model.name} did not finish in {timeout} s "
                             "(timeout_s); it was killed.") from None
        return self._agent_result(proc, model)

    def refusal(self, model: str | os.PathLike, timeout: float = 600) -> str | None:
        """Why TFLM refuses to prepare ``model`` (the op and reason it logged), or None.

        Raises:
            ModelError: The interpreter crashed or hung on the file.
        """
        result = self._run_agent(Path(model), ["--runs", "0", "--min-secs", "0",
                                               "--warmup-runs", "0", "--parity-inputs", "0"],
                                 timeout)
        return None if result["prepared"] else result["refusal"]

    def _measure(self, model, sha256, settings):
        result = self._run_agent(model, [
            "--runs", str(settings.runs), "--min-secs", str(settings.min_secs),
            "--warmup-runs", str(max(settings.warmup_runs, 1)), "--seed", str(settings.seed)],
            settings.timeout_s)
        if not result["prepared"]:
            raise ModelError(f"tflm: TFLM refuses {model.name}: {result['refusal']}")
        return {"tool": "mpath-tf tflm agent", "runtime": result["runtime"],
                "runtime_version": result["runtime_version"], "times_us": result["times_us"],
                "inferences_per_sample": result["batch"],
                "arena_bytes": result["arena_bytes"], **_flash(model),
                "parity": result["parity"], "warnings": [], "suspect": False}


class CortexMTarget(Target):
    """TFLM with CMSIS-NN on an emulated Cortex-M core, counted in instructions.

    Needs the runner built by ``mpath-tf setup mcu --core CORE`` (cached) and
    Debian's ``qemu-system-arm``. Each model runs twice on the core's QEMU
    board: one inference, then ``1 + COUNTED``, each with the same seeded
    random input and writing the same output; instructions per inference are
    the difference over ``COUNTED``, so start-up, reading the files,
    preparing and writing the output cancel out. The output is checked
    against LiteRT's on the same input (``parity``).

    Args:
        spec: ``tflm:cortex-m4``, ``tflm:cortex-m4f`` (hard float), ``tflm:cortex-m7``
            or ``tflm:cortex-m55`` (Helium).

    Example:
        >>> CortexMTarget("tflm:cortex-m4").core.board
        'mps2-an386'
    """

    def __init__(self, spec: str):
        super().__init__()
        self.name = spec
        self.core = get_core(spec.split(":", 1)[1])

    def _describe(self) -> dict:
        if shutil.which("qemu-system-arm") is None:
            raise TargetError(f"{self.name}: qemu-system-arm is not installed; on Debian/Ubuntu: "
                              f"{APT_HINT}")
        if not is_built(self.core):
            raise TargetError(f"{self.name}: TFLM is not built for {self.core.name}; run "
                              f"`mpath-tf setup mcu --core {self.core.name}` first (about 6 "
                              "minutes, once).")
        version = subprocess.run(["qemu-system-arm", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
        return {"runtime": "tflite-micro", "kernels": "cmsis_nn", "core": self.core.name,
                "float_abi": self.core.float_abi, "board": self.core.board,
                "emulator": version, "unit": "instructions (not cycles)",
                "runner_sha256": sha256_file(runner_path(self.core))}

    def _qemu(self, args: list[str], timeout: float, loads=()) -> tuple[dict, int]:
        """Run the runner with ``args`` (``loads``: ``(file, address)`` pairs
        QEMU's loader device puts in memory first); its result lines and the
        instruction count."""
        semihosting = ",".join(["enable=on", "target=native", "arg=runner",
                                *(f"arg={a}" for a in args)])
        devices = [arg for path, address in loads
                   for arg in ("-device", f"loader,file={path},addr=0x{address:x},force-raw=on")]
        command = ["qemu-system-arm", "-M", self.core.board, "-nographic", "-monitor", "none",
                   "-serial", "none", *devices, "-semihosting-config", semihosting,
                   "-plugin", str(plugin_path()), "-kernel", str(runner_path(self.core))]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ModelError(f"{self.name}: the emulated run did not finish in {timeout:.0f} s "
                             "(timeout_s); it was killed.") from None
        result = dict(re.findall(r"^mpath-result (\S+) (.*)$", proc.stdout, re.M))
        count = re.search(r"mpath-insn-count (\d+)", proc.stderr)
        if count is None:
            raise TargetError(f"{self.name}: QEMU gave no instruction count (exit "
                              f"{proc.returncode}): {last_lines(proc.stderr)}")
        if result.get("status") != "ok":
            reason = [line for line in proc.stdout.splitlines()
                      if line.strip() and not line.startswith("mpath-result")]
            raise ModelError(f"{self.name}: TFLM ({self.core.name}, CMSIS-NN) "
                             f"{'refuses' if result.get('status') == 'refused' else 'failed on'} "
                             f"the model: {'; '.join(reason[-3:]) or result.get('status')}")
        return result, int(count[1])

    def _measure(self, model, sha256, settings):
        from ai_edge_litert.interpreter import Interpreter

        if any(c in str(model) for c in ", "):
            raise ModelError(f"{self.name}: the path {model} has a comma or space, which QEMU's "
                             "command line cannot pass; move the file.")
        interpreter = Interpreter(model_path=str(model))
        interpreter.allocate_tensors()
        feed, fetch = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        x = tflm_agent.random_inputs(feed, 1, settings.seed)[0]
        with tempfile.TemporaryDirectory(prefix="mpath-tflm-") as work:
            given, got = Path(work) / "input.bin", Path(work) / "output.bin"
            given.write_bytes(x.tobytes())
            # Both runs read the same input and give the same output; they differ
            # only in the inferences, so the difference counts inferences alone.
            if self.core.model_memory is None:  # the runner reads the files (semihosting)
                first, once = self._qemu([str(model), "1", str(given), str(got)],
                                         settings.timeout_s)
                raw = got.read_bytes()
                _, more = self._qemu([str(model), str(1 + COUNTED), str(given), str(got)],
                                     settings.timeout_s)
            else:  # QEMU's loader puts them in memory: the model, the input in the last 64 KB
                base, window = self.core.model_memory
                if model.stat().st_size > window - (64 << 10):
                    raise ModelError(f"{self.name}: {model.name} is larger than the "
                                     f"{(window - (64 << 10)) >> 10} KB this board leaves it.")
                at_input = base + window - (64 << 10)
                loads = [(model, base), (given, at_input)]
                first, once = self._qemu([f"@0x{base:x}", "1", f"@0x{at_input:x}", "-"],
                                         settings.timeout_s, loads)
                raw = bytes.fromhex(first["output"])
                _, more = self._qemu([f"@0x{base:x}", str(1 + COUNTED), f"@0x{at_input:x}", "-"],
                                     settings.timeout_s, loads)
        output = np.frombuffer(raw, dtype=fetch["dtype"]).reshape(fetch["shape"])
        interpreter.set_tensor(feed["index"], x)
        interpreter.invoke()
        reference = interpreter.get_tensor(fetch["index"])
        per_inference = (more - once) / COUNTED
        return {
            "tool": "mpath-tf cortex-m runner", "runtime": "tflite-micro (cmsis_nn)",
            "runtime_version": None,
            "unit": "instructions", "instructions_per_inference": per_inference,
            "instructions_startup": once - per_inference,
            "stats": {"runs": COUNTED, "median_us": None, "mean_us": None,
                      "median_instructions": per_inference},
            "arena_bytes": int(first["arena_bytes"]), **_flash(model),
            "parity": tflm_agent.parity([output], [reference], fetch),
            "warnings": [], "suspect": False,
        }
