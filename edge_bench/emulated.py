"""LiteRT under QEMU user mode, counted in instructions: what the emulated
CPU targets share (``edge_bench.arm64``: ARM Cortex-A cores;
``edge_bench.x86_64``: this machine's own LiteRT on an emulated x86-64 CPU).

The agent (``emulated_agent.py``: standard library, NumPy and LiteRT only)
runs a ``.tflite`` file in the emulated process; the counting plugin
(``edge_bench/mcu/insn_count.c``) counts what the emulated CPU executes
between two marks the agent sets around ``COUNTED`` inferences, after one
uncounted inference that prepares the kernels: Python's start and imports,
whose count varies by millions between runs, are outside the window.
Instructions are not cycles: QEMU models no pipeline or cache, so a count
ranks files run by the same kernels on the same CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_bench.benchmark_model import last_lines
from edge_bench.quantized_io import dequantize_output, quantize_input
from edge_bench.target_base import Target
from mpath_tf.errors import ModelError
from edge_bench.tflm_agent import parity, random_inputs

COUNTED = 200  # inferences counted per file (after one that is not)
AGENT = Path(__file__).with_name("emulated_agent.py")


class EmulatedLiteRT(Target):
    """LiteRT in an emulated process, counted in instructions. A subclass
    gives ``_process`` (the command and environment that run the agent) and
    ``_describe``."""

    runtime = "litert (emulated)"

    def _process(self, agent_args: list[str], counted: bool,
                 work: Path) -> tuple[list[str], dict]:
        """The command that runs ``python -s AGENT *agent_args`` on the
        emulated CPU (with the counting plugin when ``counted``), and its
        environment; ``work`` is a private temporary folder."""
        raise NotImplementedError

    def run(self, model: str | os.PathLike, x: np.ndarray, timeout: float = 600.0) -> np.ndarray:
        """The outputs of a ``.tflite`` file on the emulated CPU for a
        batch, as ``converters.tflite.run_tflite`` gives them on this
        machine (int8 input and output tensors quantized and dequantized
        with the file's scale and zero point).

        Raises:
            TargetError: The runtime is not set up.
            ModelError: LiteRT failed on the file.
        """
        from ai_edge_litert.interpreter import Interpreter

        self.describe()
        details = Interpreter(model_path=str(model))
        feed, fetch = details.get_input_details()[0], details.get_output_details()[0]
        with tempfile.TemporaryDirectory(prefix="mpath-emulated-") as work:
            given, got = Path(work) / "input.npy", Path(work) / "output.npy"
            np.save(given, quantize_input(feed, x))
            self._run(Path(model), 0, given, got, timeout)
            return dequantize_output(fetch, np.load(got))

    def _run(self, model: Path, count: int, given: Path, out: Path, timeout: float) -> int | None:
        """Run the agent on the emulated CPU; the instructions of its
        ``count`` inferences (None with ``count`` 0: a batch, not counted)."""
        command, env = self._process([str(model), str(count), str(given), str(out)],
                                     bool(count), given.parent)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=env)
        except subprocess.TimeoutExpired:
            raise ModelError(f"{self.name}: the emulated run did not finish in {timeout:.0f} s "
                             "(timeout_s); it was killed.") from None
        found = re.search(r"mpath-insn-window (\d+)", proc.stderr)
        if proc.returncode != 0 or (count and found is None):
            raise ModelError(f"{self.name}: LiteRT failed on {model.name} (exit "
                             f"{proc.returncode}): {last_lines(proc.stderr)}")
        return int(found[1]) if count else None

    def _measure(self, model, sha256, settings):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(model), num_threads=1)
        interpreter.allocate_tensors()
        feed, fetch = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        x = random_inputs(feed, 1, settings.seed)[0]
        with tempfile.TemporaryDirectory(prefix="mpath-emulated-") as work:
            given, got = Path(work) / "input.npy", Path(work) / "output.npy"
            np.save(given, x)
            counted = self._run(model, COUNTED, given, got, settings.timeout_s)
            output = np.load(got)
        interpreter.set_tensor(feed["index"], x)
        interpreter.invoke()
        reference = interpreter.get_tensor(fetch["index"])
        per_inference = counted / COUNTED
        return {
            "tool": "mpath-tf emulated agent", "runtime": self.runtime,
            "runtime_version": None, "unit": "instructions",
            "instructions_per_inference": per_inference,
            "stats": {"runs": COUNTED, "median_us": None, "mean_us": None,
                      "median_instructions": per_inference},
            "parity": {**parity([output], [reference], fetch),
                       "identical_share": float(np.mean(output == reference))},
            "warnings": [], "suspect": False,
        }
