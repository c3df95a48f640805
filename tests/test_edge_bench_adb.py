"""edge_bench's adb target: the push / check / run / pull flow.

No Android device is available, so ``adb`` is a stand-in executable put first
on PATH (tests/fixtures/adb_standin/adb) that runs every command on this
machine, with the device's /data/local/tmp mapped into a folder; and the
pushed ``benchmark_model`` is a stand-in that prints one of the log samples of
tests/fixtures/benchmark_model (or writes a result file, or crashes). What is
real: the target's adb command lines, the pushes and checksum checks, the
parsing, the journal, and the errors.
"""

import os
from pathlib import Path

import pytest

from edge_bench import BenchSettings, Journal, get_target, measure_models
from mpath_tf.errors import ConfigError, ModelError, TargetError
from tests.test_benchmark_model_output import _result_message_class

STANDIN = Path(__file__).parent / "fixtures" / "adb_standin"
SAMPLES = Path(__file__).parent / "fixtures" / "benchmark_model"


@pytest.fixture
def device(tmp_path, monkeypatch):
    root = tmp_path / "device"
    root.mkdir()
    monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADB_STANDIN_ROOT", str(root))
    monkeypatch.setenv("ADB_STANDIN_SERIAL", "PIXEL7")
    monkeypatch.setenv("STANDIN_OUTPUT", str(SAMPLES / "classic_tf2.txt"))
    return root


def adb_target(serial="PIXEL7"):
    return get_target(f"adb:{serial}", benchmark_model=str(STANDIN / "benchmark_model"))


def test_model_is_pushed_checked_run_and_the_log_parsed(device, tflite_models):
    row = adb_target().measure(tflite_models[2], BenchSettings(threads=2, cpus=(0,), xnnpack=True))
    assert row["status"] == "ok" and row["target"] == "adb:PIXEL7"
    assert row["device"]["model"] == "Pixel 7" and row["device"]["abi"] == "arm64-v8a"
    assert row["tool"] == "tflite-benchmark_model" and len(row["tool_sha256"]) == 64
    assert row["stats"]["mean_us"] == pytest.approx(56.8114) and row["stats"]["runs"] == 17571
    assert row["stats"]["p90_us"] is None and row["times_us"] is None  # the tool gives no per-run times
    pushed = device / "data/local/tmp/mpath_tf" / f"{row['model_sha256'][:16]}.tflite"
    assert pushed.read_bytes() == tflite_models[2].read_bytes()
    args = (device / "data/local/tmp/mpath_tf/last_args").read_text().split()
    assert "--num_threads=2" in args and "--use_xnnpack=true" in args and "--num_runs=50" in args
    assert "--warmup_min_secs=0.5" in args and any(a.startswith("--result_file_path=") for a in args)
    # "Replacing 306 out of 309 node(s) ... yielding 4 partitions" in the log:
    assert row["delegate"] == {"delegated_nodes": 306, "nodes": 309,
                               "delegate": "TfLiteXNNPackDelegate", "partitions": 4}
    assert any("reference kernels" in w for w in row["warnings"])


def test_result_file_is_preferred_to_the_log(device, tflite_models, tmp_path, monkeypatch):
    result = _result_message_class()()
    result.latency_metrics.avg_ms, result.latency_metrics.median_ms = 0.0421, 0.0409
    result.misc_metrics.num_runs = 30000
    (tmp_path / "result.pb").write_bytes(result.SerializeToString())
    monkeypatch.setenv("STANDIN_RESULT_PB", str(tmp_path / "result.pb"))
    monkeypatch.setenv("STANDIN_OUTPUT", str(SAMPLES / "litert_block.txt"))  # too coarse alone
    row = adb_target().measure(tflite_models[2])
    assert row["tool"] == "benchmark_model-result_file"
    assert row["stats"]["median_us"] == pytest.approx(40.9, rel=1e-5) and row["stats"]["runs"] == 30000


@pytest.mark.parametrize("env, message", [
    pytest.param({"STANDIN_CRASH": "1"}, r"benchmark_model failed on paths-2.tflite \(exit 139\)", id="crash"),
    pytest.param({"STANDIN_OUTPUT": str(SAMPLES / "litert_block.txt")}, "too coarse", id="coarse"),
    pytest.param({"ADB_STANDIN_CORRUPT_PUSH": "1"}, "arrived corrupted", id="flipped-byte"),
])
def test_model_failures_name_target_and_model(device, tflite_models, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelError, match=rf"adb:PIXEL7: .*{message}"):
        adb_target().measure(tflite_models[2])


def test_disconnect_mid_run_keeps_what_was_measured(device, tflite_models, tmp_path, monkeypatch):
    monkeypatch.setenv("ADB_STANDIN_DISCONNECT_AFTER", "1")
    journal = Journal(tmp_path / "latency.jsonl")
    jobs = [({"paths": b}, tflite_models[b]) for b in (1, 2, 12)]
    with pytest.raises(TargetError, match="adb:PIXEL7: .*not connected"):
        measure_models(adb_target(), jobs, journal, log=lambda *_: None)
    kept = Journal(tmp_path / "latency.jsonl").rows()
    assert [r["paths"] for r in kept] == [1] and kept[0]["status"] == "ok"


def test_unknown_serial_and_missing_binary(device, tflite_models):
    with pytest.raises(TargetError, match="adb:OTHER: no such device ready"):
        adb_target("OTHER").measure(tflite_models[1])
    with pytest.raises(ConfigError, match="needs the benchmark_model binary"):
        get_target("adb")
    with pytest.raises(ConfigError, match="Unknown target 'adb;x'"):
        get_target("adb;x")
