"""The emulated ARM Cortex-A targets (``edge_bench.arm64``): Debian's arm64
Python and LiteRT's aarch64 wheel under qemu-aarch64, counted in
instructions; and this machine's LiteRT counted the same way under
qemu-x86_64 (``edge_bench.x86_64``), to check counts against time.

The measuring tests need ``mpath-tf setup arm64`` (CI runs it, and sets
``MPATH_TF_REQUIRE_ARM64=1`` so that they fail there instead of skipping)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from converters import Float32, Int8, export_tflite
from edge_bench import BenchSettings, get_target
from edge_bench.arm64 import CORES, closure, is_built
from mpath_tf import build_mlp, build_supernet, derive
from mpath_tf.errors import ConfigError


def _arm64(spec: str):
    if not is_built():
        if os.environ.get("MPATH_TF_REQUIRE_ARM64"):
            pytest.fail("the arm64 runtime is not set up; .ci/run runs `mpath-tf setup arm64`")
        pytest.skip("the arm64 runtime is not set up (`mpath-tf setup arm64`); CI sets it up")
    return get_target(spec)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """int8 files of a derived model (4 paths) and the dense MLP, and a float32 one."""
    folder = tmp_path_factory.mktemp("arm64")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    derived = derive(build_supernet((16,), 4, depth=3, width=12, seed=0), 4)
    dense = build_mlp((16,), 4, 3, 12)
    return {"derived": export_tflite(derived, folder / "derived.tflite", Int8(), x),
            "dense": export_tflite(dense, folder / "dense.tflite", Int8(), x),
            "float32": export_tflite(derived, folder / "derived_f32.tflite", Float32())}


def test_every_core_shows_its_own_cpuinfo():
    """LiteRT picks its kernels from /proc/cpuinfo: the A76 and A55 show the
    dot-product instructions, the A53 and A72 do not; each shows its part."""
    parts = {name: core.part for name, core in CORES.items()}
    assert parts == {"cortex-a53": "0xd03", "cortex-a55": "0xd05", "cortex-a72": "0xd08",
                     "cortex-a76": "0xd0b"}
    for name, core in CORES.items():
        info = core.cpuinfo()
        assert f"CPU part\t: {core.part}" in info
        assert ("asimddp" in info) == (name in ("cortex-a55", "cortex-a76"))
    # an A55 r0p0 gets no dot-product kernels from LiteRT's CPU detection
    assert "CPU variant\t: 0x1" in CORES["cortex-a55"].cpuinfo()


def test_the_sysroot_takes_what_python_needs_and_not_package_tools():
    index = {"python3.11-minimal": {"Depends": "libc6 (>= 2.36), zlib1g, tzdata"},
             "libpython3.11-stdlib": {"Depends": "libssl3 | libssl1, libffi8, media-types"},
             "libc6": {"Depends": "libgcc-s1"}, "libgcc-s1": {"Pre-Depends": "libc6"},
             "zlib1g": {}, "libssl3": {}, "libffi8": {}, "tzdata": {"Depends": "debconf"},
             "libstdc++6": {"Depends": "libc6"}, "media-types": {}}
    assert closure(index) == ["libc6", "libffi8", "libgcc-s1", "libpython3.11-stdlib",
                              "libssl3", "libstdc++6", "python3.11-minimal", "zlib1g"]


def test_an_unknown_core_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="arm64:cortex-a53, arm64:cortex-a55"):
        get_target("arm64:cortex-a9")


def test_counts_are_repeatable_and_int8_outputs_match_x86(small_files):
    """The count is of the inferences alone (between two marks): two runs
    agree within 10% (they agree exactly); the int8 outputs on the ARM
    kernels equal x86 LiteRT's; the float32 ones are within 1e-5."""
    target = _arm64("arm64:cortex-a72")
    settings = BenchSettings(timeout_s=300)
    first = target.measure(small_files["derived"], settings)
    again = target.measure(small_files["derived"], settings)
    assert first["unit"] == "instructions" and first["device"]["core"] == "cortex-a72"
    count = first["instructions_per_inference"]
    assert 1_000 < count < 1_000_000
    assert abs(again["instructions_per_inference"] / count - 1) <= 0.10
    assert first["parity"]["identical_share"] == 1.0 and first["parity"]["top1_agreement"] == 1
    dense = target.measure(small_files["dense"], settings)
    assert dense["instructions_per_inference"] > 0 and dense["parity"]["identical_share"] == 1.0
    floats = target.measure(small_files["float32"], settings)
    assert floats["parity"]["max_abs_diff"] <= 1e-5


def test_the_dot_product_core_runs_other_kernels(small_files):
    """The A76's cpuinfo has asimddp: LiteRT runs other int8 kernels there,
    so the same file executes a different number of instructions."""
    a72 = _arm64("arm64:cortex-a72").measure(small_files["dense"])
    a76 = _arm64("arm64:cortex-a76").measure(small_files["dense"])
    assert a76["instructions_per_inference"] != a72["instructions_per_inference"]
    assert a76["parity"]["identical_share"] == 1.0


def test_bench_cli_counts_a_run_on_an_arm_core(tiny_run):
    """`mpath-tf bench RUN --target arm64:cortex-a72` reports instructions
    for derived models and the dense reference."""
    import json

    from click.testing import CliRunner

    from mpath_tf.cli import cli

    _arm64("arm64:cortex-a72")
    result = CliRunner().invoke(cli, ["bench", str(tiny_run), "--target", "arm64:cortex-a72",
                                      "--quantization", "int8", "--paths", "1,3",
                                      "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "instructions per inference (not cycles)" in result.output
    rows = [json.loads(line) for line in
            (tiny_run / "bench" / "arm64-cortex-a72" / "latency.jsonl").read_text().splitlines()]
    measured = {r["model"].rsplit("/", 1)[-1] for r in rows if r.get("status") == "ok"}
    assert {"paths-3_int8.tflite", "dense_int8.tflite"} <= measured


def test_every_file_of_a_search_passes_parity_on_the_cortex_a76(tiny_run):
    """The chosen model's and the dense reference's float32 and int8 files
    run on the A76's kernels (dot product) as on this machine: int8 outputs
    within one output step of x86 LiteRT's (the kernels may round a
    requantization differently; 500-wide files showed 90-100% identical
    values) with the same top-1 on 97% of the test split, so the parity the
    search checked holds there; float32 within 1e-5 of x86 and within the
    float32 bounds of Keras. (The tiny run is trained 2 epochs: its
    near-uniform int8 outputs need not pass the int8 gates against Keras.)"""
    from converters import get_quantization
    from converters.tflite import run_tflite
    from converters.parity import compare_outputs, output_step
    from mpath_tf.core.saving import load_model
    from mpath_tf.data import load_dataset

    target = _arm64("arm64:cortex-a76")
    data = load_dataset("digits")
    for name in ("model", "reference"):
        keras_model = load_model(tiny_run / f"{name}.keras")
        expected = keras_model.predict(data.x_test, verbose=0)
        for scheme in ("float32", "int8"):
            path = tiny_run / f"{name}_{scheme}.tflite"
            got = target.run(path, data.x_test)
            here = run_tflite(path, data.x_test)
            check = compare_outputs(expected, got, get_quantization(scheme), data.y_test,
                                    output_step(path))
            if scheme == "int8":
                assert np.max(np.abs(got - here)) <= output_step(path) * 1.001, path.name
                assert np.mean(got.argmax(-1) == here.argmax(-1)) >= 0.97, path.name
                assert check.examples == len(data.y_test)
            else:
                assert np.max(np.abs(got - here)) <= 1e-5, path.name
                assert check.passed, (path.name, check.failures)


def test_export_verify_on_an_arm_core(tiny_run, tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    _arm64("arm64:cortex-a72")
    output = tmp_path / "model_float32.tflite"
    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--output",
                                      str(output), "--verify-on", "arm64:cortex-a72"])
    assert result.exit_code == 0, result.output
    report = json.loads(output.with_name(output.name + ".json").read_text())
    check = report["verification_on"]["arm64:cortex-a72"]
    assert check["examples"] == 360 and check["passed"] and check["agreement"] == 1.0
    assert 0.0 <= check["identical_to_this_machine"] <= 1.0
    assert check["max_abs_diff"] <= 1e-5
    bad = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--output",
                                   str(tmp_path / "m.tflite"), "--verify-on", "local"])
    assert bad.exit_code == 2 and "emulated ARM core" in bad.output


def test_search_chooses_by_instructions_on_an_arm_core(tmp_path_factory):
    """--objective latency --target arm64:CORE: the core's bundled table
    predicts, the files measured are lowered by it; the choice costs no more
    instructions than dense, measured on the core (no timing margin: counts
    are exact); the chosen model's files are exported for the core and
    pass parity on its kernels."""
    from mpath_tf.pipeline.config import SearchConfig
    from mpath_tf.pipeline.run import search

    from .conftest import TINY_CONFIG, tiny_run_copy

    _arm64("arm64:cortex-a72")
    run = tiny_run_copy(tmp_path_factory)  # resumed: only the choice is made again
    config = SearchConfig(**{**TINY_CONFIG, "objective": "latency",
                             "target": "arm64:cortex-a72", "max_accuracy_drop": 1.0})
    result = search(config.validate(), run, log=lambda *_: None)
    objective = result["objective"]
    assert objective["unit"] == "instructions" and objective["margin"] == 0.0
    assert objective["source"] == "the lowering cost table of arm64:cortex-a72"
    measured = objective["measured"]
    assert measured[str(objective["choice"])] <= measured["dense"]
    assert list((run / "budget").glob("paths-*_int8_arm64-cortex-a72.tflite"))
    state = json.loads((run / "state.json").read_text())
    exports = [e for key, e in state["exports"].items() if key.endswith(":arm64:cortex-a72")]
    assert exports, "the chosen model was not exported again for the core"
    verified = [record for record in exports if "verification" in record["int8"]]
    assert verified, "the chosen model's files were not checked"  # (the reference's never are)
    for record in verified:
        assert record["int8"]["profile"] == "arm64-cortex-a72.json"
        assert "profile" not in record["float32"]  # the core's table is int8's
        for scheme in ("float32", "int8"):
            check = record[scheme]["verification_on"]["arm64:cortex-a72"]
            here = record[scheme]["verification"]
            # the whole test split ran on the core, as on this machine (the
            # tiny model's int8 file misses its gates on both alike)
            assert check["examples"] == here["examples"] == 360
            assert abs(check["agreement"] - here["agreement"]) <= 0.03
            if scheme == "int8":
                assert check["identical_to_this_machine"] >= 0.9
            else:  # float kernels round differently: within float32's bounds of Keras
                assert check["passed"], check["failures"]


@pytest.mark.parametrize("core", sorted(CORES))
def test_every_core_has_a_bundled_table_that_auto_reads(core):
    """Each core's lowering cost table (``mpath-tf profile --target
    arm64:CORE``, in instructions) is bundled and found for its target; on
    a 500-wide stack of 16 paths it picks a lowering other than per_path
    (measured: conv or bucketed is cheapest above 4 paths on every core)."""
    from converters.profiles import auto_cost, load_profile, target_profile

    path = target_profile(f"arm64:{core}")
    assert path is not None and path.name == f"arm64-{core}.json"
    table = load_profile(path)
    assert table["target"] == f"arm64:{core}" and table["unit"] == "instructions"
    lowering, cost = auto_cost(table, [500 // 16] * 16, "int8", depth=3)[:2]
    dense_cost = auto_cost(table, [500], "int8", depth=3)[1]
    assert lowering != "per_path" and 0 < cost < dense_cost


def test_export_for_an_arm_core_reads_its_table_and_checks_on_it(tiny_run, tmp_path):
    """`mpath-tf export --target arm64:CORE`: auto reads the core's table,
    and the file is checked on the core's kernels without --verify-on."""
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    _arm64("arm64:cortex-a76")
    output = tmp_path / "model_int8.tflite"
    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--output",
                                      str(output), "--quantization", "int8",
                                      "--target", "arm64:cortex-a76"])
    report = json.loads(output.with_name(output.name + ".json").read_text())
    assert report["target"] == "arm64:cortex-a76"
    assert report["profile"].endswith("arm64-cortex-a76.json")
    on_core = report["verification_on"]["arm64:cortex-a76"]
    assert on_core["examples"] == 360 and on_core["identical_to_this_machine"] >= 0.9
    # exit 1 exactly when a check missed (the tiny model's int8 file may miss its gates)
    passed = report["verification"]["passed"] and on_core["passed"]
    assert result.exit_code == (0 if passed else 1), result.output
    # a float file: the core's table is int8's, so this CPU's lowers it; checked on the core
    floats = tmp_path / "model_float32.tflite"
    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--output",
                                      str(floats), "--target", "arm64:cortex-a76"])
    assert result.exit_code == 0, result.output
    report = json.loads(floats.with_name(floats.name + ".json").read_text())
    assert "arm64" not in (report["profile"] or "")
    assert report["verification_on"]["arm64:cortex-a76"]["passed"]
    bad = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--output",
                                   str(tmp_path / "m.tflite"), "--target", "arm64:cortex-a9"])
    assert bad.exit_code == 2 and "arm64:CORE" in bad.output


def test_this_machines_litert_counted_under_qemu_x86_64(small_files):
    """x86_64: the same LiteRT as the local target, counted between the
    marks (x86-64 passes the marks' descriptor zero-extended): repeatable
    counts, the outputs of this machine, and other kernels without AVX2
    (QEMU's Nehalem model) than with it (max): another count."""
    if os.environ.get("MPATH_TF_REQUIRE_ARM64") is None:
        import shutil

        if shutil.which("qemu-x86_64") is None:
            pytest.skip("qemu-user is not installed; CI installs it")
    target = get_target("x86_64")
    first = target.measure(small_files["derived"], BenchSettings(timeout_s=300))
    again = target.measure(small_files["derived"], BenchSettings(timeout_s=300))
    count = first["instructions_per_inference"]
    assert first["unit"] == "instructions" and first["device"]["qemu_cpu"] == "max"
    assert 1_000 < count < 1_000_000
    assert abs(again["instructions_per_inference"] / count - 1) <= 0.10
    assert first["parity"]["identical_share"] == 1.0
    sse = get_target("x86_64:Nehalem").measure(small_files["derived"])
    assert sse["instructions_per_inference"] != count
    with pytest.raises(Exception, match="no x86 CPU model 'pentium9'"):
        get_target("x86_64:pentium9").describe()


def test_the_counting_plugin_is_rebuilt_when_its_source_changes(tmp_path):
    """A cache built by an older version gets this source's plugin."""
    import hashlib

    from edge_bench.mcu.build import HERE, build_plugin

    out = tmp_path / "libinsn_count.so"
    build_plugin(out, log=lambda *_: None)
    stamp = out.with_name(out.name + ".sha256")
    digest = hashlib.sha256((HERE / "insn_count.c").read_bytes()).hexdigest()
    assert stamp.read_text().strip() == digest
    built = out.stat().st_mtime_ns
    build_plugin(out, log=lambda *_: None)
    assert out.stat().st_mtime_ns == built  # up to date: not rebuilt
    stamp.write_text("an older source\n")
    build_plugin(out, log=lambda *_: None)
    assert stamp.read_text().strip() == digest and out.stat().st_mtime_ns != built
