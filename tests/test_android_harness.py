"""The android_harness scripts, run with the stand-in adb of
tests/fixtures/adb_standin (no phone is attached where tests run)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "fixtures" / "adb_standin"


def run(script, *args, env=None):
    return subprocess.run(["bash", str(ROOT / "android_harness" / script), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def standin_env(tmp_path):
    (tmp_path / "device").mkdir(exist_ok=True)
    # The stand-in adb first; then this Python's bin folder, where mpath-tf is.
    path = os.pathsep.join([str(STANDIN), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**os.environ, "PATH": path,
            "ADB_STANDIN_ROOT": str(tmp_path / "device"), "ADB_STANDIN_SERIAL": "PIXEL7"}


def test_device_info_lists_the_phone_and_its_cores(tmp_path):
    result = run("device_info.sh", "PIXEL7", env=standin_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "[ro.product.model]: [Pixel 7]" in result.stdout
    assert "cpu0 max_khz=" in result.stdout


def test_device_info_without_the_phone_exits_2(tmp_path):
    result = run("device_info.sh", "NOPE", env=standin_env(tmp_path))
    assert result.returncode == 2 and "No device ready with serial NOPE" in result.stderr


def test_bench_phone_runs_mpath_tf_bench_on_the_phone(tmp_path, tiny_run):
    env = {**standin_env(tmp_path),
           "STANDIN_OUTPUT": str(ROOT / "tests/fixtures/benchmark_model/classic_tf2.txt")}
    result = run("bench_phone.sh", tiny_run, STANDIN / "benchmark_model", "PIXEL7", "--",
                 "--quantization", "float32", "--paths", "1,2,6", "--repeats", "1", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (tiny_run / "bench" / "adb-PIXEL7" / "latency.csv").read_text().splitlines()
    assert len(lines) == 1 + 4


def test_bench_phone_without_a_binary_exits_2(tmp_path, tiny_run):
    result = run("bench_phone.sh", tiny_run, tmp_path / "missing", env=standin_env(tmp_path))
    assert result.returncode == 2 and "not found" in result.stderr
