"""The built-in CNN (``--arch cnn``): its convolutions split into channel paths,
derived into grouped / split / depthwise convolutions, searched and exported
end to end."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters import op_summary
from mpath_tf import build_supernet, derive, discrete_permeability, load_model, parameter_counts
from mpath_tf import to_dense
from mpath_tf.cli import cli
from mpath_tf.core.models import build_cnn
from tests.conftest import search_finished


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("shape", [(8, 8), (10, 9, 3)])
def test_derived_cnn_equals_the_hard_thresholded_supernet(shape, tmp_path):
    net = build_supernet(shape, num_classes=4, depth=4, width=6, seed=1, arch="cnn")
    assert net.name == "mpath-cnn-4-6" and len(net.stacks[0]) == 3  # every conv but the first
    x = np.random.default_rng(0).random((8, *shape)).astype("float32")
    counts = parameter_counts(net)
    for b in range(1, 7):
        model = derive(net, b)
        hard = net(x, permeability=discrete_permeability(net.derived_widths(b)))
        np.testing.assert_allclose(model(x), hard, atol=1e-5)
        assert model.count_params() == counts[b]
    assert counts[6] < counts[3] < counts[1] == to_dense(net).count_params()
    # the supernet and a derived model survive a .keras round trip
    net.save(tmp_path / "net.keras")
    np.testing.assert_allclose(load_model(tmp_path / "net.keras")(x), net(x), atol=1e-6)
    derive(net, 3).save(tmp_path / "b3.keras")
    np.testing.assert_allclose(load_model(tmp_path / "b3.keras")(x), derive(net, 3)(x), atol=1e-6)


def test_the_cnn_refuses_flat_examples():
    with pytest.raises(ValueError, match=r"image-shaped examples.*\(30,\)"):
        build_cnn((30,), num_classes=2, depth=3, width=4)


def test_search_arch_cnn_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = invoke("search", "--arch", "cnn", "--depth", "3", "--width", "6", "--epochs", "2",
                    "--finetune-epochs", "1", "--final-epochs", "1", "--samples", "2", "--batch-size", "64",
                    "--no-bench", "--no-reference", "--run-dir", run)
    # exit 1 only if the near-random 2-epoch model misses int8's gates
    assert search_finished(result.exit_code, result.output), result.output
    results = json.loads((run / "results.json").read_text())
    assert results["settings"]["arch"] == "cnn"
    chosen = results["chosen"]
    assert chosen["exports"]["float32"]["verification"]["passed"], chosen["exports"]
    assert "verification" in chosen["exports"]["int8"]
    assert "% of the dense network)" in result.output
    assert "lowering profile" not in result.output  # it lowers Dense paths, not convolutions
    # the record says how each path convolution was lowered, and whether measured
    record = chosen["exports"]["int8"]
    convs = [n for n, l in record["lowerings"].items() if l in ("grouped", "split")]
    assert len(convs) == len(record["lowerings"]) == 2, record
    assert isinstance(record["conv_lowerings_measured"], bool)
    # the exported file holds only the diagonal blocks: 9 * sum(w^2) weights
    # per derived conv (2 of them) + biases, and the dense first conv
    widths = chosen["path_widths"]
    summary = op_summary(run / chosen["exports"]["float32"]["file"])
    assert summary["conv_weights"] == (9 * 1 * 6 + 6) + 2 * (9 * sum(w * w for w in widths) + 6)
    # `mpath-tf report` renders a CNN run: its table of path counts, titled by its network
    report = invoke("report", run)
    assert report.exit_code == 0, report.output
    page = (run / "report.html").read_text()
    assert "mpath-cnn-3-6" in page and "Every path count" in page


@pytest.mark.parametrize("arch", ["cnn", "resnet8"])
@pytest.mark.parametrize("args, message", [
    (["--data", "{csv}", "--label", "y"], "--arch {arch} needs image-shaped examples"),
    (["--model", "{model}"], "--arch {arch} chooses a built-in one"),
])
def test_arch_cnn_refusals(tmp_path, arch, args, message):
    csv = tmp_path / "flat.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(40)))
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    args = [a.format(csv=csv, model=model) for a in args]
    run = tmp_path / "run"
    result = invoke("search", "--arch", arch, *args, "--run-dir", run)
    assert result.exit_code == 2, result.output
    assert message.format(arch=arch) in result.output
    assert not run.exists()  # nothing half-written


def test_export_groups_a_stage_by_path_width(tmp_path):
    """Each distinct path width is one convolution per layer in the file, the
    bias and ReLU fused into it (no ADD), and the file computes the model."""
    from converters import Float32, export_tflite, run_tflite
    from converters.lowering import group_conv_paths

    net = build_supernet((8, 8), num_classes=3, depth=4, width=12, seed=0, arch="cnn")
    x = np.random.default_rng(0).random((16, 8, 8)).astype("float32")
    for b in (3, 5, 9):
        model = derive(net, b)
        grouped = group_conv_paths(model)
        np.testing.assert_allclose(grouped(x), model(x), atol=1e-6)
        path = export_tflite(model, tmp_path / f"b{b}.tflite", Float32())
        np.testing.assert_allclose(run_tflite(path, x), model(x), atol=1e-5)
        widths = net.derived_widths(b)
        ops = op_summary(path)["ops"]
        runs = len(set(w for w in widths if w > 1)) + (widths.count(1) > 1) + (
            widths.count(1) == 1)
        assert ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0) == 1 + 3 * runs, (widths, ops)
        assert "ADD" not in ops


def test_a_user_cnn_without_two_equal_convolutions_is_refused_naming_them(tmp_path):
    import keras

    inputs = keras.Input((8, 8))
    h = keras.layers.Reshape((8, 8, 1))(inputs)
    h = keras.layers.Conv2D(8, 3, name="conv_a")(h)
    h = keras.layers.Conv2D(16, 3, name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h)).save(
        tmp_path / "cnn.keras")
    run = tmp_path / "run"
    result = invoke("search", "--model", tmp_path / "cnn.keras", "--run-dir", run)
    assert result.exit_code == 2, result.output
    assert "no stack to split" in result.output and "conv_a(8), conv_b(16)" in result.output
    assert not run.exists()
