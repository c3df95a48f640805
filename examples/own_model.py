"""Start from your own Keras model: make it a supernet, train the membranes,
derive smaller multipath models, export the chosen one to int8 TFLite.

Run from a checkout after installing (README):

    python examples/own_model.py

The model is a small convolutional feature extractor followed by three Dense
layers of 64, on the bundled 8x8 digits. ``to_supernet`` splits the Dense
stack (its first layer stays fully connected, the other two share one set
of membranes) and keeps the trained weights; everything else is carried
over. About a minute on two CPU cores.
"""

import tempfile
from pathlib import Path

import keras

import mpath_tf
from converters import Int8, export_tflite, verify


def users_model(input_shape, num_classes: int) -> keras.Model:
    """The kind of model a user already has."""
    inputs = keras.Input(input_shape)
    h = keras.layers.Reshape((*input_shape, 1))(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    for _ in range(3):
        h = keras.layers.Dense(64, activation="relu")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="my_model")


def main() -> None:
    data = mpath_tf.load_dataset("digits")
    keras.utils.set_random_seed(0)
    model = users_model(data.input_shape, data.num_classes)
    dense_val = mpath_tf.train(model, data, epochs=10, batch_size=32)
    print(f"your model: {model.count_params()} parameters, val accuracy {dense_val:.3f}")

    net = mpath_tf.to_supernet(model)  # starts from the trained weights
    print(f"supernet {net.name}: stack of width {net.width}, {net.depth} layers")
    print(f"one-shot training: val accuracy {mpath_tf.train(net, data, epochs=20, batch_size=32):.3f}")

    counts = mpath_tf.parameter_counts(net)
    results = {}
    for paths in (1, 2, 4, 8, 16):
        derived = mpath_tf.derive(net, paths)
        val = mpath_tf.train(derived, data, epochs=5, batch_size=32, keep_best=True,
                             score_start=True)
        results[paths] = (derived, val)
        print(f"{paths:3d} paths: {counts[paths]:6d} parameters "
              f"({100 * counts[paths] / counts[1]:5.1f}%), val accuracy {val:.3f}")

    best = max(val for _, val in results.values())
    paths = max(b for b, (_, val) in results.items() if val >= best - 0.01)
    chosen = results[paths][0]
    out = Path(tempfile.mkdtemp()) / f"{net.name}-{paths}-paths-int8.tflite"
    export_tflite(chosen, out, Int8(), representative_data=data.x_train)
    check = verify(out, chosen, data.x_test, Int8(), data.y_test)
    print(f"exported {paths} paths to {out} ({out.stat().st_size} bytes): {check.summary()}")


if __name__ == "__main__":
    main()
