"""int16x8 export (int8 weights, int16 activations): the file really holds
int16 activations and int8 weights and passes its bounds, and paths that
never activate on the calibration data are handled. Its bounds on a real
MNIST model, and how much closer to Keras it is than full int8, are checked
in test_verify.py."""

import numpy as np
import pytest

from converters import Int16x8, choose_lowerings, export_tflite, get_quantization, verify
from converters.tflite import load_interpreter
from mpath_tf import build_supernet, derive
from mpath_tf.errors import ConfigError
from mpath_tf.training.loop import train


@pytest.fixture(scope="module")
def model(digits):
    net = build_supernet(digits.input_shape, 10, depth=4, width=24, seed=0)
    train(net, digits, epochs=15, batch_size=32)
    derived = derive(net, 5)
    train(derived, digits, epochs=3, batch_size=32, keep_best=False)
    return derived


def test_int16_activations_int8_weights_and_closer_than_int8(model, digits, tmp_path):
    path = export_tflite(model, tmp_path / "m.tflite", Int16x8(), digits.x_train, "conv")
    interpreter = load_interpreter(path)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    weights, activations = [], set()
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D"):
            data, kernel, *bias = (tensors[i] for i in op["inputs"] if i >= 0)
            activations |= {np.dtype(data["dtype"]), np.dtype(tensors[op["outputs"][0]]["dtype"])}
            weights.append(kernel)
    assert activations == {np.dtype(np.int16)}
    assert {np.dtype(w["dtype"]) for w in weights} == {np.dtype(np.int8)}
    # Every weight in the file is a block weight (no zero blocks): kernels sum to the
    # model's kernel parameters (count_params less the biases).
    biases = sum(l.get_weights()[1].size for l in model.layers if l.weights)
    assert sum(int(np.prod(w["shape"])) for w in weights) == model.count_params() - biases

    check = verify(path, model, digits.x_test, Int16x8(), digits.y_test)
    assert check.passed, check.summary()
    assert get_quantization("int16x8") == Int16x8()


def test_paths_that_never_activate(model, digits, tmp_path):
    import keras

    trained, model = model, keras.models.clone_model(model)  # the module's model stays as it is
    model.set_weights(trained.get_weights())
    # Kill the narrowest path of the first block layer: its outputs are 0 on
    # every calibration example, so the converter gives them an empty range.
    layer = model.get_layer("path_dense_1")
    blocks, bias = layer.get_blocks(), layer.get_weights()[1]
    k = int(np.argmin(layer.path_widths))
    lo, w = layer.offsets[k], layer.path_widths[k]
    blocks[k], bias[lo:lo + w] = -np.abs(blocks[k]), -1.0
    layer.set_blocks(blocks, bias)
    # Per path, the dead path's op output has an empty range that the next
    # layer's op cannot take: refused, with the way out, and no file left behind.
    with pytest.raises(ConfigError, match="never activate.*--lowering batch_matmul"):
        export_tflite(model, tmp_path / "per_path.tflite", Int16x8(), digits.x_train, "per_path")
    assert not (tmp_path / "per_path.tflite").exists()
    # The batched lowerings requantize each group's output before the next
    # layer: the files run and stay close to Keras (this small model's outputs
    # are soft: measured agreement 0.975 / 0.986, max |diff| 0.080 / 0.077).
    for lowering in ("conv", "batch_matmul"):
        path = export_tflite(model, tmp_path / f"{lowering}.tflite", Int16x8(), digits.x_train,
                             lowering)
        check = verify(path, model, digits.x_test, Int16x8(), digits.y_test)
        assert check.max_abs_diff <= 0.1 and check.agreement >= 0.96, (lowering, check.summary())


def test_auto_never_picks_per_path_for_int16x8(digits):
    net = build_supernet(digits.input_shape, 10, depth=4, width=24, seed=0)
    for paths in (2, 5, 24):
        choice = set(choose_lowerings(derive(net, paths), "int16x8", "auto").values())
        assert choice and "per_path" not in choice, (paths, choice)


def test_int16x8_without_data_is_refused(model, tmp_path):
    with pytest.raises(ConfigError, match="int16x8 quantization needs representative data"):
        export_tflite(model, tmp_path / "x.tflite", Int16x8())
    assert not (tmp_path / "x.tflite").exists()
    with pytest.raises(ConfigError, match="num_samples=0"):
        Int16x8(num_samples=0)
