"""edge_bench on this machine: the real LiteRT interpreter on real exported
models, each timed in its own process."""

import json
import os
import stat
import sys

import numpy as np
import pytest

from edge_bench import BenchSettings, Journal, LocalTarget, measure_models, median_ci, summarize
from edge_bench.agent import delegation
from mpath_tf.errors import ConfigError, ModelError, TargetError
from tests.conftest import FAST


@pytest.fixture(scope="module")
def target():
    return LocalTarget()


def test_row_records_device_model_settings_and_every_run(target, tflite_models):
    settings = BenchSettings(**FAST, cpus=(0,))
    row = target.measure(tflite_models[2], settings)
    stats = row["stats"]
    assert row["status"] == "ok" and row["target"] == "local"
    assert row["runtime"] == "ai-edge-litert" and row["runtime_version"]
    assert row["device"]["cpu_count"] == os.cpu_count()
    assert len(row["model_sha256"]) == 64 and row["settings"]["cpus"] == [0]
    assert len(row["times_us"]) == stats["runs"] >= settings.runs
    assert stats["min_us"] <= stats["median_ci_low_us"] <= stats["median_us"]
    assert stats["median_us"] <= stats["median_ci_high_us"] <= stats["max_us"]
    assert stats["median_us"] <= stats["p90_us"] <= stats["max_us"]
    assert row["init_us"] > 0 and row["first_us"] > 0
    assert "state_before" in row and "suspect" in row


def test_delegate_partitions_and_fallback_are_reported(target, tflite_models, tmp_path):
    one_path = target.measure(tflite_models[1], BenchSettings(**FAST))["delegate"]
    assert one_path["partitions"] == 1 and one_path["undelegated_ops"] == {}
    # 12 paths lowered per path: the concatenation tree keeps one partition.
    many = target.measure(tflite_models[12], BenchSettings(**FAST))
    assert many["delegate"]["partitions"] == 1 and many["warnings"] == []
    # int8 BATCH_MATMUL: XNNPACK refuses its constant operand (non-zero zero
    # point), so it falls back to the reference kernel and splits the graph.
    from converters import Int8, export_tflite
    from mpath_tf import build_supernet, derive

    model = derive(build_supernet((64,), 10, depth=3, width=12, seed=0), 3)
    data = np.random.default_rng(0).random((50, 64), dtype="float32")
    refused = export_tflite(model, tmp_path / "bmm.tflite", Int8(), data, lowering="batch_matmul")
    row = target.measure(refused, BenchSettings(**FAST))
    assert row["delegate"]["undelegated_ops"].get("BATCH_MATMUL", 0) >= 1
    assert row["delegate"]["partitions"] > 1
    assert any("reference kernels" in w and "BATCH_MATMUL" in w for w in row["warnings"])
    plain = target.measure(tflite_models[12], BenchSettings(**FAST, xnnpack=False))["delegate"]
    assert plain["partitions"] == 0 and plain["undelegated_ops"] == plain["ops"]


def test_delegation_follows_partition_boundaries():
    # op0 -> t1 -> op1 -> t2 (partition output); op2 reads t2 and is not delegated.
    ops = [
        {"index": 0, "op_name": "FULLY_CONNECTED", "inputs": [0, 10], "outputs": [1]},
        {"index": 1, "op_name": "RELU", "inputs": [1], "outputs": [2]},
        {"index": 2, "op_name": "CONCATENATION", "inputs": [2, 2], "outputs": [3]},
        {"index": 3, "op_name": "DELEGATE", "inputs": [0, 10], "outputs": [2]},
    ]
    result = delegation(ops)
    assert result["partitions"] == 1
    assert result["delegated_ops"] == {"FULLY_CONNECTED": 1, "RELU": 1}
    assert result["undelegated_ops"] == {"CONCATENATION": 1}


@pytest.mark.parametrize("damage, message", [
    pytest.param(lambda data: data[: len(data) // 3], "cannot load", id="truncated"),
    pytest.param(lambda data: b"not a flatbuffer", "cannot load", id="garbage"),
])
def test_corrupt_model_fails_with_target_and_model_named(target, tflite_models, tmp_path, damage, message):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(damage(tflite_models[2].read_bytes()))
    with pytest.raises(ModelError, match=rf"local: .*broken.tflite.*{message}"):
        target.measure(bad, BenchSettings(**FAST))


def test_input_shape_that_does_not_match_the_model(target, tflite_models):
    with pytest.raises(ModelError, match=r"expects inputs of shape \[64\].*received input shape \[3\]"):
        target.measure(tflite_models[2], BenchSettings(**FAST, input_shape=(1, 3)))
    row = target.measure(tflite_models[2], BenchSettings(**FAST, input_shape=(4, 64)))
    assert row["input_shape"] == [4, 64]


def test_runtime_crash_and_hang_are_model_failures(tflite_models, tmp_path):
    crashing = tmp_path / "python-that-segfaults"
    crashing.write_text("#!/bin/sh\ncase \"$2\" in describe) exec %s \"$@\";; esac\nkill -SEGV $$\n"
                        % sys.executable)
    crashing.chmod(crashing.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ModelError, match=r"crashed on paths-2.tflite \(signal 11\)"):
        LocalTarget(python=str(crashing)).measure(tflite_models[2], BenchSettings(**FAST))
    with pytest.raises(TargetError, match="local: cannot run Python '/no/such/python'"):
        LocalTarget(python="/no/such/python").measure(tflite_models[2], BenchSettings(**FAST))
    slow = BenchSettings(runs=1, min_secs=30, warmup_min_secs=0, timeout_s=3)
    with pytest.raises(ModelError, match="did not finish in 3 s"):
        LocalTarget().measure(tflite_models[2], slow)


def test_journal_resumes_and_keeps_failures(target, tflite_models, tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"xx")
    jobs = [({"paths": 1}, tflite_models[1]), ({"paths": 99}, bad), ({"paths": 2}, tflite_models[2])]
    journal_path = tmp_path / "latency.jsonl"
    first = measure_models(target, jobs, Journal(journal_path), BenchSettings(**FAST), log=lambda *_: None)
    assert [r["status"] for r in first] == ["ok", "failed", "ok"]
    assert "broken.tflite" in first[1]["error"]
    saved = journal_path.read_text()
    assert [json.loads(line)["paths"] for line in saved.splitlines()] == [1, 99, 2]
    assert all(json.loads(line)["key"].endswith("|try0") for line in saved.splitlines())

    class NoMeasuring(LocalTarget):
        def measure(self, *args, **kwargs):
            raise AssertionError("a finished model was measured again")

    again = measure_models(NoMeasuring(), jobs, Journal(journal_path), BenchSettings(**FAST),
                           log=lambda *_: None)
    assert again == first and journal_path.read_text() == saved
    # Other settings are other measurements.
    other = BenchSettings(**{**FAST, "threads": 2})
    rows = measure_models(target, jobs[:1], Journal(journal_path), other, log=lambda *_: None)
    assert rows[0]["settings"]["threads"] == 2 and len(Journal(journal_path).rows()) == 4


def test_repeated_tries_report_the_median_try_and_resume(target, tflite_models, tmp_path):
    journal_path = tmp_path / "latency.jsonl"
    jobs = [({"paths": 2}, tflite_models[2])]
    quiet = lambda *_: None  # noqa: E731
    row = measure_models(target, jobs, Journal(journal_path), BenchSettings(**FAST), repeats=2,
                         log=quiet)[0]
    assert len(row["repeat_medians_us"]) == 2 and row["repeat_spread"] >= 0
    assert row["stats"]["median_us"] == min(row["repeat_medians_us"])  # lower middle of two
    assert len(Journal(journal_path).rows()) == 2
    more = measure_models(target, jobs, Journal(journal_path), BenchSettings(**FAST), repeats=3,
                          log=quiet)[0]
    assert more["repeat_medians_us"][:2] == row["repeat_medians_us"]  # the first two kept
    assert len(Journal(journal_path).rows()) == 3
    with pytest.raises(ConfigError, match="`repeats` must be >= 1"):
        measure_models(target, jobs, Journal(journal_path), repeats=0)


def test_tries_that_disagree_are_suspect():
    from edge_bench.runner import combine_tries

    tries = [{"status": "ok", "stats": {"median_us": m}, "warnings": [], "suspect": False}
             for m in (10.0, 10.2, 10.1)]
    assert combine_tries(tries)["suspect"] is False
    assert combine_tries(tries)["stats"]["median_us"] == 10.1
    tries[1]["stats"] = {"median_us": 12.0}
    combined = combine_tries(tries)
    assert combined["suspect"] and "disagree by 20.0%" in combined["warnings"][0]


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"runs": 0}, "`runs` must be >= 1", id="runs"),
    pytest.param({"threads": 0}, "`threads` must be >= 1", id="threads"),
    pytest.param({"min_secs": -1}, "`min_secs` must be >= 0. Received: min_secs=-1", id="min_secs"),
    pytest.param({"timeout_s": 0}, "`timeout_s` must be > 0", id="timeout"),
    pytest.param({"cpus": (-1,)}, "`cpus` must be core numbers", id="cpus"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BenchSettings(**kwargs)


def test_median_interval_covers_the_true_median_of_skewed_times(rng):
    # Lognormal(0, 1) has median 1; the interval must cover it >= 95% of the time.
    hits = [lo <= 1.0 <= hi for lo, hi in (median_ci(rng.lognormal(0, 1, 50)) for _ in range(400))]
    assert np.mean(hits) >= 0.93
    stats = summarize([3.0, 1.0, 2.0, 100.0])
    assert stats["median_us"] == 2.5 and stats["min_us"] == 1.0 and stats["runs"] == 4
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
