"""Path convolutions' lowering chosen by measurement: a stage of path
convolutions is timed as one grouped CONV_2D per width and as one CONV_2D
per path on the real LiteRT interpreter, with and without XNNPACK (whose
absence sends a grouped CONV_2D to the reference kernels), and
``--lowering auto`` exports each path convolution the way its table says
runs faster, keeping the function and only the diagonal blocks."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from converters import Float32, export_tflite, op_summary, run_tflite
from converters.profiling import profile_conv
from converters.profiles import choose_conv_lowering
from converters.tflite import lowering_plan
from edge_bench import BenchSettings, LocalTarget
from mpath_tf.cli import cli
from mpath_tf.core.conv import PathConv2D

QUICK = dict(min_secs=0.05, warmup_min_secs=0.02, runs=10)


def two_path_stage():
    """8x8x16 maps through two path convolutions of two 8-channel paths."""
    inputs = keras.Input((8, 8, 16))
    h = PathConv2D([8, 8], 3, padding="same", activation="relu", name="paths_a")(inputs)
    h = PathConv2D([8, 8], 3, padding="same", activation="relu", name="paths_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    rng = np.random.default_rng(0)
    for name in ("paths_a", "paths_b"):
        model.get_layer(name).set_blocks([rng.normal(0, 0.2, (3, 3, 8, 8)) for _ in range(2)])
    return model


@pytest.fixture(scope="module")
def reference_kernel_table(tmp_path_factory):
    """A conv calibration of this machine's LiteRT without XNNPACK."""
    workdir = tmp_path_factory.mktemp("conv-calibration")
    rows = profile_conv(LocalTarget(), 16, ("float32",), (1, 2, 16), (8,), workdir,
                          BenchSettings(**QUICK, xnnpack=False), log=lambda *_: None)
    return {"conv_layers": rows, "layers": []}


def test_a_conv_calibration_times_both_lowerings_of_each_stage(reference_kernel_table):
    rows = reference_kernel_table["conv_layers"]
    assert {(r["lowering"], len(r["path_widths"])) for r in rows} == {
        ("grouped", 1), ("grouped", 2), ("split", 2), ("grouped", 16), ("split", 16)}
    assert all(r["pixels"] == 64 and r["depth"] == 2 and r["us"] > 0 for r in rows)
    measured = {r["lowering"]: r["us"] for r in rows if len(r["path_widths"]) == 2}
    # the fitted cost model reproduces what was measured
    assert choose_conv_lowering(reference_kernel_table, [8, 8], 64, "float32") == min(
        measured, key=measured.get)


def test_auto_exports_each_path_convolution_as_its_table_says(reference_kernel_table, tmp_path):
    model = two_path_stage()
    table = reference_kernel_table
    choice = choose_conv_lowering(table, [8, 8], 64, "float32")
    plan = lowering_plan(model, "float32", "auto", table)
    assert plan["lowerings"] == {"paths_a": choice, "paths_b": choice}
    assert plan["conv_lowerings_measured"] is True
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 16)).astype("float32")
    blocks = 2 * (9 * 2 * 64 + 16)  # two layers of two 8x8 blocks and 16 biases
    convs = {}
    for lowering in ("auto", "grouped", "split"):
        path = export_tflite(model, tmp_path / f"{lowering}.tflite", Float32(), lowering=lowering,
                             profile=table)
        np.testing.assert_allclose(run_tflite(path, x), model.predict(x, verbose=0), atol=1e-5)
        summary = op_summary(path)
        assert summary["conv_weights"] == blocks, (lowering, summary)
        convs[lowering] = summary["ops"]["CONV_2D"]
    assert convs["grouped"] == 2 and convs["split"] == 4  # one per width, one per path
    assert convs["auto"] == convs[choice]
    # a table without conv entries: the grouped default, and the record says so
    plan = lowering_plan(model, "float32", "auto", {"layers": [], "conv_layers": []})
    assert set(plan["lowerings"].values()) == {"grouped"}
    assert plan["conv_lowerings_measured"] is False


def test_auto_picks_the_faster_form_of_single_channel_paths(reference_kernel_table):
    """16 paths of one channel: one DEPTHWISE_CONV_2D against 16 CONV_2Ds and
    a split and a join (measured here: the depthwise one, several times
    faster); auto takes the one its table measured faster."""
    rows = {r["lowering"]: r["us"] for r in reference_kernel_table["conv_layers"]
            if len(r["path_widths"]) == 16}
    assert choose_conv_lowering(reference_kernel_table, [1] * 16, 64, "float32") == min(
        rows, key=rows.get)


def test_the_calibrate_command_times_path_convolutions_without_xnnpack(tmp_path):
    out = tmp_path / "t.json"
    result = CliRunner().invoke(cli, [
        "profile", "--width", "2", "--quantization", "float32", "--conv-channels", "2",
        "--no-xnnpack", "--workdir", str(tmp_path / "w"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["settings"]["xnnpack"] is False
    assert {(r["lowering"], r["pixels"]) for r in table["conv_layers"]} == {
        (lowering, side * side) for lowering in ("grouped", "split") for side in (8, 16)}
    assert {r["lowering"] for r in table["layers"]} == {"per_path", "batch_matmul", "conv"}


def test_a_conv_stack_latency_table_prices_layouts_as_measured(reference_kernel_table):
    """``--cost latency`` on a CNN: a stack's cost table adds, path by path,
    what the split lowering's fitted costs say, so a layout's cost plus the
    stage's fixed cost is the measured time of that stage."""
    from converters.profiles import fit_conv_costs, stack_latency_costs
    from mpath_tf.core.supernet import to_supernet

    inputs = keras.Input((8, 8, 1))
    h = inputs
    for i in range(3):  # the last two are the stack: two convolutions on 8x8 maps
        h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    supernet = to_supernet(keras.Model(inputs, keras.layers.Dense(3)(h)))
    (table,) = stack_latency_costs(supernet, reference_kernel_table, "float32")
    assert (table.kind, table.unit, table.lowering, table.width) == ("latency", "us", "split", 16)
    assert all(a <= b for a, b in zip(table.block, table.block[1:]))  # wider paths cost more
    fixed = fit_conv_costs(reference_kernel_table, "float32")["split"][0]
    measured = {len(r["path_widths"]): r["us"] for r in reference_kernel_table["conv_layers"]
                if r["lowering"] == "split"}
    priced = {2: fixed + table.cost([8, 8]), 16: fixed + table.cost([1] * 16)}
    for paths, us in measured.items():
        assert priced[paths] == pytest.approx(us, rel=0.25), (priced, measured)
    assert (priced[16] > priced[2]) == (measured[16] > measured[2])
