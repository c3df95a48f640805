"""Residual networks: ``to_supernet`` keeps a ResNet's residual blocks in the
chain (fork, block, join with the shortcut) and splits the convolutions of
each stage into channel paths; the derived network computes the
hard-thresholded supernet, and its exported file holds only the diagonal
blocks."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from converters import export_tflite, get_quantization, op_summary
from converters.parity import verify
from mpath_tf import (build_resnet8, build_supernet, derive, discrete_permeability, load_model,
                      parameter_counts, to_dense, to_supernet)
from mpath_tf.cli import cli
from mpath_tf.core.conv import PathConv2D
from mpath_tf.core.supernet import ResidualFork, ResidualJoin
from tests.conftest import search_finished


def user_resnet(shape=(12, 12, 1)):
    """A user's small ResNet: an identity block of 8 channels, then a
    projection block into 12 (strided 3x3 and 1x1 shortcut), batch
    normalization with non-trivial statistics."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(inputs)))
    for i, filters in enumerate((8, 12)):
        stride = 1 if i == 0 else 2
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"a{i}")(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", name=f"b{i}")(y))
        shortcut = x if i == 0 else layers.BatchNormalization()(
            layers.Conv2D(filters, 1, strides=stride, name=f"p{i}")(x))
        x = layers.ReLU()(layers.Add(name=f"add{i}")([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])
    return model


def conv_weights(model) -> int:
    """Kernel (PathConv2D: diagonal-block) and bias elements of the model's
    convolutions, its residual shortcuts' included: what its file must hold
    (batch norms fold into them)."""
    convs = [l for l in model.layers if isinstance(l, (layers.Conv2D, PathConv2D))]
    convs += [l for join in model.layers if isinstance(join, ResidualJoin)
              for l in join.shortcut if isinstance(l, layers.Conv2D)]
    return sum(int(np.prod(w.shape)) for l in convs for w in l.weights)


def assert_invariant(net, x, counts):
    """Every layout asked for: derived model == supernet under the {0, 1}
    permeabilities of that layout (1e-5), and its parameters as counted."""
    for paths in counts:
        model = derive(net, paths)
        hard = net(x, permeability=[discrete_permeability(w) for w in net.derived_layout(paths)])
        np.testing.assert_allclose(model(x), hard, atol=1e-5)
    first = parameter_counts(net)
    for b in first:
        assert derive(net, b).count_params() == first[b]


def test_a_users_resnet_keeps_its_blocks_and_splits_each_stage(tmp_path):
    model = user_resnet()
    net = to_supernet(model)
    assert net.trunk is None  # the whole network is the chain, residual blocks included
    kinds = [type(l).__name__ for l in net.chain if isinstance(l, (ResidualFork, ResidualJoin))]
    assert kinds == ["ResidualFork", "ResidualJoin"] * 2
    # stage 1: both block convolutions (the stem is the dense entry); stage 2: the
    # second (the first one widens to 12 channels)
    assert net.stacks == [["membrane_a0", "membrane_b0"], ["membrane_b1"]]
    assert net.widths == [8, 12]
    x = np.random.default_rng(0).random((6, 12, 12, 1)).astype("float32")
    np.testing.assert_allclose(to_dense(net)(x), model(x), atol=1e-5)  # the model's function
    assert_invariant(net, x, [1, 3, 8, (2, 5), (8, 12), (4, 1)])
    # round trips: the supernet and a derived model
    net.save(tmp_path / "net.keras")
    np.testing.assert_allclose(load_model(tmp_path / "net.keras")(x), net(x), atol=1e-6)
    derived = derive(net, (3, 4))
    derived.save(tmp_path / "derived.keras")
    np.testing.assert_allclose(load_model(tmp_path / "derived.keras")(x), derived(x), atol=1e-6)


def test_resnet8_splits_its_three_stages():
    model = build_resnet8((8, 8), num_classes=4, width=4, seed=0)
    net = to_supernet(model)
    assert net.stacks == [["membrane_stage1_a", "membrane_stage1_b"], ["membrane_stage2_b"],
                          ["membrane_stage3_b"]]
    assert net.widths == [4, 8, 16]
    x = np.random.default_rng(0).random((4, 8, 8)).astype("float32")
    np.testing.assert_allclose(to_dense(net)(x), model(x), atol=1e-5)
    assert_invariant(net, x, [2, 4, (2, 3, 5), (4, 8, 16)])


def test_resnet8_is_mlperf_tinys_size():
    # MLPerf Tiny's resnet_v1_eembc on 32x32x3 (CIFAR-10) has 78,666 parameters
    # (biased convolutions, batch norm in the blocks, none on the 1x1 shortcuts)
    assert build_resnet8((32, 32, 3), num_classes=10).count_params() == 78_666


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_a_derived_resnet_exports_only_its_blocks(mode, tmp_path):
    net = to_supernet(user_resnet())
    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1)).astype("float32")
    model = derive(net, (3, 4))
    path = export_tflite(model, tmp_path / f"m_{mode}.tflite", get_quantization(mode), x)
    expected = conv_weights(model)
    assert op_summary(path)["conv_weights"] == expected
    assert expected < sum(int(np.prod(w.shape)) for l in to_dense(net).layers
                          if isinstance(l, layers.Conv2D) for w in l.weights)
    if mode == "float32":
        check = verify(path, model, x, get_quantization(mode))
        assert check.passed and check.max_abs_diff <= 1e-5, check



@pytest.mark.parametrize("paths", [(5, 7)])
def test_export_renumbers_each_stage_by_width_and_folds_its_batch_norms(paths, tmp_path):
    """Through the residual adds: one convolution per distinct width in each
    stage, every batch normalization folded (no MUL), the function kept."""
    from converters.lowering import fold_batch_norms, group_conv_paths

    net = to_supernet(user_resnet())
    x = np.random.default_rng(0).random((32, 12, 12, 1)).astype("float32")
    model = derive(net, paths)
    grouped = group_conv_paths(model)
    widths = [l.path_widths for l in grouped.layers if isinstance(l, PathConv2D)]
    assert widths == [sorted(l.path_widths) for l in model.layers if isinstance(l, PathConv2D)]
    assert widths != [l.path_widths for l in model.layers if isinstance(l, PathConv2D)]
    np.testing.assert_allclose(grouped(x), model(x), atol=1e-5)
    folded = fold_batch_norms(grouped)
    np.testing.assert_allclose(folded(x), model(x), atol=1e-5)
    path = export_tflite(model, tmp_path / "m.tflite", get_quantization("float32"), x)
    ops = op_summary(path)["ops"]
    dense = sum(isinstance(l, layers.Conv2D) for l in model.layers) + 1  # + the 1x1 shortcut
    # one op per distinct width (the single-channel paths: one depthwise op)
    assert ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0) == dense + sum(
        len(set(w)) for w in widths), (widths, ops)
    assert "MUL" not in ops, ops
    check = verify(path, model, x, get_quantization("float32"))
    assert check.passed and check.max_abs_diff <= 1e-5, check

def test_the_built_in_resnet8_splits_every_stage_into_one_path_count(tmp_path):
    net = build_supernet((8, 8), num_classes=4, depth=2, width=4, seed=0, arch="resnet8")
    assert net.name == "mpath-resnet8-4" and net.shared_paths and net.widths == [4, 8, 16]
    assert [len(w) for w in net.derived_layout(3)] == [3, 3, 3]  # one count for every stage
    x = np.random.default_rng(0).random((4, 8, 8)).astype("float32")
    assert_invariant(net, x, [1, 2, 3, 4])  # parameter counts of every b included
    net.save(tmp_path / "net.keras")
    again = load_model(tmp_path / "net.keras")
    assert again.shared_paths
    np.testing.assert_allclose(derive(again, 2)(x), derive(net, 2)(x), atol=1e-6)


def test_search_arch_resnet8_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "search", "--arch", "resnet8", "--width", "4", "--epochs", "2", "--finetune-epochs", "1",
        "--final-epochs", "1", "--samples", "2", "--batch-size", "64", "--no-bench", "--no-reference",
        "--run-dir", str(run)], catch_exceptions=False)
    # exit 1 only if the near-random 2-epoch model misses int8's gates
    assert search_finished(result.exit_code, result.output), result.output
    assert "mpath-resnet8-4" in result.output
    results = json.loads((run / "results.json").read_text())
    chosen = results["chosen"]
    assert results["settings"]["arch"] == "resnet8" and 1 <= chosen["paths"] <= 4
    net = load_model(run / "supernet.keras")
    assert chosen["parameters"] == parameter_counts(net)[chosen["paths"]]
    assert chosen["exports"]["float32"]["verification"]["passed"], chosen["exports"]
    assert op_summary(run / chosen["exports"]["float32"]["file"])["conv_weights"] == conv_weights(
        load_model(run / "model.keras"))


def test_finetuning_trains_equal_width_paths_split_and_returns_them_grouped(digits):
    """Paths of one width side by side train as separate convolutions (a
    grouped Conv2D trains slowly on CPU) and come back grouped, trained,
    with batch-norm statistics of the derived network."""
    from dataclasses import replace

    from mpath_tf import SearchConfig, finetune
    from mpath_tf.core.derivation import with_conv_implementation

    net = build_supernet((8, 8), num_classes=10, depth=0, width=4, seed=0, arch="resnet8")
    model = derive(net, 4)  # stage 1: four single channels; stage 3: runs of equal widths
    assert any(n > 1 and w > 1 for l in model.layers if isinstance(l, PathConv2D)
               for _, n, w in l.runs())
    split = with_conv_implementation(model, "split")
    x = digits.x_test[:16]
    np.testing.assert_allclose(split(x), model(x), atol=1e-6)  # the same function
    data = replace(digits, x_train=digits.x_train[:256], y_train=digits.y_train[:256])
    tuned = finetune(net, 4, data, SearchConfig(seed=0, batch_size=64), epochs=1)
    assert {l.implementation for l in tuned.layers if isinstance(l, PathConv2D)} == {"grouped"}
    assert [l.path_widths for l in tuned.layers if isinstance(l, PathConv2D)] == [
        l.path_widths for l in model.layers if isinstance(l, PathConv2D)]
    assert not np.allclose(tuned(x), model(x), atol=1e-4)  # it was trained
    # its batch norms hold the statistics of what reaches them in the derived network
    bn = tuned.get_layer("stage3_b_bn")
    seen = keras.ops.convert_to_numpy(keras.Model(tuned.input, bn.input)(data.x_train))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               seen.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               seen.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)


def test_one_shot_training_trains_the_supernets_batch_norms(digits):
    """fit reaches the chain's batch normalizations in training mode: they
    normalize by batch statistics and their moving averages follow the data
    (a Supernet.call without `training` left them in inference mode)."""
    from dataclasses import replace

    from mpath_tf import train

    net = build_supernet((8, 8), num_classes=10, depth=0, width=4, seed=0, arch="resnet8")
    data = replace(digits, x_train=digits.x_train[:256], y_train=digits.y_train[:256])
    train(net, data, 1, batch_size=64)
    norms = [l for l in net._flatten_layers() if isinstance(l, layers.BatchNormalization)]
    assert norms and all(np.any(keras.ops.convert_to_numpy(bn.moving_mean) != 0) for bn in norms)
