"""TFLite export runs in the real LiteRT interpreter and matches Keras."""

import numpy as np
import pytest

from converters import DynamicRange, Float16, Float32, Int8, export_tflite, op_summary, run_tflite
from converters import verify
from mpath_tf import build_mlp, derive, path_widths
from mpath_tf.errors import ConfigError
from mpath_tf.core.supernet import build_supernet
from mpath_tf.training.loop import train
from tests.conftest import assert_int8_close


@pytest.fixture(scope="module")
def trained_net(digits):
    net = build_supernet(digits.input_shape, 10, depth=3, width=24, seed=0)
    train(net, digits, epochs=15, batch_size=32)
    return net


@pytest.fixture(scope="module")
def derived(trained_net, digits):
    model = derive(trained_net, 5)
    train(model, digits, epochs=3, batch_size=32, keep_best=False)
    return model


def test_float32_matches_keras_to_1e_5(derived, digits, tmp_path):
    path = export_tflite(derived, tmp_path / "m.tflite", Float32())
    got = run_tflite(path, digits.x_test)
    np.testing.assert_allclose(got, derived.predict(digits.x_test, verbose=0), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "scheme", [Float16(), DynamicRange(), Int8()], ids=["float16", "dynamic", "int8"]
)
def test_quantized_export_within_its_tolerance(scheme, derived, digits, tmp_path):
    path = export_tflite(derived, tmp_path / "q.tflite", scheme, digits.x_train)
    check = verify(path, derived, digits.x_test, scheme)
    if scheme.name == "int8":
        assert_int8_close(check)
    else:
        assert check.passed, check.summary()
    assert check.quantization == scheme.name


@pytest.fixture(scope="module")
def wide_net(digits):
    # Wide enough that weights, not per-op metadata, dominate the file size.
    return build_supernet(digits.input_shape, 10, depth=4, width=128, seed=0)


def test_int8_file_holds_int8_weights_and_is_smaller(wide_net, digits, tmp_path):
    model = derive(wide_net, 2)
    f32 = export_tflite(model, tmp_path / "f.tflite", Float32())
    i8 = export_tflite(model, tmp_path / "i.tflite", Int8(), digits.x_train)
    assert i8.stat().st_size < 0.35 * f32.stat().st_size
    assert op_summary(i8)["ops"].get("QUANTIZE") == 1


@pytest.mark.parametrize("paths", [1, 3, 7])
def test_block_layers_lower_to_one_fully_connected_per_path(trained_net, paths, tmp_path):
    model = derive(trained_net, paths)
    summary = op_summary(export_tflite(model, tmp_path / "m.tflite"))
    # first layer + (depth - 1) * paths + classifier
    assert summary["ops"]["FULLY_CONNECTED"] == 1 + 2 * paths + 1
    # every weight in the file is a block weight: nothing beyond count_params
    assert summary["fully_connected_weights"] == model.count_params()
    assert len(path_widths(trained_net, paths)) == paths


def test_derived_file_is_smaller_than_the_dense_mlp(wide_net, tmp_path):
    dense_model = build_mlp((8, 8), 10, 4, 128)
    multi_model = derive(wide_net, 8)
    dense = export_tflite(dense_model, tmp_path / "d.tflite")
    multi = export_tflite(multi_model, tmp_path / "m.tflite")
    ratio = multi_model.count_params() / dense_model.count_params()
    # The file shrinks with the parameters (plus a little per-op overhead).
    assert multi.stat().st_size < (ratio + 0.1) * dense.stat().st_size


def test_int8_without_representative_data_is_refused(derived, tmp_path):
    with pytest.raises(ConfigError, match="representative data"):
        export_tflite(derived, tmp_path / "x.tflite", Int8())
    assert not (tmp_path / "x.tflite").exists()


def test_int8_num_samples_is_validated():
    with pytest.raises(ConfigError, match="num_samples=0"):
        Int8(num_samples=0)


def test_float16_file_holds_half_size_weights(wide_net, tmp_path):
    model = derive(wide_net, 2)
    f32 = export_tflite(model, tmp_path / "f.tflite", Float32())
    f16 = export_tflite(model, tmp_path / "h.tflite", Float16())
    assert f16.stat().st_size < 0.55 * f32.stat().st_size
    assert op_summary(f16)["ops"].get("DEQUANTIZE", 0) >= 1


def test_int8_input_and_output_tensors(derived, digits, tmp_path):
    path = export_tflite(derived, tmp_path / "io.tflite", Int8(int8_io=True), digits.x_train)
    from converters.tflite import load_interpreter

    interpreter = load_interpreter(path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert "QUANTIZE" not in op_summary(path)["ops"]
    assert_int8_close(verify(path, derived, digits.x_test, Int8()))
