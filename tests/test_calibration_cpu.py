"""Lowering calibration per CPU: tables record the CPU they were measured on,
`auto` takes this CPU's own table (bundled or cached) and says when it has
none; a short local calibration fills the cache."""

import json

import pytest

from converters import calibration
from converters.profiling import calibrate_this_cpu
from converters.calibration import (
    calibration_source,
    cpu_key,
    load_calibration,
    own_table_path,
)
from converters.tflite import lowering_plan
from mpath_tf import build_supernet, derive

OTHER_CPU = {"machine": "x86_64", "cpu_model": "Imaginary CPU 9000", "cpu_isa": ["sse4_2"]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MPATH_TF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "calibration"


def test_this_cpu_is_described_with_its_simd_features():
    device = calibration.this_cpu()
    assert device["cpu_model"] and device["cpu_count"] >= 1
    flags = open("/proc/cpuinfo").read()
    for flag in device["cpu_isa"]:  # each one really listed by the kernel
        assert f" {flag}" in flags
    assert cpu_key(device).startswith(device["machine"].lower())


def test_a_cpu_without_a_table_is_told_which_one_auto_used(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(calibration, "this_cpu", lambda: OTHER_CPU)
    assert own_table_path() is None
    source = calibration_source()
    assert not source["own"] and source["cpu"] == "x86_64-imaginary-cpu-9000-sse4_2"
    assert source["table"] == str(calibration.BUNDLED)

    from click.testing import CliRunner

    from mpath_tf.cli import cli
    from mpath_tf.storage import atomic_save_model

    model = tmp_path / "m.keras"
    atomic_save_model(derive(build_supernet((6,), 2, 3, 8, seed=0), 3), model)
    result = CliRunner().invoke(cli, ["export", str(model)])
    assert result.exit_code == 0, result.output
    assert ("lowering auto: no calibration table of this CPU (x86_64-imaginary-cpu-9000-sse4_2)"
            in result.output and "--calibrate" in result.output)
    report = json.loads((tmp_path / "m_float32.tflite.json").read_text())
    assert report["calibration_source"]["own"] is False


def test_a_short_calibration_is_cached_and_then_used(cache):
    path = calibrate_this_cpu("float32", width=8, paths=(1, 2, 4), conv_channels=8,
                              conv_paths=(1, 8), log=lambda *_: None)
    key = cpu_key(calibration.this_cpu())
    assert path == cache / f"{key}.json"
    table = json.loads(path.read_text())
    assert table["device"]["cpu_isa"] == calibration.this_cpu()["cpu_isa"]
    assert {l["lowering"] for l in table["layers"]} == {"per_path", "batch_matmul", "conv"}
    assert {(l["lowering"], len(l["path_widths"])) for l in table["conv_layers"]} == {
        ("grouped", 1), ("grouped", 8), ("split", 8)}
    assert own_table_path("float32") == path and load_calibration(None, "float32") == table
    assert own_table_path("int8") is None  # a mode not calibrated here: not this CPU's own
    calibrate_this_cpu("int8", width=8, paths=(1, 2), conv_channels=0,
                       log=lambda *_: None)  # added, not replaced
    table = json.loads(path.read_text())
    modes = {l["quantization"] for l in table["layers"]}
    assert modes == {"float32", "int8"} and own_table_path("int8") == path
    assert {l["quantization"] for l in table["conv_layers"]} == {"float32"}
    table = load_calibration(None, "float32")
    plan = lowering_plan(derive(build_supernet((6,), 2, 3, 8, seed=0), 3), "float32", "auto")
    assert plan["calibration_source"] == {"table": str(path), "cpu": key, "table_cpu": key,
                                          "own": True}
