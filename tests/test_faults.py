"""The installed CLI's search as a real subprocess: it prints only its own
lines on stderr unless --verbose, and SIGKILL at any moment resumes to the
same result; one process per run.

TensorFlow, the TFLite converter and the LiteRT interpreter write from C++
straight to file descriptor 2, so quietness is checked on a subprocess of
the console script, never through CliRunner. Killed processes get SIGKILL
(no chance to clean up) and are resumed by the next process. The longer
sweep with its figures is ``benchmarks/faults.py``. Both share one
uninterrupted search (``cli_search``), made once for this file.
"""

import json
import os
import re
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
    # one kill in each phase, at fixed delays after it began (or right after an
    # epoch's checkpoint: a training killed with finished epochs); the dense
    # reference resumes through the same checkpoints as the one-shot training
    # and is killed in benchmarks/faults.py's sweep
    plan = [("one-shot epoch", 0.0), ("sample epoch", 0.0), ("final fine-tuning", 0.4),
            ("export", 0.0), ("bench", 0.3)]
    kills, code, output = faults.interrupted_run(tmp_path / "run", plan)
    assert [k["phase"] for k in kills if k["killed"]] == [p for p, _ in plan], kills
    assert all(k["code"] == -9 for k in kills if k["killed"])
    assert code == whole_code and faults.finished(code, output), output
    assert [k["redone"] for k in kills] == [[]] * len(kills), kills  # nothing finished redone
    assert [k["not_resumed"] for k in kills] == [[]] * len(kills), kills  # from the last epoch
    assert any(k["done_before"].get("epochs") for k in kills), kills  # (some were mid-training)
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
    from mpath_tf.pipeline.rundir import lock_run_dir

    with lock_run_dir(run):
        assert f"PID {os.getpid()} " in (run / ".lock").read_text()


@pytest.mark.parametrize("args, message", [
    pytest.param(["--learning-rate", "inf"], "--learning-rate must be a finite number > 0",
                 id="lr-inf"),
    pytest.param(["--finetune-learning-rate", "nan"],
                 "--finetune-learning-rate must be a finite number > 0", id="ft-lr-nan"),
    pytest.param(["--max-latency-ms", "inf"], "--max-latency-ms must be a finite number > 0",
                 id="latency-inf"),
    pytest.param(["--samples", "0"], "--samples must be >= 2", id="samples"),
    pytest.param(["--bench-seconds", "0"], "--bench-seconds must be a finite number > 0",
                 id="bench-seconds"),
    pytest.param(["--batch-size", "0"], "--batch-size must be >= 1", id="batch-size"),
])
def test_non_finite_and_out_of_range_options_exit_2_naming_the_option(args, message, tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["search", *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_diverging_training_stops_with_exit_1_and_the_usual_causes(tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", "--no-bench", "--no-reference", "--depth", "2",
                                      "--width", "4", "--epochs", "3", "--samples", "2",
                                      "--learning-rate", "1e30", "--run-dir", str(run)])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert "Training diverged: the loss became nan in epoch 1 at learning rate 1e+30" in last
    assert "try 1e+29" in last and "Traceback" not in result.output
    assert not (run / "supernet.keras").exists()  # no NaN model kept as a result
    assert not list((run / "checkpoints").glob("*/latest.weights.h5"))  # nor checkpointed


# Progress lines: "[one-shot training] 1 step x 2 epochs", "[sample fine-tuning] 1/2 (2 paths)".
PROGRESS = re.compile(r"^\[[a-z0-9 -]+\] ")




@pytest.fixture(scope="module")
def quiet_run(cli_search):
    return cli_search  # a small search through every phase (tests/faults.py)


def test_search_stderr_holds_only_mpath_tf_lines(quiet_run):
    proc, run = quiet_run
    # exit 1 (and a FAILED line) only if the tiny model's int8 file misses its gates
    assert proc.returncode in (0, 1), proc.stderr
    ours = {line.split(" ", 1)[1] for line in (run / "log.txt").read_text().splitlines()}
    # the run converts to int8, runs LiteRT and times files in subprocesses:
    # the chattiest steps; and its closing lines compare with the dense MLP
    assert any("model_int8.tflite" in line for line in ours)
    assert any(line.startswith("dense reference: test accuracy") for line in ours)
    assert any(line.startswith("speed on this machine: int8: ") for line in ours)
    speed = json.loads((run / "results.json").read_text())["speed"]
    seconds = float(faults.ARGS[faults.ARGS.index("--bench-seconds") + 1])
    assert speed["settings"]["min_secs"] == seconds  # --bench-seconds reached the timing
    assert any("FAILED" in line for line in ours) == (proc.returncode == 1)
    foreign = [line for line in proc.stderr.splitlines()  # click prints our errors as "Error: "
               if line and line not in ours and not PROGRESS.match(line)
               and not line.startswith("Error: the chosen model's ")]
    assert foreign == [], "\n".join(foreign)


def test_verbose_brings_the_libraries_lines_back(quiet_run, tmp_path):
    _, run = quiet_run
    proc = subprocess.run(
        faults.cli() + ["export", str(run / "model.keras"), "--quantize", "int8", "--verbose",
                  "--output", str(tmp_path / "m.tflite")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (tmp_path / "m.tflite").is_file(), proc.stderr
    lines = proc.stderr.splitlines()
    assert any("tensorflow" in line.lower() or "fully_quantize" in line or "XNNPACK" in line
               for line in lines), proc.stderr
