"""Faults: SIGKILL at any moment resumes to the same result; one process per run.

Real subprocesses of the installed CLI, killed with SIGKILL (no chance to
clean up), resumed by the next process. The longer sweep with its figures
is ``benchmarks/faults.py``.
"""

import os
import subprocess
import time

import pytest

from tests import faults


@pytest.fixture(scope="module")
def uninterrupted(cli_search):
    proc, run = cli_search
    assert faults.finished(proc.returncode, proc.stdout + proc.stderr), proc.stderr
    return run, proc.returncode


def test_kills_in_every_phase_resume_to_the_same_result(uninterrupted, tmp_path):
    whole, whole_code = uninterrupted
    # one kill in each phase, at fixed delays after it began
    plan = [("one-shot", 0.8), ("reference", 0.3), ("second sample", 0.5),
            ("final fine-tuning", 0.4), ("export", 0.0), ("bench", 1.0)]
    kills, code, output = faults.interrupted_run(tmp_path / "run", plan)
    assert [k["phase"] for k in kills if k["killed"]] == [p for p, _ in plan], kills
    assert all(k["code"] == -9 for k in kills if k["killed"])
    assert code == whole_code and faults.finished(code, output), output
    assert [k["redone"] for k in kills] == [[]] * len(kills), kills  # nothing finished redone
    got, want = faults.outputs(tmp_path / "run"), faults.outputs(whole)
    assert got["results"] == want["results"]
    assert got["files"].keys() == want["files"].keys() and len(got["files"]) == 4
    for name in want["files"]:
        assert got["files"][name] == want["files"][name], name


def test_second_search_on_the_same_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(faults.command(run), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.txt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(faults.command(run), capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
        assert first.poll() is None  # the first one is still running
        assert second.returncode == 2, second.stderr
        message = second.stderr.strip().splitlines()[-1]
        assert f"PID {first.pid}" in message and "--run-dir" in message, message
    finally:
        first.kill()
        first.wait()
    # the holder was killed: the kernel released its lock at once
    from mpath_tf.rundir import lock_run_dir

    with lock_run_dir(run):
        assert f"PID {os.getpid()} " in (run / ".lock").read_text()
