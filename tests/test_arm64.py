"""The emulated ARM Cortex-A targets (``edge_bench.arm64``): Debian's arm64
Python and LiteRT's aarch64 wheel under qemu-aarch64, counted in instructions.

The measuring tests need ``mpath-tf setup arm64`` (CI runs it, and sets
``MPATH_TF_REQUIRE_ARM64=1`` so that they fail there instead of skipping)."""

from __future__ import annotations

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
