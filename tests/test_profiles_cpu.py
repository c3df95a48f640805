"""Lowering profiles per CPU: tables record the CPU they were measured on,
`auto` takes this CPU's own table (bundled or cached) and says when it has
none; a short local profile fills the cache."""

import json
import warnings

import pytest

from converters import profiles
from converters.profiling import profile_this_cpu
from converters.profiles import (
    profile_source,
    cpu_key,
    load_profile,
    own_table_path,
)
from converters.tflite import lowering_plan
from mpath_tf import build_supernet, derive

OTHER_CPU = {"machine": "x86_64", "cpu_model": "Imaginary CPU 9000", "cpu_isa": ["sse4_2"]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MPATH_TF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "profiles"


def test_this_cpu_is_described_with_its_simd_features():
    device = profiles.this_cpu()
    assert device["cpu_model"] and device["cpu_count"] >= 1
    flags = open("/proc/cpuinfo").read()
    for flag in device["cpu_isa"]:  # each one really listed by the kernel
        assert f" {flag}" in flags
    assert cpu_key(device).startswith(device["machine"].lower())


def test_a_cpu_without_a_table_is_told_which_one_auto_used(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(profiles, "this_cpu", lambda: OTHER_CPU)
    assert own_table_path() is None
    source = profile_source()
    assert not source["own"] and source["cpu"] == "x86_64-imaginary-cpu-9000-sse4_2"
    assert source["table"] == str(profiles.BUNDLED)

    from click.testing import CliRunner

    from mpath_tf.cli import cli
    from mpath_tf.storage import atomic_save_model

    model = tmp_path / "m.keras"
    atomic_save_model(derive(build_supernet((6,), 2, 3, 8, seed=0), 3), model)
    result = CliRunner().invoke(cli, ["export", str(model)])
    assert result.exit_code == 0, result.output
    assert ("lowering auto: no lowering profile of this CPU (x86_64-imaginary-cpu-9000-sse4_2)"
            in result.output and "--profile-cpu" in result.output)
    report = json.loads((tmp_path / "m_float32.tflite.json").read_text())
    assert report["profile_source"]["own"] is False


def test_a_short_calibration_is_cached_and_then_used(cache):
    path = profile_this_cpu("float32", width=8, paths=(1, 2, 4), conv_channels=8,
                              conv_paths=(1, 8), log=lambda *_: None)
    key = cpu_key(profiles.this_cpu())
    assert path == cache / f"{key}.json"
    table = json.loads(path.read_text())
    assert table["device"]["cpu_isa"] == profiles.this_cpu()["cpu_isa"]
    assert {l["lowering"] for l in table["layers"]} == {"per_path", "batch_matmul", "conv"}
    assert {(l["lowering"], len(l["path_widths"])) for l in table["conv_layers"]} == {
        ("grouped", 1), ("grouped", 8), ("split", 8)}
    assert own_table_path("float32") == path and load_profile(None, "float32") == table
    assert own_table_path("int8") is None  # a mode not calibrated here: not this CPU's own
    profile_this_cpu("int8", width=8, paths=(1, 2), conv_channels=0,
                       log=lambda *_: None)  # added, not replaced
    table = json.loads(path.read_text())
    modes = {l["quantization"] for l in table["layers"]}
    assert modes == {"float32", "int8"} and own_table_path("int8") == path
    assert {l["quantization"] for l in table["conv_layers"]} == {"float32"}
    table = load_profile(None, "float32")
    plan = lowering_plan(derive(build_supernet((6,), 2, 3, 8, seed=0), 3), "float32", "auto")
    assert plan["profile_source"] == {"table": str(path), "cpu": key, "table_cpu": key,
                                          "own": True}


def test_a_table_cached_by_an_earlier_version_is_still_found(cache, monkeypatch):
    """Before they were lowering profiles the per-CPU tables were cached in
    ``calibration/`` under another format name: both are read."""
    monkeypatch.setattr(profiles, "this_cpu", lambda: OTHER_CPU)
    table = {**json.loads(profiles.BUNDLED.read_text()), "device": OTHER_CPU,
             "format": "mpath-tf-lowering-calibration"}
    old = cache.with_name("calibration") / f"{cpu_key(OTHER_CPU)}.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(table))
    assert own_table_path() == old and load_profile() == table


def test_the_earlier_command_and_option_names_still_work(tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli
    from mpath_tf.storage import atomic_save_model

    runner = CliRunner()
    assert " profile " in runner.invoke(cli, ["--help"]).output
    assert " calibrate " not in runner.invoke(cli, ["--help"]).output  # hidden
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # click warns of an option given twice
        for name in ("profile", "calibrate"):
            shown = runner.invoke(cli, [name, "--help"])
            assert shown.exit_code == 0, shown.exception
            assert shown.output.count("--verbose") == 1 and "--conv-channels" in shown.output
    model = tmp_path / "m.keras"
    atomic_save_model(derive(build_supernet((6,), 2, 3, 8, seed=0), 3), model)
    result = runner.invoke(cli, ["export", str(model), "--calibration", str(profiles.BUNDLED)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m_float32.tflite.json").read_text())
    assert report["profile"] == str(profiles.BUNDLED)
