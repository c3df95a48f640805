"""Lowerings of block-diagonal layers: same function, different ops, real
LiteRT runs; the neuron regrouping; the lowering profile and ``auto``."""

import keras
import numpy as np
import pytest

from converters import LOWERINGS, DynamicRange, Float32, Int8, choose_lowerings, export_tflite
from converters import verify
from converters.profiling import equal_widths, irregular_widths
from converters.profiles import choose_lowering, load_profile, predicted_costs
from converters.lowering import group_paths, pad_paths, padded_widths
from converters.tflite import lowering_plan
from converters.tflite import load_interpreter
from mpath_tf import build_supernet, derive
from mpath_tf.errors import ConfigError
from mpath_tf.core.layers import PathDense
from mpath_tf.training.loop import train
from tests.conftest import assert_int8_close


@pytest.fixture(scope="module")
def model(digits):
    # Unequal path widths (7 paths over 24 neurons), trained a little and
    # fine-tuned (about 90% test accuracy: int8 parity on a near-random model
    # would be decided by its near-ties).
    net = build_supernet(digits.input_shape, 10, depth=3, width=24, seed=1)
    train(net, digits, epochs=8, batch_size=32)
    model = derive(net, 7)
    train(model, digits, epochs=8, batch_size=32, keep_best=False)
    return model


def _ops(path):
    interpreter = load_interpreter(path)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return interpreter._get_ops_details(), tensors


def test_group_paths_keeps_the_function_and_makes_paths_contiguous(model, digits):
    grouped = group_paths(model)
    assert len(set(model.get_layer("path_dense_1").path_widths)) > 1  # a real permutation
    for layer in grouped.layers:
        if isinstance(layer, PathDense):
            assert layer.path_widths == sorted(layer.path_widths) and layer._identity
    np.testing.assert_allclose(grouped.predict(digits.x_test, verbose=0),
                               model.predict(digits.x_test, verbose=0), atol=1e-6)


@pytest.mark.parametrize("lowering, expected_op, absent", [
    pytest.param("per_path", "FULLY_CONNECTED", "BATCH_MATMUL", id="per_path"),
    pytest.param("batch_matmul", "BATCH_MATMUL", "GATHER", id="batch_matmul"),
    pytest.param("conv", "CONV_2D", "GATHER", id="conv"),
])
def test_each_lowering_runs_in_litert_like_keras(lowering, expected_op, absent, model, digits, tmp_path):
    path = export_tflite(model, tmp_path / f"{lowering}.tflite", Float32(), lowering=lowering)
    check = verify(path, model, digits.x_test, Float32())
    assert check.passed and check.max_abs_diff <= 1e-5, check
    ops, tensors = _ops(path)
    names = [op["op_name"] for op in ops]
    assert expected_op in names and absent not in names
    assert names.count("DELEGATE") == 1  # one XNNPACK partition: no op left out
    # No hidden zero blocks: the float constant matrices hold exactly the
    # model's kernel weights (biases may be folded or shared by the converter).
    produced = {i for op in ops for i in op["outputs"]}
    kernels = {i for op in ops if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL")
               for i in op["inputs"][:2] if i >= 0 and i not in produced
               and tensors[i]["dtype"] == np.float32 and len(tensors[i]["shape"]) >= 2}
    expected = sum(int(np.prod(w.shape)) for w in model.weights if len(w.shape) != 1)
    expected += sum(int(np.prod(w.shape)) for l in model.layers if isinstance(l, PathDense)
                    for w in [l.kernel])  # PathDense stores its blocks flat (rank 1)
    assert sum(int(np.prod(tensors[i]["shape"])) for i in kernels) == expected


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("scheme", [DynamicRange(), Int8()], ids=["dynamic", "int8"])
def test_quantized_lowerings_stay_within_tolerance(lowering, scheme, model, digits, tmp_path):
    path = export_tflite(model, tmp_path / "q.tflite", scheme, digits.x_train, lowering=lowering)
    check = verify(path, model, digits.x_test, scheme)
    if scheme.name == "int8":
        assert_int8_close(check)
    else:
        assert check.passed, check.summary()


def test_per_path_concatenations_have_at_most_five_inputs(digits, tmp_path):
    net = build_supernet(digits.input_shape, 10, depth=3, width=24, seed=0)
    path = export_tflite(derive(net, 24), tmp_path / "m.tflite", Float32(), lowering="per_path")
    ops, _ = _ops(path)
    concat = [len(op["inputs"]) for op in ops if op["op_name"] == "CONCATENATION"]
    assert concat and max(concat) <= 5
    assert [op["op_name"] for op in ops].count("DELEGATE") == 1


def test_cost_model_fitted_to_the_table_predicts_irregular_layers():
    # Synthetic device: per_path costs 0.5 per path; conv costs 1 per width group.
    layers = []
    for b in (1, 2, 3, 4, 5, 6, 8, 12, 24):
        for widths in (equal_widths(24, b), irregular_widths(24, b)):
            layers.append({"quantization": "float32", "lowering": "per_path", "depth": 3,
                           "path_widths": widths, "us": 1.0 + 3 * 0.5 * b})
            layers.append({"quantization": "float32", "lowering": "conv", "depth": 3,
                           "path_widths": widths, "us": 1.0 + 3 * 1.0 * len(set(widths))})
    table = {"format": "mpath-tf-lowering-calibration", "version": 3, "layers": layers}
    costs = predicted_costs(table, [4, 4, 4, 4, 4, 4], "float32")  # 6 paths, 1 group
    assert costs["per_path"] == pytest.approx(4.0, rel=1e-3) and costs["conv"] == pytest.approx(2.0, rel=1e-3)
    assert choose_lowering(table, [4] * 6, "float32") == "conv"
    # A stack of 3 such layers: the per-layer costs three times, the fixed part once.
    assert predicted_costs(table, [4] * 6, "float32", depth=3)["per_path"] == pytest.approx(10.0, rel=1e-3)
    # 6 paths of 6 different widths: six groups make conv the slower one, and
    # padding them to one width would add more than MAX_PADDING of zeros
    assert choose_lowering(table, [1, 2, 3, 4, 6, 8], "float32") == "per_path"
    # two widths close together: on this device weights cost nothing, so
    # padding the 7s to 8 (one group, 8% more weights) is fastest of all
    assert choose_lowering(table, [7, 8, 7, 8, 8, 8], "float32") == "bucketed"
    assert choose_lowering(table, [7, 8, 7, 8, 8, 8], "float32", excluded={"bucketed"}) == "conv"
    assert choose_lowering(table, [24], "float32") == "per_path"
    with pytest.raises(ConfigError, match="no int8 entries"):
        choose_lowering(table, [12, 12], "int8")


def test_auto_export_uses_the_bundled_table(model, digits, tmp_path):
    table = load_profile()
    assert table["version"] == 3 and {"per_path", "batch_matmul", "conv"} == {
        layer["lowering"] for layer in table["layers"]}
    chosen = choose_lowerings(model, "int8", "auto")
    assert set(chosen) == {"path_dense_1", "path_dense_2"}
    assert set(chosen.values()) <= set(LOWERINGS)
    path = export_tflite(model, tmp_path / "auto.tflite", Int8(), digits.x_train, lowering="auto")
    assert_int8_close(verify(path, model, digits.x_test, Int8()))


def test_bad_lowering_and_table(model, tmp_path):
    with pytest.raises(ConfigError, match="Unknown lowering 'fast'"):
        choose_lowerings(model, "float32", "fast")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a lowering profile of version 3"):
        choose_lowerings(model, "float32", "auto", tmp_path / "t.json")
    assert equal_widths(7, 3) == [3, 2, 2]


def test_representative_data_of_the_wrong_shape_leaves_no_file(model, tmp_path):
    with pytest.raises(ConfigError, match=r"representative dataset has examples of shape \(3,\)"):
        export_tflite(model, tmp_path / "m.tflite", Int8(), np.zeros((10, 3), "float32"))
    with pytest.raises(ConfigError, match="needs representative data"):
        export_tflite(model, tmp_path / "m.tflite", Int8(), np.zeros((0, 8, 8), "float32"))
    assert list(tmp_path.iterdir()) == []


def test_cli_export_with_a_lowering_and_int8_io(tiny_run):
    import json

    from click.testing import CliRunner

    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--quantize", "int8",
                                      "--int8-io", "--lowering", "conv", "--no-verify", "--output",
                                      str(tiny_run / "io.tflite")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["quantization"]["int8_io"] is True and "verification" not in report
    assert set(report["lowerings"].values()) <= {"conv"}
    bad = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--int8-io"])
    assert bad.exit_code == 2 and "--int8-io needs --quantize int8" in bad.output


@pytest.mark.parametrize("implementation", ["per_path", "conv", "batch_matmul"])
def test_path_chain_computes_the_stack_it_replaces(implementation, model, digits, tmp_path):
    from converters.lowering import chain_paths
    from mpath_tf.core.layers import PathChain
    from mpath_tf.core.saving import load_model

    grouped = group_paths(model)  # sorted widths, as the batched lowerings need
    chained = chain_paths(grouped, implementation)
    chain = chained.get_layer("path_chain")
    assert isinstance(chain, PathChain) and chain.depth == 2
    assert not any(isinstance(l, PathDense) for l in chained.layers)
    np.testing.assert_allclose(chained.predict(digits.x_test, verbose=0),
                               model.predict(digits.x_test, verbose=0), atol=1e-6)
    config = chain.get_config()
    assert PathChain.from_config(config).get_config() == config
    chained.save(tmp_path / "c.keras")
    np.testing.assert_allclose(load_model(tmp_path / "c.keras").predict(digits.x_test, verbose=0),
                               chained.predict(digits.x_test, verbose=0), atol=1e-6)


def test_path_chain_validates_its_arguments():
    from mpath_tf.core.layers import PathChain

    with pytest.raises(ValueError, match="needs paths of equal width side by side"):
        PathChain([2, 1, 2], depth=2, implementation="conv")
    with pytest.raises(ValueError, match="Received: depth=0"):
        PathChain([2, 2], depth=0)
    PathChain([2, 1, 2], depth=2, implementation="per_path")  # any order works per path


def test_chained_export_joins_the_paths_once(model, tmp_path):
    path = export_tflite(model, tmp_path / "m.tflite", Float32(), lowering="per_path")
    ops = [op["op_name"] for op in _ops(path)[0]]
    # 7 paths: sliced once after the first layer, 2 FULLY_CONNECTED each, one
    # concatenation tree before the classifier (5 + 2 inputs, then those 2).
    # (one more STRIDED_SLICE belongs to the Flatten of the 8x8 input)
    assert ops.count("STRIDED_SLICE") == 7 + 1 and ops.count("CONCATENATION") == 3
    assert ops.count("FULLY_CONNECTED") == 1 + 2 * 7 + 1


def test_int8_with_a_path_that_never_activates_still_runs(model, digits, tmp_path):
    from converters.tflite import _has_empty_range, convert

    dead = keras.models.clone_model(model)
    dead.set_weights(model.get_weights())
    for layer in dead.layers:
        if isinstance(layer, PathDense):
            bias = keras.ops.convert_to_numpy(layer.bias).copy()
            bias[: layer.path_widths[0]] = -100.0  # path 0 is 0 after ReLU for every input
            layer.set_blocks(layer.get_blocks(), bias)
    content = convert(dead, Int8(), digits.x_train, lowering="per_path")
    assert not _has_empty_range(content)
    path = tmp_path / "dead.tflite"
    path.write_bytes(content)
    assert_int8_close(verify(path, dead, digits.x_test, Int8()))


# A lowering profile under which one grouped op costs as much as 400 weights:
# padding a few paths to share an op pays (the bundled table's conv costs
# are of that kind at moderate path counts).
OP_HEAVY = {"layers": [
    {"quantization": q, "lowering": lowering, "path_widths": ws, "depth": 1,
     "us": (4.0 if lowering == "per_path" else 5.0) * len(set(ws) if lowering == "conv" else ws)
     + 0.0125 * sum(w * w for w in ws)}
    for q in ("float32", "int8") for lowering in ("per_path", "conv")
    for ws in ([8] * 4, [4] * 8, [2] * 16, [1, 3] * 8, [2, 6] * 4, [1, 2, 5] * 4, [3, 5, 7, 9])]}


def test_bucketed_pads_to_few_widths_keeps_the_function_and_counts_the_padding(
        model, digits, tmp_path):
    widths = model.get_layer("path_dense_1").path_widths
    plan = lowering_plan(model, "float32", "bucketed", OP_HEAVY)
    edges = plan["bucket_edges"]
    assert edges and len(edges) < len(set(widths))  # fewer ops per layer than widths
    padded = pad_paths(model, edges)
    assert padded.get_layer("path_dense_1").path_widths == padded_widths(widths, edges)
    np.testing.assert_allclose(padded.predict(digits.x_test, verbose=0),
                               model.predict(digits.x_test, verbose=0), atol=1e-6)
    assert plan["padding_weights"] == padded.count_params() - model.count_params() > 0

    path = export_tflite(model, tmp_path / "b.tflite", Float32(), lowering="bucketed",
                         profile=OP_HEAVY)
    check = verify(path, model, digits.x_test, Float32())
    assert check.passed and check.max_abs_diff <= 1e-5, check
    ops, tensors = _ops(path)
    names = [op["op_name"] for op in ops]
    stack = [l for l in model.layers if isinstance(l, PathDense)]
    assert names.count("CONV_2D") == len(edges) * len(stack)  # one op per bucket and layer
    assert "GATHER" not in names and names.count("DELEGATE") == 1
    # the flatbuffer audit: the constant matrices hold the model's kernel
    # weights plus exactly the padding's (the only zeros allowed in a file)
    produced = {i for op in ops for i in op["outputs"]}
    kernels = {i for op in ops if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D")
               for i in op["inputs"][:2] if i >= 0 and i not in produced
               and tensors[i]["dtype"] == np.float32 and len(tensors[i]["shape"]) >= 2}
    def kernel_count(m):
        return (sum(int(np.prod(w.shape)) for w in m.weights if len(w.shape) != 1)
                + sum(int(np.prod(l.kernel.shape)) for l in m.layers if isinstance(l, PathDense)))
    assert sum(int(np.prod(tensors[i]["shape"])) for i in kernels) == kernel_count(padded)


def test_bucketed_int8_stays_within_tolerance(model, digits, tmp_path):
    path = export_tflite(model, tmp_path / "q.tflite", Int8(), digits.x_train,
                         lowering="bucketed", profile=OP_HEAVY)
    assert_int8_close(verify(path, model, digits.x_test, Int8()))


def test_auto_picks_bucketed_when_ops_cost_more_than_padding(model):
    widths = model.get_layer("path_dense_1").path_widths
    assert choose_lowering(OP_HEAVY, widths, "float32", depth=2) == "bucketed"
    assert set(choose_lowerings(model, "float32", "auto", OP_HEAVY).values()) == {"bucketed"}
    # when an op costs nothing, padding never pays: auto keeps the unpadded widths
    cheap_ops = {"layers": [dict(l, us=0.0125 * sum(w * w for w in l["path_widths"]) + 0.1)
                            for l in OP_HEAVY["layers"]]}
    assert choose_lowering(cheap_ops, widths, "float32", depth=2) != "bucketed"


def test_bucketed_needs_a_stack(tmp_path):
    from mpath_tf.core.layers import PathDense as PD

    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2)(PD([2, 4], "relu")(inputs))
    with pytest.raises(ConfigError, match="`lowering='bucketed'` pads a stack"):
        lowering_plan(keras.Model(inputs, outputs), "float32", "bucketed", OP_HEAVY)
