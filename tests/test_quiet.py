"""The installed CLI prints only its own lines on stderr unless --verbose.

TensorFlow, the TFLite converter and the LiteRT interpreter write from C++
straight to file descriptor 2, so this is checked on a real subprocess of
the console script, never through CliRunner.
"""

import re
import subprocess

import pytest

from tests import faults

# Progress lines: "[one-shot training] 1 step x 2 epochs", "[sample fine-tuning] 1/2 (2 paths)".
PROGRESS = re.compile(r"^\[[a-z0-9 -]+\] ")


_cli = faults.cli


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
    assert any("FAILED" in line for line in ours) == (proc.returncode == 1)
    foreign = [line for line in proc.stderr.splitlines()  # click prints our errors as "Error: "
               if line and line not in ours and not PROGRESS.match(line)
               and not line.startswith("Error: the chosen model's ")]
    assert foreign == [], "\n".join(foreign)


def test_verbose_brings_the_libraries_lines_back(quiet_run, tmp_path):
    _, run = quiet_run
    proc = subprocess.run(
        _cli() + ["export", str(run / "model.keras"), "--quantize", "int8", "--verbose",
                  "--output", str(tmp_path / "m.tflite")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (tmp_path / "m.tflite").is_file(), proc.stderr
    lines = proc.stderr.splitlines()
    assert any("tensorflow" in line.lower() or "fully_quantize" in line or "XNNPACK" in line
               for line in lines), proc.stderr
