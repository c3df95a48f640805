"""Quantization-aware training through tf_keras + tfmot, end to end."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters import op_summary, run_tflite
from converters.qat import export_qat_int8, to_tf_keras
from mpath_tf import build_supernet, derive
from mpath_tf.cli import cli
from mpath_tf.errors import ConfigError
from mpath_tf.training.loop import train


@pytest.fixture(scope="module")
def model(digits):
    net = build_supernet(digits.input_shape, 10, depth=3, width=24, seed=0)
    train(net, digits, epochs=20, batch_size=32)
    model = derive(net, 5)
    train(model, digits, epochs=5, batch_size=32, keep_best=False)
    return model


def test_tf_keras_rebuild_computes_the_same_function(model, digits):
    rebuilt, _ = to_tf_keras(model)
    np.testing.assert_allclose(rebuilt.predict(digits.x_test, verbose=0),
                               model.predict(digits.x_test, verbose=0), atol=1e-5)
    assert rebuilt.count_params() == model.count_params()


def test_qat_export_is_full_int8_and_keeps_accuracy(model, digits, tmp_path):
    path = export_qat_int8(model, tmp_path / "qat.tflite", digits.x_train, digits.y_train, epochs=2)
    ops = op_summary(path)["ops"]
    assert ops.get("QUANTIZE") == 1 and ops.get("FULLY_CONNECTED", 0) >= 2 + 2 * 5
    keras_acc = np.mean(model.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test)
    qat_acc = np.mean(run_tflite(path, digits.x_test).argmax(-1) == digits.y_test)
    assert keras_acc > 0.8 and qat_acc >= keras_acc - 0.03


def test_qat_refuses_bad_input(model, digits, tmp_path):
    with pytest.raises(ConfigError, match="`epochs` must be >= 1"):
        export_qat_int8(model, tmp_path / "q.tflite", digits.x_train, digits.y_train, epochs=0)
    with pytest.raises(ConfigError, match=r"examples of shape \(3,\)"):
        export_qat_int8(model, tmp_path / "q.tflite", np.zeros((4, 3)), np.zeros(4), epochs=1)
    assert not (tmp_path / "q.tflite").exists()


def test_cli_export_with_qat(tiny_run):
    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--quantize",
                                      "int8", "--qat-epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["qat_epochs"] == 1 and 0 <= report["tflite_test_accuracy"] <= 1
    bad = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--qat-epochs", "1"])
    assert bad.exit_code == 2 and "--qat-epochs needs --quantize int8" in bad.output
