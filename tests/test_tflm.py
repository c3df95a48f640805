"""TensorFlow Lite for Microcontrollers: the host target, export for TFLM,
and the emulated Cortex-M4 target (TFLM with CMSIS-NN on QEMU)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters import Int8, export_tflite
from converters.tflm import (c_array_source, op_names, strip_metadata, tflm_convert,
                             tflm_refusal, write_mcu_sources)
from edge_bench import BenchSettings, get_target
from edge_bench.mcu.build import get_core, is_built
from mpath_tf import build_mlp, build_supernet, derive
from mpath_tf.errors import ConfigError, ModelError

QUICK = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, runs=20, min_secs=0.05, timeout_s=120)


def _representative(rng_seed: int = 0, features: int = 16):
    return np.random.default_rng(rng_seed).normal(size=(64, features)).astype("float32")


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    """An int8 derived model (4 paths) and the dense MLP, exported per_path."""
    folder = tmp_path_factory.mktemp("tflm")
    x = _representative()
    derived = derive(build_supernet((16,), 4, depth=3, width=12, seed=0), 4)
    files = {"derived": export_tflite(derived, folder / "derived.tflite", Int8(), x),
             "dense": export_tflite(build_mlp((16,), 4, 3, 12), folder / "dense.tflite", Int8(), x),
             "labelled": export_tflite(derived, folder / "labelled.tflite", Int8(), x,
                                       labels=["a", "b", "c", "d"])}
    return files


def test_host_target_prepares_runs_and_matches_litert(small_int8):
    row = get_target("tflm").measure(small_int8["derived"], QUICK)
    assert row["status"] == "ok" and row["target"] == "tflm"
    assert row["runtime"] == "tflite-micro" and row["stats"]["median_us"] > 0
    # the arena is the recording allocator's total: positive, and less than the
    # 64 MB it was prepared with
    assert 0 < row["arena_bytes"] < 1 << 20
    assert row["flash_bytes"] == small_int8["derived"].stat().st_size
    # outputs on 32 seeded random inputs against LiteRT's: the same kernels' maths
    assert row["parity"]["inputs"] == 32
    assert row["parity"]["top1_agreement"] == 1.0
    assert row["parity"]["max_abs_diff"] <= 2 / 256  # float output of an int8 softmax: 2 steps


def test_host_target_arena_grows_with_the_ops_of_a_model(small_int8):
    derived = get_target("tflm").measure(small_int8["derived"], QUICK)
    dense = get_target("tflm").measure(small_int8["dense"], QUICK)
    # a per-path lowering keeps each path's output alive until the concatenation
    assert derived["arena_bytes"] > dense["arena_bytes"]


def test_metadata_is_counted_apart_and_can_be_stripped(small_int8):
    content = small_int8["labelled"].read_bytes()
    row = get_target("tflm").measure(small_int8["labelled"], QUICK)
    assert row["flash_bytes"] == len(content)
    assert row["flash_bytes_no_metadata"] < row["flash_bytes"]
    stripped = strip_metadata(content)
    assert len(stripped) < len(content)
    assert tflm_refusal(stripped) is None
    from ai_edge_litert.interpreter import Interpreter

    x = _representative(1)[:1]
    outputs = []
    for blob in (content, stripped):
        interpreter = Interpreter(model_content=blob)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def _wide_many_paths():
    """A multipath model (derive's shape: Dense, two block-diagonal layers,
    Dense) whose 12 paths have 12 distinct widths."""
    import keras

    from mpath_tf.core.layers import PathDense

    widths = list(range(1, 13))  # 78 neurons
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(sum(widths), activation="relu"),
        PathDense(widths, activation="relu"), PathDense(widths, activation="relu"),
        keras.layers.Dense(4, activation="softmax")])
    return model, widths


def test_tflm_refuses_a_concatenation_of_more_than_ten_inputs_and_says_which_op(tmp_path):
    model, widths = _wide_many_paths()
    assert len(set(widths)) > 10, widths
    path = export_tflite(model, tmp_path / "bmm.tflite", Int8(), _representative(),
                         lowering="batch_matmul")
    reason = tflm_refusal(path.read_bytes())
    assert reason is not None and "CONCATENATION" in reason
    with pytest.raises(ModelError, match="TFLM refuses bmm.tflite.*CONCATENATION"):
        get_target("tflm").measure(path, QUICK)
    with pytest.raises(ConfigError, match="TFLM refuses the file with lowering batch_matmul"):
        tflm_convert(model, Int8(), _representative(), lowering="batch_matmul", target="tflm")


def _table_preferring(lowering: str) -> dict:
    """A lowering profile whose cost model makes ``lowering`` the cheapest."""
    rows = []
    for b in (1, 2, 4, 8, 16, 32):
        for widths in ([64 // b] * b, sorted([64 // b + (1 if i < 3 else 0) for i in range(b)])):
            for name in ("per_path", "batch_matmul", "conv"):
                cost = {lowering: 1.0 + 0.01 * b, "conv": 5.0}.get(name, 10.0 + b)
                rows.append({"quantization": "int8", "lowering": name, "depth": 3,
                             "path_widths": widths, "us": cost})
    return {"format": "mpath-tf-lowering-calibration", "version": 3, "layers": rows}


def test_auto_for_tflm_never_returns_a_file_tflm_refuses():
    model, _ = _wide_many_paths()
    table = _table_preferring("batch_matmul")
    from converters import choose_lowerings

    assert set(choose_lowerings(model, "int8", "auto", table).values()) == {"batch_matmul"}
    content, record = tflm_convert(model, Int8(), _representative(), "auto", "tflm", table)
    assert tflm_refusal(content) is None
    assert record["refused"][0][0] == "batch_matmul"
    assert "CONCATENATION" in record["refused"][0][1]
    # the next cheapest by the table: conv (one grouped CONV_2D per width), which TFLM takes
    assert set(record["lowerings"].values()) == {"conv"}


@pytest.mark.parametrize("target", ["tflm", "tflm:cortex-m4", "tflm:cortex-m55"])
def test_the_bundled_tflm_tables_choose_files_tflm_prepares(target):
    """Every path count of a 64-wide stack, with the target's own table."""
    from converters.profiles import target_profile

    assert target_profile(target) is not None, f"no bundled table for {target}"
    net = build_supernet((16,), 4, depth=3, width=64, seed=1)
    for b in (8, 64):
        content, _ = tflm_convert(derive(net, b), Int8(), _representative(), "auto", target)
        assert tflm_refusal(content) is None, b


def test_c_array_compiles_and_holds_the_file(small_int8, tmp_path):
    content = small_int8["derived"].read_bytes()
    sources = write_mcu_sources(content, tmp_path, "digits")
    assert sources["ops"] == op_names(content) and "FULLY_CONNECTED" in sources["ops"]
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "digits_model_data.h"\n'
        "int main() { unsigned long sum = 0; for (unsigned i = 0; i < g_digits_len; ++i) "
        "sum = sum * 31 + g_digits[i];\n"
        'printf("%u %lu %d\\n", g_digits_len, sum, (int)(((uintptr_t)g_digits) % 16)); }\n')
    subprocess.run(["g++", "-std=c++17", "-o", str(tmp_path / "check"), str(tmp_path / "main.cc"),
                    sources["source"]], check=True, cwd=tmp_path)
    length, checksum, misalignment = subprocess.run(
        [str(tmp_path / "check")], capture_output=True, text=True, check=True).stdout.split()
    expected = 0
    for byte in content:
        expected = (expected * 31 + byte) % (1 << 64)
    assert int(length) == len(content) and int(checksum) == expected and misalignment == "0"
    resolver = open(sources["op_resolver"]).read()
    assert f"MicroMutableOpResolver<{len(sources['ops'])}>" in resolver
    assert "resolver.AddFullyConnected();" in resolver


def test_c_array_name_must_be_an_identifier():
    with pytest.raises(ConfigError, match="identifier"):
        c_array_source(b"\x00", "my model")


def test_cli_export_for_tflm_writes_the_file_c_sources_and_arena(tmp_path):
    import json

    from mpath_tf import load_dataset
    from mpath_tf.cli import cli

    digits = load_dataset("digits")
    model = derive(build_supernet(digits.input_shape, digits.num_classes, depth=3, width=16,
                                  seed=0), 4)
    model.save(tmp_path / "m.keras")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m.keras"), "--quantize", "int8",
                                      "--dataset", "digits", "--target", "tflm",
                                      "--strip-metadata", "--no-verify"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["target"] == "tflm" and report["metadata_stripped"]
    assert report["arena_bytes"] > 0 and report["tflm"]["tflm"]["parity"]["top1_agreement"] > 0.9
    assert os.path.isfile(report["mcu_sources"]["source"])
    assert (tmp_path / "m_int8.tflite").stat().st_size == report["flash_bytes"]
    bad = CliRunner().invoke(cli, ["export", str(tmp_path / "m.keras"), "--quantize", "int8",
                                   "--dataset", "digits", "--target", "esp32"])
    assert bad.exit_code == 2 and "tflm or tflm:CORE" in bad.output


# The emulated Cortex-M4: built by `mpath-tf setup mcu` (.ci/run builds it).
def _cortex_m4():
    if not is_built(get_core("cortex-m4")):
        if os.environ.get("MPATH_TF_REQUIRE_MCU"):
            pytest.fail("the Cortex-M4 runner is not built; .ci/run runs `mpath-tf setup mcu`")
        pytest.skip("the Cortex-M4 runner is not built (`mpath-tf setup mcu`); CI builds it")
    return get_target("tflm:cortex-m4")


def test_cortex_m4_counts_instructions_repeatably_and_matches_litert(small_int8):
    target = _cortex_m4()
    first = target.measure(small_int8["derived"], QUICK)
    again = target.measure(small_int8["derived"], QUICK)
    assert first["unit"] == "instructions" and first["device"]["kernels"] == "cmsis_nn"
    # deterministic: the same binary, model and input execute the same instructions
    assert first["instructions_per_inference"] == again["instructions_per_inference"]
    assert 1_000 < first["instructions_per_inference"] < 10_000_000
    assert 0 < first["arena_bytes"] < 1 << 20
    assert first["parity"]["top1_agreement"] == 1.0
    assert first["parity"]["max_abs_diff"] <= 2 / 256
    dense = target.measure(small_int8["dense"], QUICK)
    assert dense["instructions_per_inference"] != first["instructions_per_inference"]


def test_the_readme_firmware_snippet_compiles_for_cortex_m4(small_int8, tmp_path):
    """README "On a microcontroller": the generated sources and the snippet
    build against TFLM with the core's compiler (what a firmware project does)."""
    from edge_bench.mcu.build import cache_root

    _cortex_m4()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## On a microcontroller"):]
    snippet = section[section.index("```c++") + 6:]
    snippet = snippet[:snippet.index("```")]
    write_mcu_sources(small_int8["derived"].read_bytes(), tmp_path, "model_int8")
    (tmp_path / "firmware.cc").write_text(snippet)
    tree = cache_root() / "tflite-micro"
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    for source in ("firmware.cc", "model_int8_model_data.cc"):
        subprocess.run(["arm-none-eabi-g++", "-mthumb", "-mcpu=cortex-m4+nofp", "-std=c++17",
                        "-fno-rtti", "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", "-c",
                        f"-I{tmp_path}", f"-I{tree}", f"-I{downloads / 'flatbuffers/include'}",
                        f"-I{downloads / 'gemmlowp'}", source, "-o", source + ".o"],
                       check=True, cwd=tmp_path, capture_output=True)


def test_cortex_m4_names_a_refused_op(tmp_path):
    target = _cortex_m4()
    model, _ = _wide_many_paths()
    path = export_tflite(model, tmp_path / "bmm.tflite", Int8(), _representative(),
                         lowering="batch_matmul")
    with pytest.raises(ModelError, match=re.escape("TFLM (cortex-m4, CMSIS-NN) refuses")):
        target.measure(path, QUICK)


TINY = ["--no-bench", "--depth", "3", "--width", "6", "--epochs", "2", "--finetune-epochs", "1",
        "--samples", "3", "--batch-size", "64"]  # tests/conftest.py's TINY_CONFIG


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.conftest import tiny_run_copy

    return tiny_run_copy(tmp_path_factory)


def test_search_on_cortex_m4_ends_with_both_models_measured_there(finished_run):
    """The finished tiny run, resumed with the microcontroller target: the int8
    files are lowered for it and both are measured on the core and the host."""
    import json

    from mpath_tf.cli import cli

    _cortex_m4()
    result = CliRunner().invoke(cli, ["search", *TINY, "--run-dir", str(finished_run),
                                      "--target", "tflm:cortex-m4"])
    assert "Traceback" not in result.output, result.output
    lines = result.output.splitlines()
    closing = next(line for line in lines if line.startswith("on tflm:cortex-m4 (int8): "))
    assert re.search(r"k vs dense [\d.,]+k instructions per inference \(instructions, not "
                     r"cycles\)", closing), closing
    assert re.search(r"arena [\d,]+ vs [\d,]+ bytes; flash [\d,]+ vs [\d,]+ bytes", closing)
    assert any(line.startswith("TFLM prepares chosen and reference files; outputs against "
                               "LiteRT") for line in lines), result.output
    device = json.loads((finished_run / "results.json").read_text())["device"]
    assert device["unit"] == "instructions" and device["chosen"]["cost"] > 0
    assert device["host"]["chosen"]["parity"]["top1_agreement"] == 1.0
    assert device["host"]["reference"]["arena_bytes"] > 0
    assert (finished_run / "mcu" / "model_model_data.cc").is_file()
    from mpath_tf.reporting.report import write_report

    page = write_report(finished_run).read_text()  # the report says it too
    assert "on tflm:cortex-m4 (int8): " in page and "instructions, not cycles" in page
    # a RAM budget no model meets: exit 2, naming the nearest and its arena
    result = CliRunner().invoke(cli, ["search", *TINY, "--run-dir", str(finished_run),
                                      "--target", "tflm:cortex-m4", "--max-ram", "0.1"])
    assert result.exit_code == 2, result.output
    assert "No model meets --max-ram 0.1 on tflm:cortex-m4" in result.output
    assert "ram kb" in result.output


def test_bench_on_tflm_reports_arena_flash_and_auto_choices(finished_run):
    import csv
    import json

    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["bench", str(finished_run), "--target", "tflm", "--paths",
                                      "1,2,3", "--quantization", "int8", "--lowering", "auto",
                                      "--repeats", "1", "--runs", "5", "--min-secs", "0.02",
                                      "--warmup-min-secs", "0"])
    assert result.exit_code == 0, result.output
    out = finished_run / "bench" / "tflm-auto"
    rows = list(csv.DictReader((out / "latency.csv").open()))
    assert [r["kind"] for r in rows] == ["dense", "mpath", "mpath", "mpath"]
    assert all(int(r["arena_bytes"]) > 0 and int(r["flash_bytes_no_metadata"]) > 0 for r in rows)
    assert {r["chosen_lowering"] for r in rows[2:]} <= {"per_path", "batch_matmul", "conv",
                                                        "bucketed"}
    verdict = json.loads((out / "verdict.json").read_text())["proxy"]["int8"]
    assert verdict["unit"] == "us" and "arena_spearman" in verdict and "macs_pearson" in verdict
    assert "params vs TFLM arena Spearman" in result.output


def test_bench_exports_auto_again_when_the_target_table_changed(finished_run, monkeypatch,
                                                               tmp_path):
    """An auto export is tied to the lowering profile it read: a bench after
    the table changed exports again instead of measuring a stale choice."""
    import json
    import shutil

    from converters import profiles as profiles_module
    from mpath_tf.cli import cli

    args = ["bench", str(finished_run), "--target", "tflm", "--paths", "2", "--quantization",
            "int8", "--lowering", "auto", "--repeats", "1", "--runs", "5", "--min-secs", "0.02",
            "--warmup-min-secs", "0"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    exported = finished_run / "bench" / "models" / "paths-2_auto-tflm_int8.tflite"
    record = json.loads(exported.with_name(exported.name + ".json").read_text())
    assert record["profile_sha256"] and record["lowerings"]
    again = CliRunner().invoke(cli, args)
    assert "exporting paths-2_auto-tflm_int8.tflite" not in again.output  # same table: reused
    table = tmp_path / "tflm.json"
    shutil.copy(profiles_module.target_profile("tflm"), table)
    table.write_text(table.read_text() + "\n")  # the same entries, another file
    monkeypatch.setattr(profiles_module, "PROFILES_DIR", tmp_path)
    changed = CliRunner().invoke(cli, args)
    assert changed.exit_code == 0, changed.output
    assert "exporting paths-2_auto-tflm_int8.tflite again: the lowering profile changed" in \
        changed.output


def test_search_on_an_unbuilt_core_stops_before_training_and_names_setup(tmp_path, monkeypatch):
    from mpath_tf.cli import cli

    monkeypatch.setenv("MPATH_TF_CACHE_DIR", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(cli, ["search", *TINY, "--run-dir", str(tmp_path / "run"),
                                      "--target", "tflm:cortex-m7"])
    assert result.exit_code == 2, result.output
    assert "mpath-tf setup mcu --core cortex-m7" in result.output
    assert not (tmp_path / "run" / "supernet.keras").exists()  # nothing trained


def test_max_latency_is_refused_on_a_counting_target():
    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["search", "--target", "tflm:cortex-m4",
                                      "--max-latency-ms", "1"])
    assert result.exit_code == 2 and "counts instructions" in result.output


def test_an_unknown_core_is_refused_with_the_known_ones():
    from mpath_tf.cli import cli

    with pytest.raises(ConfigError, match="Unknown Cortex-M core 'cortex-m99'.*cortex-m4"):
        get_target("tflm:cortex-m99")
    result = CliRunner().invoke(cli, ["setup", "mcu", "--core", "cortex-m99"])
    assert result.exit_code == 2 and "Unknown Cortex-M core 'cortex-m99'" in result.output


def test_setup_is_cached_and_says_where_the_runner_is():
    import time

    from mpath_tf.cli import cli

    _cortex_m4()
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["setup", "mcu", "--core", "cortex-m4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"tflm:cortex-m4: .*runner-cortex-m4\.elf", result.output)
    assert time.perf_counter() - start < 30  # nothing rebuilt


def test_setup_without_sources_names_the_fix(tmp_path, monkeypatch):
    from edge_bench.mcu.build import setup_mcu

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="No TFLM source snapshots found.*--sources DIR"):
        setup_mcu(["cortex-m4"], sources=tmp_path, root=tmp_path / "cache", log=lambda *_: None)
