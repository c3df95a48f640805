"""The user's own data: class names of any kind, raw feature scales, labels in the files."""

import json
import zipfile

import keras
import numpy as np
import pytest

from converters import Float32, Int8, export_tflite, read_labels, run_tflite, verify, with_labels
from converters.metadata import METADATA_IDENTIFIER, METADATA_NAME
from converters.tflite import convert, op_summary
from mpath_tf import adapt_normalization, build_mlp, build_supernet, derive
from mpath_tf.data import Dataset, load_file
from mpath_tf.errors import DataError
from mpath_tf.core.permeability import discrete_permeability
from mpath_tf.training.loop import accuracy, train

CLASSES = ["walking", "idle", "running"]


def _sensor_table(rng, n=600, scales=(0.1, 50.0, 3.0, 1.0), offsets=(100.0, -80.0, 0.0, 5.0)):
    """Raw readings: three informative columns of very different scales and offsets,
    one constant column, string labels of unequal class sizes."""
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    z = rng.normal(size=(n, 3)) + 2 * np.array([[0, 0, 0], [1.5, -1, 0.5], [-1, 1.5, -1.5]])[y]
    x = np.column_stack([z * np.array(scales[:3]) + np.array(offsets[:3]),
                         np.full(n, offsets[3])])
    return x.astype("float32"), np.array(CLASSES)[y]


def _write_csv(path, x, labels, label="activity"):
    header = ",".join([f"s{i}" for i in range(x.shape[1])] + [label])
    rows = [",".join(f"{v:.6g}" for v in row) + f",{c}" for row, c in zip(x, labels)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("labels, names", [
    pytest.param(["b", "a", "c", "a", "b", "c"] * 20, ["a", "b", "c"], id="strings"),
    pytest.param([12, 3, 7, 3, 12, 7] * 20, [3, 7, 12], id="integers-not-0-k"),
    pytest.param([True, False] * 60, [False, True], id="booleans"),
    pytest.param([0.5, 1.5, 2.5] * 40, [0.5, 1.5, 2.5], id="floats"),
])
def test_labels_of_any_kind_map_to_sorted_class_indices(tmp_path, labels, names):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=(len(labels), 3)), y_train=np.array(labels))
    data = load_file(path)
    assert data.class_labels == names
    assert data.class_names == [str(n) for n in names]
    json.dumps(data.class_labels)  # recorded in run.json and results.json
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert sorted(set(y.tolist())) == list(range(len(names)))


def test_csv_numeric_labels_sort_as_numbers(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 2))
    data = load_file(_write_csv(tmp_path / "d.csv", x, [9, 10, 2] * 20), "activity")
    assert data.class_labels == [2, 9, 10]


@pytest.mark.parametrize("content, message", [
    pytest.param("", "the file is empty", id="empty"),
    pytest.param("a,b,activity\n", "no data rows after the header", id="header-only"),
    pytest.param("a,b,activity\n1,2,x\n1,oops,y\n", "column 'b' holds 'oops', not a number",
                 id="not-numeric"),
    pytest.param("a,b,activity\n1,2,x\n1,,y\n", "line 3: column 'b' is empty or NaN",
                 id="missing-value"),
    pytest.param("a,b,activity\n1,2,x\n1,inf,y\n", "line 3: column 'b' is infinite",
                 id="infinite"),
    pytest.param("a,b,activity\n1,2,x\n1,3,\n", "line 3: the label column 'activity' is empty",
                 id="empty-label"),
])
def test_bad_csv_content_is_named(tmp_path, content, message):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_file(tmp_path / "d.csv", "activity")


def test_a_class_with_one_example_is_named_with_the_fix(tmp_path):
    x = np.random.default_rng(0).normal(size=(41, 2))
    labels = ["idle", "walking"] * 20 + ["falling"]
    with pytest.raises(DataError, match="class 'falling' has a single example.*Add examples"):
        load_file(_write_csv(tmp_path / "d.csv", x, labels), "activity")


def test_a_column_of_many_distinct_values_needs_confirmation(tmp_path):
    x = np.random.default_rng(0).normal(size=(14014, 2))
    ids = [f"id{i % 1001}" for i in range(len(x))]  # 14 examples of each of 1001 values
    path = _write_csv(tmp_path / "d.csv", x, ids)
    with pytest.raises(DataError, match="1001 distinct values.*--many-classes"):
        load_file(path, "activity")
    assert load_file(path, "activity", many_classes=True).num_classes == 1001


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_npz_is_diagnosed(tmp_path, damage):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((50, 3)), y_train=np.arange(50) % 2)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncate" else b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not a readable .npz file.*numpy.savez"):
        load_file(path)


def test_float_features_are_standardized_images_are_not(tmp_path):
    rng = np.random.default_rng(0)
    x, labels = _sensor_table(rng)
    assert load_file(_write_csv(tmp_path / "d.csv", x, labels), "activity").normalize
    assert not load_file(tmp_path / "d.csv", "activity", normalize=False).normalize
    np.savez(tmp_path / "img.npz", x_train=rng.integers(0, 255, (60, 4, 4), dtype=np.uint8),
             y_train=np.arange(60) % 2)
    assert not load_file(tmp_path / "img.npz").normalize


def test_constant_columns_give_no_inf_or_nan():
    model = build_mlp((3,), 2, 2, 4, normalize=True, seed=0)
    x = np.array([[1.0, 7.0, 0.0], [3.0, 7.0, 0.0], [5.0, 7.0, 0.0]], "float32")
    adapt_normalization(model, x)
    standardized = model.get_layer("input_normalization")(x).numpy()
    assert np.all(np.isfinite(standardized))
    np.testing.assert_allclose(standardized[:, 1:], 0.0)
    # a test value of a column constant in training stays finite and moderate
    shifted = model.get_layer("input_normalization")(np.array([[3.0, 7.5, 1.0]], "float32"))
    np.testing.assert_allclose(shifted.numpy()[0, 1:], [0.5, 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def sensor_model():
    """A derived, fine-tuned model with input normalization, trained on raw readings."""
    rng = np.random.default_rng(1)
    x, labels = _sensor_table(rng, n=1500)
    y = np.searchsorted(sorted(CLASSES), labels)
    data = Dataset("s", x[:1000], y[:1000], x[1000:1200], y[1000:1200], x[1200:], y[1200:], 3,
                   class_labels=sorted(CLASSES), normalize=True)
    net = build_supernet((4,), 3, depth=3, width=12, seed=0, normalize=True)
    adapt_normalization(net, data.x_train)
    train(net, data, 15, batch_size=32)
    model = derive(net, 3)
    train(model, data, 10, batch_size=32, score_start=True)
    return net, model, data


def test_derived_model_keeps_the_normalization_and_the_function(sensor_model):
    net, model, data = sensor_model
    widths = net.derived_widths(3)
    expected = net(data.x_test, permeability=discrete_permeability(widths)).numpy()
    np.testing.assert_allclose(derive(net, 3)(data.x_test).numpy(), expected, atol=1e-5)
    assert model.get_layer("input_normalization") is not None


def test_normalized_model_round_trips_through_keras_files(sensor_model, tmp_path):
    net, model, data = sensor_model
    for m, name in ((net, "net.keras"), (model, "model.keras")):
        m.save(tmp_path / name)
        loaded = keras.saving.load_model(tmp_path / name)
        np.testing.assert_allclose(loaded.predict(data.x_test, verbose=0),
                                   m.predict(data.x_test, verbose=0), atol=1e-6)


def test_int8_file_takes_raw_readings_and_standardizes_them_in_float(sensor_model, tmp_path):
    _, model, data = sensor_model
    assert accuracy(model, data.x_test, data.y_test) > 0.85  # a model worth checking
    path = export_tflite(model, tmp_path / "m.tflite", Int8(), data.x_train, lowering="auto")
    ops = op_summary(path)["ops"]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    first = interpreter._get_ops_details()[0]["op_name"]
    assert first == "SUB" and "QUANTIZE" in ops, ops  # standardized before quantizing
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    check = verify(path, model, data.x_test, Int8(), data.y_test)
    assert check.passed, check.summary()
    # the same model quantized from its raw input: the small-scale column is lost
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(convert_without_float_normalization(model, data.x_train))
    worse = verify(plain, model, data.x_test, Int8(), data.y_test)
    assert worse.mean_abs_diff > 2 * check.mean_abs_diff, (worse.summary(), check.summary())


def convert_without_float_normalization(model, x):
    """int8 conversion with the normalization layer renamed, so it is quantized like the rest."""
    copy = keras.models.clone_model(model, clone_function=lambda layer: layer.__class__.from_config(
        {**layer.get_config(), "name": layer.name.replace("input_normalization", "norm")}))
    copy.set_weights(model.get_weights())
    return convert(copy, Int8(), x)


def test_fine_tuning_never_ends_below_its_start(sensor_model):
    net, _, data = sensor_model
    model = derive(net, 12)  # 12 paths of width 1: far from the supernet's function
    start = accuracy(model, data.x_val, data.y_val)
    summary = {}
    # a learning rate that wrecks the model: the start must be kept
    end = train(model, data, 2, learning_rate=5.0, score_start=True, summary=summary)
    assert end >= start
    assert summary["start_accuracy"] == pytest.approx(start)


def test_labels_are_embedded_as_tflite_metadata_and_written_beside(sensor_model, tmp_path):
    _, model, data = sensor_model
    plain = export_tflite(model, tmp_path / "plain" / "m.tflite") if (tmp_path / "plain").mkdir() \
        is None else None
    labelled = export_tflite(model, tmp_path / "m.tflite", Float32(), labels=data.class_names)
    assert (tmp_path / "labels.txt").read_text().splitlines() == sorted(CLASSES)
    assert read_labels(labelled) == sorted(CLASSES)
    assert read_labels(plain) is None
    # the standard layout: a TFLITE_METADATA entry holding an M001 flatbuffer, and the
    # label file in a zip archive appended to the model
    from ai_edge_litert import schema_py_generated as schema

    content = labelled.read_bytes()
    tflite = schema.Model.GetRootAs(content, 0)
    entries = {tflite.Metadata(i).Name().decode(): tflite.Metadata(i).Buffer()
               for i in range(tflite.MetadataLength())}
    meta = tflite.Buffers(entries[METADATA_NAME]).DataAsNumpy().tobytes()
    assert meta[4:8] == METADATA_IDENTIFIER
    assert zipfile.ZipFile(labelled).read("labels.txt").decode().split() == sorted(CLASSES)
    # LiteRT runs it and gives the same outputs as without metadata
    np.testing.assert_array_equal(run_tflite(labelled, data.x_test), run_tflite(plain, data.x_test))


def test_embedded_labels_keep_the_file_reproducible(monkeypatch):
    # the same model and labels give the same bytes at any time (a resumed
    # run's files equal an uninterrupted run's)
    import time

    content = convert(build_mlp((2,), 2, 2, 3, seed=0))
    first = with_labels(content, ["a", "b"])
    monkeypatch.setattr(time, "time", lambda: 2e9)  # 2033: another zip time stamp
    assert with_labels(content, ["a", "b"]) == first


def test_labels_with_line_breaks_are_refused():
    with pytest.raises(ValueError, match="line breaks"):
        with_labels(convert(build_mlp((2,), 2, 2, 3)), ["a\nb", "c"])


def test_a_fine_tuning_killed_before_its_first_epoch_resumes_from_its_start(sensor_model,
                                                                          tmp_path):
    from mpath_tf.training.loop import EpochCheckpoint

    net, _, data = sensor_model
    model = derive(net, 4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    start = accuracy(model, data.x_val, data.y_val)
    EpochCheckpoint(tmp_path).set_start(model, start)  # then the process dies
    resumed = derive(net, 4)
    resumed.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    checkpoint = EpochCheckpoint(tmp_path)
    assert checkpoint.restore(resumed) == 0
    assert checkpoint.best_value == pytest.approx(start) and checkpoint.best_epoch == -1
    for mine, theirs in zip(checkpoint.best_weights, model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_the_best_epoch_breaks_accuracy_ties_by_validation_loss(tmp_path):
    """On a small validation split the accuracy saturates early; the epoch
    kept is then the one of lowest validation loss, not the first to reach
    it (breast_cancer: epoch 3 of 185 was kept, 2-3.5 test points lost)."""
    from mpath_tf.training.loop import EpochCheckpoint

    model = build_mlp((2,), 2, 2, 3)
    checkpoint = EpochCheckpoint(tmp_path)
    checkpoint.set_model(model)
    logs = [(0.90, 0.50), (1.00, 0.40), (1.00, 0.20), (0.98, 0.05), (1.00, 0.30)]
    for epoch, (acc, loss) in enumerate(logs):
        checkpoint.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
    assert checkpoint.best_epoch == 2 and checkpoint.best_value == 1.0  # not 1 (first), not 3
    resumed = EpochCheckpoint(tmp_path)  # and a resumed training keeps comparing with it
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    resumed.restore(model)
    resumed.set_model(model)
    resumed.on_epoch_end(5, {"val_accuracy": 1.0, "val_loss": 0.25})
    assert resumed.best_epoch == 2
    resumed.on_epoch_end(6, {"val_accuracy": 1.0, "val_loss": 0.1})
    assert resumed.best_epoch == 6


def test_input_normalization_config_round_trip_and_copied_weights():
    from mpath_tf.core.layers import InputNormalization

    layer = InputNormalization(name="input_normalization")
    config = layer.get_config()
    assert InputNormalization.from_config(config).get_config() == config
    # weights copied in with set_weights are used (Keras's Normalization would keep
    # the statistics it computed when it was adapted or loaded)
    copy = InputNormalization.from_config(config)
    copy.build((None, 2))
    copy.set_weights([np.array([10.0, -4.0]), np.array([4.0, 0.25]), np.array(0)])
    np.testing.assert_allclose(copy(np.array([[12.0, -4.5]], "float32")).numpy(), [[1.0, -1.0]])
