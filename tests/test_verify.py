"""The parity check (``converters.parity``): its bounds on a real MNIST model
in every mode, each bound firing on outputs that break it, and the errors for
models the converter cannot lower."""

import json

import keras
import numpy as np
import pytest

from converters import (
    QUANTIZATIONS,
    DynamicRange,
    Float16,
    Float32,
    Int8,
    Int16x8,
    compare_outputs,
    export_tflite,
    get_quantization,
    output_step,
    verify,
)
from mpath_tf import build_supernet, derive
from mpath_tf.errors import ConfigError
from mpath_tf.training.loop import train


@pytest.fixture(scope="module")
def mnist(shared_datasets):
    from mpath_tf import load_dataset

    return load_dataset("mnist", shared_datasets)


@pytest.fixture(scope="module")
def mnist_model(mnist):
    # mpath-3-128, one-shot trained on 20,000 images, 8 paths fine-tuned:
    # about 95% test accuracy in ~15 s on 2 cores.
    net = build_supernet(mnist.input_shape, 10, depth=3, width=128, seed=0)
    subset = mnist.__class__(**{**mnist.__dict__, "x_train": mnist.x_train[:20000],
                                "y_train": mnist.y_train[:20000]})
    train(net, subset, epochs=2, batch_size=128)
    model = derive(net, 8)
    train(model, subset, epochs=1, batch_size=128, keep_best=False)
    return model


@pytest.mark.parametrize("mode", sorted(QUANTIZATIONS))
@pytest.mark.parametrize("lowering", ["per_path", "conv"])
def test_every_mode_passes_its_bounds_on_mnist(mode, lowering, mnist_model, mnist, tmp_path):
    scheme = get_quantization(mode)
    if (mode, lowering) == ("int16x8", "per_path"):
        # A width-1 path of this model never activates on the calibration
        # images; per path, 16x8 cannot run its empty range (test_int16x8.py).
        with pytest.raises(ConfigError, match="never activate"):
            export_tflite(mnist_model, tmp_path / "m.tflite", scheme, mnist.x_train, lowering)
        return
    path = export_tflite(mnist_model, tmp_path / "m.tflite", scheme, mnist.x_train, lowering)
    check = verify(path, mnist_model, mnist.x_test, scheme, mnist.y_test)
    assert check.passed, check.summary()
    assert check.examples == 10000 and check.keras_accuracy > 0.9
    assert (check.output_step == pytest.approx(1 / 256)) == (mode == "int8")


def test_int16x8_is_closer_to_keras_than_int8(mnist_model, mnist, tmp_path):
    # int16 activations leave only the int8 weight rounding.
    checks = {}
    for scheme in (Int8(), get_quantization("int16x8")):
        path = export_tflite(mnist_model, tmp_path / f"{scheme.name}.tflite", scheme,
                             mnist.x_train, "conv")
        checks[scheme.name] = verify(path, mnist_model, mnist.x_test, scheme, mnist.y_test)
    wide, narrow = checks["int16x8"], checks["int8"]
    assert wide.mean_abs_diff < 0.5 * narrow.mean_abs_diff, (wide.summary(), narrow.summary())
    assert wide.p99_abs_diff < 0.5 * narrow.p99_abs_diff
    assert wide.agreement >= narrow.agreement


def _probabilities(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_each_bound_fails_on_outputs_that_break_it():
    rng = np.random.default_rng(0)
    expected = _probabilities(rng.normal(0, 4, (1000, 10)))
    labels = expected.argmax(-1)
    # float32: summation order reaches 1e-5 (a dense digits MLP: 1.14e-5), a
    # conversion bug much more
    assert compare_outputs(expected, expected + 5e-5, Float32()).passed
    float32 = compare_outputs(expected, expected + 2e-4, Float32())
    assert float32.failures == ("largest difference 2.00e-04 > 0.0001",)
    # float16: 1e-3 plus 1e-3 of the output's size.
    assert compare_outputs(expected, expected * (1 + 9e-4) + 9e-4, Float16()).passed
    assert not compare_outputs(expected, expected + 1.1e-3, Float16()).passed
    assert not compare_outputs(expected, expected + 0.2, DynamicRange()).passed
    # int8: 5 output steps on every value are reported but gate nothing (the
    # top-1 class and the accuracy are what users notice); then 2% of
    # examples flipped.
    steps = compare_outputs(expected, expected + 5 / 256, Int8(), labels, 1 / 256)
    assert steps.passed and "5.00 output steps (not gated)" in steps.summary()
    flipped = expected.copy()
    flipped[:20] = np.roll(flipped[:20], 1, axis=-1)
    check = compare_outputs(expected, flipped, Int8(), labels, 1 / 256)
    # 98% agreement is no broken calibration, but 98% of the accuracy is below 99%
    assert check.failures == ("accuracy 0.9800 < 99% of the Keras model's 1.0000",)
    assert check.to_dict()["passed"] is False and check.tflite_accuracy == 0.98
    assert "top-1 agreement 0.9800" in check.summary() and "accuracy 1.0000 -> 0.9800" in \
        check.summary()


def test_int8_gates_as_mlperf_a_borderline_file_passes():
    """1.5% of examples change class, half of them towards the right one: the
    file agrees on 98.5% (the old 99% gate failed it) and keeps 99.6% of the
    accuracy, so it passes; both figures are printed."""
    rng = np.random.default_rng(2)
    expected = _probabilities(rng.normal(0, 4, (1000, 10)))
    labels = expected.argmax(-1)
    labels[:100] = (labels[:100] + 1) % 10  # Keras is right on 90%
    flipped = expected.copy()
    flipped[:8] = np.roll(flipped[:8], 1, axis=-1)  # 8 wrong ones made right
    flipped[200:207] = np.roll(flipped[200:207], 1, axis=-1)  # 7 right ones made wrong
    check = compare_outputs(expected, flipped, Int8(), labels, 1 / 256)
    assert check.agreement == 0.985 and check.keras_accuracy == 0.9
    assert check.tflite_accuracy == pytest.approx(0.901)
    assert check.passed, check.summary()
    assert "top-1 agreement 0.9850" in check.summary()


def test_int8_gates_fail_a_broken_calibration(digits, tmp_path):
    """A real file calibrated on inputs 1,000 times too small: its activation
    ranges clip everything the model sees, agreement collapses, and the
    failure names the calibration; the same model calibrated right passes."""
    from mpath_tf import build_mlp

    model = build_mlp(digits.input_shape, digits.num_classes, 2, 32, seed=0)
    train(model, digits, epochs=30, batch_size=32, keep_best=False)
    good = export_tflite(model, tmp_path / "good.tflite", Int8(), digits.x_train)
    broken = export_tflite(model, tmp_path / "broken.tflite", Int8(), digits.x_train / 1000)
    assert verify(good, model, digits.x_test, Int8(), digits.y_test).passed
    check = verify(broken, model, digits.x_test, Int8(), digits.y_test)
    assert check.agreement < 0.97
    assert any("the calibration is broken" in f for f in check.failures), check.failures


@pytest.mark.parametrize("scheme", [Float32(), Int8(), Int16x8()], ids=lambda s: s.name)
@pytest.mark.parametrize("where", ["keras", "tflite"])
def test_non_finite_outputs_fail_every_scheme(scheme, where):
    # NaN compares false against every bound, so a NaN model used to pass.
    expected = _probabilities(np.random.default_rng(1).normal(0, 4, (100, 10)))
    got = expected.copy()
    (expected if where == "keras" else got)[3, 2] = np.nan
    check = compare_outputs(expected, got, scheme, expected.argmax(-1) if where == "tflite"
                            else None, 1 / 256)
    assert not check.passed
    assert any("non-finite" in f for f in check.failures), check.failures


def test_output_step_of_int8_files(digits, tmp_path):
    model = derive(build_supernet(digits.input_shape, 10, depth=3, width=12, seed=0), 3)
    f32 = export_tflite(model, tmp_path / "f.tflite")
    i8 = export_tflite(model, tmp_path / "i.tflite", Int8(), digits.x_train)
    io = export_tflite(model, tmp_path / "io.tflite", Int8(int8_io=True), digits.x_train)
    assert output_step(f32) is None
    assert output_step(i8) == pytest.approx(1 / 256) and output_step(io) == pytest.approx(1 / 256)


def _model_with(layer_fn):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="dense_a")(inputs)
    h = keras.layers.Lambda(layer_fn, name="odd_layer")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h))


def test_a_layer_the_converter_cannot_lower_is_named_and_no_file_is_left(tmp_path):
    import tensorflow as tf

    model = _model_with(lambda t: tf.math.igamma(t, t))
    with pytest.raises(ConfigError, match=r"cannot convert layer 'odd_layer' \(TensorFlow op "
                                          r"Igamma\) with --quantize float32"):
        export_tflite(model, tmp_path / "m.tflite", Float32())
    assert list(tmp_path.iterdir()) == []


def test_cli_export_of_an_unlowerable_model_exits_2(tmp_path):
    import tensorflow as tf
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    # Registered so that the .keras file loads again in the CLI.
    @keras.saving.register_keras_serializable(package="mpath_tf_tests")
    class Igamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.igamma(x, x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Igamma(name="igamma")(inputs)))
    model.save(tmp_path / "m.keras")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "m.keras")])
    assert result.exit_code == 2, result.output
    assert "cannot convert layer 'igamma'" in result.output
    assert not list(tmp_path.glob("*.tflite"))


def test_export_report_is_kept_beside_the_file(tiny_run):
    from mpath_tf.pipeline.workflows import export_model

    report = export_model(tiny_run / "model.keras", "dynamic", lowering="conv",
                          output=tiny_run / "exports" / "m.tflite")
    saved = json.loads((tiny_run / "exports" / "m.tflite.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["quantization"]["name"] == "dynamic" and saved["lowering"] == "conv"
    assert saved["bytes"] == (tiny_run / "exports" / "m.tflite").stat().st_size
    assert saved["verification"]["passed"] and "tensorflow" in saved["versions"]
    unverified = export_model(tiny_run / "model.keras", "float32", verify=False,
                              output=tiny_run / "exports" / "n.tflite")
    assert "verification" not in unverified


def test_export_takes_a_scheme_object_and_speaks_in_its_arguments(tiny_run):
    """The library takes the quantization as a scheme object (its options
    are the scheme's fields, not flags) and names its own arguments in
    errors; the CLI says the same in its options."""
    from click.testing import CliRunner

    from converters import Int8
    from mpath_tf.cli import cli
    from mpath_tf.pipeline.workflows import export_model

    report = export_model(tiny_run / "model.keras", Int8(int8_io=True, equalize=0.25),
                          verify=False, output=tiny_run / "exports" / "io.tflite")
    assert report["quantization"]["int8_io"] is True
    assert report["quantization"]["equalize"] == 0.25
    with pytest.raises(ConfigError, match="`qat_epochs` needs `quantization` int8"):
        export_model(tiny_run / "model.keras", "float32", qat_epochs=1)
    result = CliRunner().invoke(cli, ["export", str(tiny_run / "model.keras"), "--qat-epochs",
                                      "1"])
    assert result.exit_code == 2 and "--qat-epochs needs --quantize int8" in result.output
