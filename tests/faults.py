"""Fault injection for `mpath-tf search`: SIGKILL at chosen moments, then resume.

Shared by ``tests/test_faults.py`` (a handful of kills, inside the test
budget) and ``benchmarks/faults.py`` (the long sweep). A run is started as
a real subprocess of the installed console script; when the phase's marker
line appears in ``RUN/log.txt`` (the run's own record of what it does) the
process is killed after a delay drawn from a seeded generator, and the next
process resumes the run. After the last kill one more process finishes it.

What a resume must show: exit as an uninterrupted run (0, or 1 when the
tiny model's int8 file misses its gates), no step that had finished before
the kill done again and every killed training resumed after its last
finished epoch (checked on the resumed process's log lines against the
run's state and checkpoints at the kill), and at the end ``results.json`` and every
``.tflite`` byte-identical to an uninterrupted run's, apart from timings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# A small search that passes through every phase: one-shot and sample
# trainings of more than one epoch (a kill can come after a finished one),
# dense reference, two samples, final fine-tuning (--final-epochs above
# --finetune-epochs), export and timing. About 25 s uninterrupted on 2 cores.
ARGS = ["--depth", "2", "--width", "6", "--epochs", "2", "--finetune-epochs", "2",
        "--final-epochs", "3", "--samples", "2", "--batch-size", "64", "--bench-seconds", "0.1"]

def _epoch_checkpointed(pattern: str):
    """A trigger: a training whose checkpoint folder matches ``pattern`` has
    finished an epoch (and is on to the next)."""
    def seen(run: Path, lines: list[str]) -> bool:
        for path in (run / "checkpoints").glob(f"{pattern}/state.json"):
            try:
                if json.loads(path.read_text())["epochs_done"] >= 1:
                    return True
            except (OSError, ValueError, KeyError):
                pass
        return False

    return seen


# Phase -> when it has begun: the log line that says so (prefix after the
# time stamp), or a trigger on the run directory.
PHASES = {
    "one-shot": "one-shot training mpath-",
    "one-shot epoch": _epoch_checkpointed("supernet"),
    "reference": "dense reference mlp-",
    "samples": "sample fine-tuning:",
    "sample epoch": _epoch_checkpointed("paths-[0-9]"),
    "second sample": "  fine-tuned ",
    "final fine-tuning": "fine-tuning the chosen model",
    "export": "  model_float32.tflite:",
    "bench": "timing the chosen model",
}
# Lines a resumed process prints only when it does that step again.
REDONE = {
    "one-shot": "one-shot training mpath-",
    "reference": "dense reference mlp-",
    "final": "fine-tuning the chosen model",
}


def cli() -> list[str]:
    """The installed console script (or ``python -m mpath_tf``)."""
    beside = Path(sys.executable).with_name("mpath-tf")
    exe = str(beside) if beside.is_file() else shutil.which("mpath-tf")
    return [exe] if exe else [sys.executable, "-m", "mpath_tf"]


def command(run: Path) -> list[str]:
    return cli() + ["search", *ARGS, "--run-dir", str(run)]


def finished(code: int, output: str) -> bool:
    """Exit 0, or 1 only because the tiny model's files missed their gates."""
    return code == 0 or (code == 1 and "missed their checks" in output
                         and "Traceback" not in output)


def _log_lines(run: Path, start: int) -> list[str]:
    """Lines ``log.txt`` gained after byte ``start``, without time stamps."""
    path = run / "log.txt"
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]


def _log_size(run: Path) -> int:
    path = run / "log.txt"
    return path.stat().st_size if path.is_file() else 0


def _done_steps(run: Path) -> dict:
    """What the run's state says is finished: the steps a resume must not redo."""
    path = run / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    samples = {p.stem.removeprefix("paths-") for p in (run / "samples").glob("paths-*.json")}
    epochs = {}  # checkpoint folder -> epochs it had finished
    for path in (run / "checkpoints").glob("*/state.json"):
        try:
            epochs[path.parent.name] = json.loads(path.read_text())["epochs_done"]
        except (OSError, ValueError, KeyError):
            pass
    return {"one-shot": state.get("supernet") is not None,
            "reference": state.get("reference") is not None,
            "final": bool(state.get("final")),
            "samples": samples,
            "epochs": {k: v for k, v in epochs.items() if v}}


def not_resumed(done: dict, lines: list[str]) -> list[str]:
    """Checkpoints with finished epochs whose training the resumed process
    did not say it resumed after exactly that epoch."""
    return [f"{folder}: {epochs}" for folder, epochs in done.get("epochs", {}).items()
            if not any(f"resuming after epoch {epochs}" in line for line in lines)]


def redone(done: dict, lines: list[str]) -> list[str]:
    """Lines of a resumed process that redo a step ``done`` says had finished."""
    bad = [line for step, marker in REDONE.items() if done.get(step)
           for line in lines if line.startswith(marker)]
    bad += [line for line in lines for b in done.get("samples", ())
            if line.startswith(f"  fine-tuned {b} paths:")]
    return bad


def run_to_end(run: Path, timeout: float = 600) -> tuple[int, str]:
    proc = subprocess.run(command(run), capture_output=True, text=True, timeout=timeout,
                          cwd=run.parent)
    return proc.returncode, proc.stdout + proc.stderr


def kill_at(run: Path, phase: str, delay: float, timeout: float = 600) -> dict:
    """Start (or resume) the search, SIGKILL it ``delay`` s after ``phase`` begins.

    Returns:
        ``{"phase", "delay", "killed", "code", "done_before", "redone"}``:
        ``killed`` False when the process ended first; ``redone`` the lines
        that repeated a step finished before this process started.
    """
    done_before = _done_steps(run)
    start = _log_size(run)
    marker = PHASES[phase]
    if isinstance(marker, str):
        prefix = marker
        marker = lambda run, lines: any(line.startswith(prefix) for line in lines)  # noqa: E731
    with open(run.parent / f"{run.name}.out", "ab") as out:
        proc = subprocess.Popen(command(run), stdout=out, stderr=subprocess.STDOUT,
                                cwd=run.parent)
        seen_at = None
        deadline = time.monotonic() + timeout
        killed = False
        while proc.poll() is None and time.monotonic() < deadline:
            if seen_at is None and marker(run, _log_lines(run, start)):
                seen_at = time.monotonic()
            if seen_at is not None and time.monotonic() - seen_at >= delay:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
        code = proc.wait(timeout=60)
    lines = _log_lines(run, start)
    return {"phase": phase, "delay": delay, "killed": killed, "code": code,
            "done_before": {k: sorted(v) if isinstance(v, set) else v
                            for k, v in done_before.items()},
            "redone": redone(done_before, lines), "not_resumed": not_resumed(done_before, lines)}


def comparable(results: dict) -> dict:
    """``results.json`` without what differs between identical runs: where it
    ran, how long steps took and the measured latencies."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("seconds", "run_dir", "speed")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(results)


def outputs(run: Path) -> dict:
    """The comparable results and the bytes of every ``.tflite`` of a run."""
    return {"results": comparable(json.loads((run / "results.json").read_text())),
            "files": {p.name: p.read_bytes() for p in sorted(run.glob("*.tflite"))}}


def kill_plan(seed: int, kills: int) -> list[tuple[str, float]]:
    """``kills`` (phase, delay) pairs in the order the phases come: run
    ``seed`` takes the next ``kills`` phases of a cycle through all of them
    (so consecutive seeds hit every phase equally often), delays drawn with
    ``seed`` in [0, 1.5) s."""
    rng = np.random.default_rng(seed)
    phases = list(PHASES)
    start = seed * kills
    chosen = [phases[(start + i) % len(phases)] for i in range(min(kills, len(phases)))]
    order = sorted(chosen, key=phases.index)
    return [(phase, float(rng.uniform(0, 1.5))) for phase in order]


def interrupted_run(run: Path, plan: list[tuple[str, float]]) -> tuple[list[dict], int, str]:
    """Run the search killed at each point of ``plan`` in turn, then to the end.

    Returns:
        The kill records, and the final process's exit code and output.
    """
    run.parent.mkdir(parents=True, exist_ok=True)
    kills = [kill_at(run, phase, delay) for phase, delay in plan]
    done_before = _done_steps(run)
    start = _log_size(run)
    code, output = run_to_end(run)
    lines = _log_lines(run, start)
    kills.append({"phase": "finish", "delay": 0.0, "killed": False, "code": code,
                  "done_before": {k: sorted(v) if isinstance(v, set) else v
                                  for k, v in done_before.items()},
                  "redone": redone(done_before, lines),
                  "not_resumed": not_resumed(done_before, lines)})
    return kills, code, output
