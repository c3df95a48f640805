"""``mpath-tf bench`` on a real tiny run, and the analysis behind its verdict."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_bench.analysis import LatencyModel, choose_fit_paths, proxy_verdict
from mpath_tf.pipeline.bench import fully_connected_ops, predict_latency
from mpath_tf.cli import cli
from mpath_tf.errors import RunDirError

QUICK = ["--runs", "20", "--min-secs", "0.05", "--warmup-min-secs", "0", "--repeats", "1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_bench_writes_table_plot_verdict_and_resumes(tiny_run):
    result = invoke("bench", tiny_run, "--paths", "1,2,3,6", *QUICK)
    assert result.exit_code == 0, result.output
    out = tiny_run / "bench" / "local"
    rows = list(csv.DictReader((out / "latency.csv").open()))
    assert len(rows) == 3 * 5  # (dense + 4 path counts) x 3 quantizations
    assert {r["quantization"] for r in rows} == {"float32", "dynamic", "int8"}
    assert all(r["status"] == "ok" and float(r["median_us"]) > 0 for r in rows)
    dense = next(r for r in rows if r["kind"] == "dense" and r["quantization"] == "float32")
    one = next(r for r in rows if r["paths"] == "1" and r["kind"] == "mpath" and r["quantization"] == "float32")
    assert dense["parameters"] == one["parameters"]  # one path is the dense MLP's shape
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    verdict = json.loads((out / "verdict.json").read_text())
    assert set(verdict["proxy"]) == {"float32", "dynamic", "int8"}
    for entry in verdict["proxy"].values():
        assert -1 <= entry["pearson"] <= 1 and entry["fastest_paths"] in (1, 2, 3, 6)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["runs"] == 20 and "tensorflow" in settings["versions"]
    model = json.loads((out / "latency_model.json").read_text())
    assert set(model["models"]) == {"float32", "dynamic", "int8"}

    predicted = predict_latency(tiny_run, "local", "int8")
    assert sorted(predicted) == [1, 2, 3, 4, 5, 6] and all(v > 0 for v in predicted.values())
    with pytest.raises(RunDirError, match="no float16 latency model"):
        predict_latency(tiny_run, "local", "float16")

    journal = (out / "latency.jsonl").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (tiny_run / "bench" / "models").iterdir()}
    again = invoke("bench", tiny_run, "--paths", "1,2,3,6", *QUICK)
    assert again.exit_code == 0, again.output
    assert ".tflite: median" not in again.output  # nothing timed again
    assert "  exporting" not in again.output  # nothing exported again
    assert (out / "latency.jsonl").read_text() == journal
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


@pytest.mark.parametrize("args, message", [
    pytest.param(["--paths", "0,7"], r"--paths must be in \[1, 6\]", id="paths"),
    pytest.param(["--target", "bluetooth"], "Unknown target 'bluetooth'", id="target"),
    pytest.param(["--quantization", "int4"], "--quantization must be among", id="quantization"),
    pytest.param(["--runs", "0"], "runs must be >= 1", id="runs"),
    pytest.param(["--repeats", "0"], "repeats must be >= 1", id="repeats"),
    pytest.param(["--target", "adb"], "needs the benchmark_model binary", id="adb-binary"),
    pytest.param(["--paths", "a,b"], "comma-separated integers", id="paths-syntax"),
])
def test_bad_input_exits_2_with_the_fix(tiny_run, args, message):
    result = invoke("bench", tiny_run, *args)
    assert result.exit_code == 2
    assert message.replace("\\", "") in result.output or __import__("re").search(message, result.output)


def test_bench_needs_a_run_directory(tmp_path):
    result = invoke("bench", tmp_path)
    assert result.exit_code == 2 and "not an mpath-tf run directory" in result.output


def _rows(latency, quantization="float32", kind="mpath", params=None, ops=None):
    rows = []
    for i, (b, us) in enumerate(latency.items()):
        rows.append({
            "status": "ok", "kind": kind, "paths": b, "quantization": quantization,
            "parameters": params[i] if params else 1000 // b,
            "delegate": {"ops": {"FULLY_CONNECTED": ops[i] if ops else b}},
            "stats": {"median_us": us, "median_ci_low_us": us * 0.99},
        })
    return rows


def test_latency_model_recovers_a_linear_cost_and_predicts_held_out_counts():
    paths = [1, 2, 4, 8, 16, 32, 64, 128]
    params = [100_000 // b + 500 for b in paths]
    ops = [3 * b + 4 for b in paths]
    truth = {b: 5.0 + 2e-3 * p + 0.25 * o for b, p, o in zip(paths, params, ops)}
    rows = _rows(truth, params=params, ops=ops)
    model = LatencyModel.fit_rows(rows, count=5)["float32"]
    assert model.fit_paths_ == [1, 4, 8, 32, 128] or len(model.fit_paths_) == 5
    np.testing.assert_allclose(model.coef_, [5.0, 2e-3, 0.25], rtol=1e-6)
    result = model.evaluate(rows)
    assert result["held_out"] == 3 and result["hit_rate_10pct"] == 1.0
    assert LatencyModel.from_dict(model.to_dict()).coef_ == model.coef_


def test_choose_fit_paths_spreads_on_a_log_scale():
    assert choose_fit_paths([1, 2, 3, 4, 5, 6, 8, 10, 16, 32, 64], 4) == [1, 4, 16, 64]
    assert choose_fit_paths([3, 5], 5) == [3, 5]


def test_proxy_verdict_finds_where_latency_stops_falling():
    # Parameters fall with paths; latency falls until 8 paths, then rises.
    latency = {1: 100.0, 2: 60.0, 4: 40.0, 8: 30.0, 16: 35.0, 32: 50.0}
    rows = _rows(latency) + _rows({1: 110.0}, kind="dense")
    verdict = proxy_verdict(rows)["float32"]
    assert verdict["fastest_paths"] == 8 and verdict["stops_falling_after_paths"] == 8
    assert verdict["spearman"] < 1  # the proxy is not monotone here
    assert verdict["fastest_speedup_vs_dense"] == pytest.approx(110 / 30)
    assert verdict["most_paths_vs_fastest"] == pytest.approx(50 / 30)
    monotone = proxy_verdict(_rows({1: 100.0, 2: 60.0, 4: 40.0}))["float32"]
    assert monotone["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("paths", [1, 3, 7])
def test_fc_op_count_of_the_architecture_matches_the_exported_file(paths, tmp_path):
    from converters import export_tflite, op_summary
    from mpath_tf import build_supernet, derive

    model = derive(build_supernet((16,), 3, depth=4, width=7, seed=0), paths)
    exported = export_tflite(model, tmp_path / "m.tflite")
    assert fully_connected_ops(model) == 3 * paths + 2
    assert op_summary(exported)["ops"]["FULLY_CONNECTED"] == fully_connected_ops(model)


def test_bench_with_another_lowering(tiny_run):
    result = invoke("bench", tiny_run, "--paths", "3", "--quantization", "float32",
                    "--lowering", "conv", *QUICK)
    assert result.exit_code == 0, result.output
    # each lowering has its own folder, so its verdict is about that lowering alone
    rows = list(csv.DictReader((tiny_run / "bench" / "local-conv" / "latency.csv").open()))
    assert [(r["model"], r["chosen_lowering"]) for r in rows] == [
        ("dense_float32.tflite", "dense"), ("paths-3_conv_float32.tflite", "conv")]
    bad = invoke("bench", tiny_run, "--paths", "3", "--lowering", "fast", *QUICK)
    assert bad.exit_code == 2 and "Unknown lowering 'fast'" in bad.output
