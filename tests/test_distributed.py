"""Sample fine-tuning on KerasTuner's distributed mode: a chief oracle and 2
worker processes on 127.0.0.1, one worker killed with SIGKILL mid-trial;
its trial is run again by the restarted worker and the search completes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import search_finished

ARGS = ["--depth", "3", "--width", "8", "--epochs", "3", "--finetune-epochs", "4",
        "--samples", "3", "--batch-size", "64", "--workers", "2", "--no-reference", "--no-bench"]


def _worker_pids(tuner_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"mpath_tf.pipeline.tuning" in cmdline and f"KERASTUNER_TUNER_ID={tuner_id}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def test_chief_and_two_workers_survive_a_killed_worker(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    search = subprocess.Popen(
        [sys.executable, "-c", "from mpath_tf.cli import main; main()", "search", *ARGS,
         "--run-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env)
    try:
        # Kill worker tuner0 once it is inside a trial (a fine-tuning checkpoint exists).
        deadline = time.monotonic() + 240
        killed = None
        while time.monotonic() < deadline and killed is None:
            if search.poll() is not None:
                pytest.fail(f"the search ended first:\n{search.stdout.read()}")
            mid_trial = list((run / "checkpoints").glob("paths-*/state.json"))
            pids = _worker_pids("tuner0")
            if mid_trial and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            time.sleep(0.05)
        assert killed, "no worker was seen inside a trial"
        output, _ = search.communicate(timeout=300)
    finally:
        if search.poll() is None:
            search.kill()
    assert search_finished(search.returncode, output), output
    assert "sample trials on a chief and 2 worker(s)" in output
    assert "worker tuner0 died" in output and "restarting it" in output
    records = {p.name: json.loads(p.read_text()) for p in (run / "samples").glob("*.json")}
    assert len(records) == 3
    assert {r["tuner_id"] for r in records.values()} == {"tuner0", "tuner1"}  # both worked
    result = json.loads((run / "results.json").read_text())
    assert len(result["rows"]) == 8 and result["chosen"]["paths"] in range(1, 9)
    trials = [json.loads(p.read_text()) for p in (run / "tuner" / "samples").glob("trial_*/trial.json")]
    assert len(trials) == 3 and {t["status"] for t in trials} == {"COMPLETED"}
