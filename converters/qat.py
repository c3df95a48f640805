"""Quantization-aware training (QAT) with tensorflow-model-optimization.

tfmot 0.8 supports only the legacy ``tf_keras`` (Keras 2) package
(tensorflow/model-optimization#1119; no Keras 3 plan). A derived model is made
of standard operations, so it is rebuilt in ``tf_keras`` (Dense layers, one
Dense per path on a slice of the neurons, Concatenate), its weights copied,
its Dense layers wrapped by ``quantize_annotate_layer`` / ``quantize_apply``
(fake-quantization of weights and activations), fine-tuned, and converted to
a full-integer ``.tflite``. Install with ``pip install 'mpath-tf[qat]'``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mpath_tf.errors import ConfigError
from mpath_tf.storage import atomic_write_bytes
import keras
import tensorflow as tf
from mpath_tf.core.layers import PathDense


def legacy_keras_modules():
    """``(tf_keras, tensorflow_model_optimization)``, imported on first use.

    TF-MOT 0.8 works only with the legacy ``tf_keras`` package, so QAT and
    the magnitude-pruning baseline run there.

    Raises:
        ConfigError: Either package is missing (names the extra to install).
    """
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as err:
        raise ConfigError(
            f"Quantization-aware training needs tf_keras and tensorflow-model-optimization "
            f"({err.name} is missing): pip install 'mpath-tf[qat]'."
        ) from None
    return tf_keras, tfmot


def _path_slice_class(tf_keras):
    class PathSlice(tf_keras.layers.Layer):
        """Neurons ``start : start + width`` of the input (one path)."""

        def __init__(self, start, width, **kwargs):
            super().__init__(**kwargs)
            self.start, self.width = int(start), int(width)

        def call(self, inputs):
            return inputs[:, self.start : self.start + self.width]

        def get_config(self):
            return {**super().get_config(), "start": self.start, "width": self.width}

    return PathSlice


def to_tf_keras(model):
    """Rebuild a derived Keras 3 model in ``tf_keras`` with the same weights.

    Supports Flatten, Dense and ``PathDense`` layers in a chain (the models
    ``derive`` and ``build_mlp`` make).

    Returns:
        ``(tf_keras model, custom objects)``.

    Raises:
        ConfigError: A layer that cannot be rebuilt (named in the message).
    """
    tf_keras, _ = legacy_keras_modules()
    PathSlice = _path_slice_class(tf_keras)
    inputs = tf_keras.Input(model.input_shape[1:])
    h = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Flatten):
            h = tf_keras.layers.Flatten(name=layer.name)(h)
        elif isinstance(layer, keras.layers.Dense):
            dense = tf_keras.layers.Dense(layer.units, activation=keras.activations.serialize(layer.activation),
                                          name=layer.name)
            h = dense(h)
            dense.set_weights(layer.get_weights())
        elif isinstance(layer, PathDense):
            bias = keras.ops.convert_to_numpy(layer.bias)
            activation = keras.activations.serialize(layer.activation)
            outputs = []
            for k, (block, w) in enumerate(zip(layer.get_blocks(), layer.path_widths)):
                lo = layer.offsets[k]
                dense = tf_keras.layers.Dense(w, activation=activation, name=f"{layer.name}_path{k}")
                outputs.append(dense(PathSlice(lo, w, name=f"{layer.name}_slice{k}")(h)))
                dense.set_weights([block, bias[lo : lo + w]])
            h = outputs[0] if len(outputs) == 1 else tf_keras.layers.Concatenate(name=layer.name)(outputs)
        else:
            raise ConfigError(
                f"Layer '{layer.name}' ({type(layer).__name__}) cannot be rebuilt for "
                "quantization-aware training; only Flatten, Dense and PathDense can."
            )
    return tf_keras.Model(inputs, h, name=model.name), {"PathSlice": PathSlice}


def qat_int8(model, x_train, y_train, epochs: int, batch_size: int = 128,
             learning_rate: float = 1e-4, num_calibration: int = 200, seed: int = 0) -> bytes:
    """Fine-tune ``model`` with fake quantization and convert it to full int8.

    Args:
        model: A derived Keras 3 model (softmax output).
        x_train, y_train: Training data (integer labels).
        epochs: QAT epochs (>= 1).
        batch_size: Batch size.
        learning_rate: Adam learning rate (small: the model is already trained).
        num_calibration: Examples for the converter's representative dataset.
        seed: Seed of the shuffling and the calibration examples.

    Returns:
        The ``.tflite`` bytes (float32 input and output, int8 inside).

    Raises:
        ConfigError: Missing packages, bad epochs, data of the wrong shape.
    """
    tf_keras, tfmot = legacy_keras_modules()
    if epochs < 1:
        raise ConfigError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    x_train = np.asarray(x_train, dtype="float32")
    if x_train.shape[1:] != tuple(model.input_shape[1:]) or len(x_train) == 0:
        raise ConfigError(
            f"QAT data has examples of shape {x_train.shape[1:]} ({len(x_train)} of them); "
            f"the model expects {tuple(model.input_shape[1:])}."
        )
    tf.keras.utils.set_random_seed(seed)
    rebuilt, custom = to_tf_keras(model)
    quantize = tfmot.quantization.keras

    def annotate(layer):
        return quantize.quantize_annotate_layer(layer) if isinstance(layer, tf_keras.layers.Dense) else layer

    with quantize.quantize_scope(custom):
        annotated = tf_keras.models.clone_model(rebuilt, clone_function=annotate)
        annotated.set_weights(rebuilt.get_weights())
        q_model = quantize.quantize_apply(annotated)
    q_model.compile(tf_keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
    q_model.fit(x_train, np.asarray(y_train), epochs=epochs, batch_size=batch_size, verbose=0)

    picks = np.random.default_rng(seed).choice(len(x_train), min(num_calibration, len(x_train)), replace=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(q_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x_train[i : i + 1]] for i in np.sort(picks))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export_qat_int8(model, path: str | os.PathLike, x_train, y_train, epochs: int, **kwargs) -> Path:
    """``qat_int8`` written atomically to ``path``; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, qat_int8(model, x_train, y_train, epochs, **kwargs))
    return path
