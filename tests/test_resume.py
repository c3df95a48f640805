"""A search killed with SIGKILL resumes where it stopped: during one-shot
training (from its last finished epoch) and during sample fine-tuning (no
finished sample is trained again), with the result of an uninterrupted run's
shape. Real processes, real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import search_finished

ARGS = ["--depth", "3", "--width", "8", "--epochs", "40", "--finetune-epochs", "12",
        "--samples", "3", "--batch-size", "64", "--no-reference", "--no-bench"]


def _search(run: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-c", "from mpath_tf.cli import main; main()", "search", *ARGS,
         "--run-dir", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _kill_when(process, condition, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        if process.poll() is not None:
            pytest.fail(f"the search ended before it could be killed:\n{process.stdout.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the condition to kill the search never came")


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_search_survives_sigkill_in_one_shot_training_and_in_fine_tuning(tmp_path):
    run = tmp_path / "run"
    # 1. Kill during one-shot training, after at least 3 finished epochs.
    process = _search(run)
    checkpoint = run / "checkpoints" / "supernet" / "state.json"
    _kill_when(process, lambda: (_json(checkpoint) or {}).get("epochs_done", 0) >= 3)
    done = _json(checkpoint)["epochs_done"]
    assert done < 40 and not (run / "supernet.keras").exists()

    # 2. Resume; kill during sample fine-tuning, once one sample has finished.
    process = _search(run)
    state = run / "state.json"
    _kill_when(process, lambda: len((_json(state) or {}).get("samples", {})) >= 1)
    output = process.stdout.read()
    assert f"resuming after epoch {done}" in output
    curve = _json(state)["supernet"]
    assert curve is not None and (run / "supernet.keras").is_file()
    finished = set(_json(state)["samples"])
    halfway = {p.parent.name.removeprefix("paths-"): _json(p)["epochs_done"]
               for p in (run / "checkpoints").glob("paths-*/state.json")}

    # 3. Resume to the end: nothing finished is redone.
    process = _search(run)
    output, _ = process.communicate(timeout=300)
    assert search_finished(process.returncode, output), output
    assert "one-shot training: done earlier" in output
    for b in finished:
        assert f"fine-tuned {b} paths" not in output
    for b, epochs in halfway.items():  # a sample killed mid-way goes on from its last epoch
        assert f"{b} paths: resuming after epoch {epochs}" in output
    result = json.loads((run / "results.json").read_text())

    # Same shape as an uninterrupted run with the same settings.
    clean = tmp_path / "clean"
    process = _search(clean)
    output, _ = process.communicate(timeout=300)
    assert search_finished(process.returncode, output), output
    reference = json.loads((clean / "results.json").read_text())
    assert [r["paths"] for r in result["rows"]] == [r["paths"] for r in reference["rows"]]
    assert sorted(_json(state)["samples"]) == sorted(_json(clean / "state.json")["samples"])
    assert set(result) == set(reference) and result["settings"] == reference["settings"]
    assert not (run / "checkpoints" / "supernet").exists()  # cleaned up once finished
