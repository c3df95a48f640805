"""Unstructured magnitude pruning with tensorflow-model-optimization.

The dense MLP is rebuilt in ``tf_keras`` (tfmot 0.8 does not support Keras 3;
``converters.qat.to_tf_keras``), wrapped with ``prune_low_magnitude`` and
trained while the sparsity of every kernel rises (polynomial schedule) to
the level that leaves ``budget`` non-zero weights and biases. The pruned
weights are copied back into the Keras 3 MLP. The kernels keep their shapes
(zeros included), so the ``.tflite`` is as large and as slow as the dense
model's: the case where sparsity does not become speed.
Install with ``pip install 'mpath-tf[qat]'``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mpath_tf.baselines.common import (
    TOLERANCE,
    BaselineResult,
    MLPSpec,
    dense_mlp,
    within_budget,
)
from mpath_tf.errors import ConfigError


def nonzero_parameters(model) -> int:
    """Non-zero kernel weights plus all biases of a Dense MLP."""
    total = 0
    for layer in model.layers:
        for weight in layer.weights:
            values = np.asarray(weight)
            total += int(np.count_nonzero(values)) if "kernel" in weight.name else values.size
    return total


def compress(spec: MLPSpec, data, budget: int, epochs: int = 5, seed: int = 0,
             batch_size: int = 128, learning_rate: float = 1e-3,
             ramp: float = 0.6) -> BaselineResult:
    """Magnitude-pruned ``spec`` MLP with ``budget`` non-zero parameters.

    Args:
        spec: The dense MLP (its shape is kept).
        data: A ``mpath_tf.data.Dataset``.
        budget: Non-zero weights and biases to keep.
        epochs: Training epochs (pruning happens during them).
        seed: Initialization and shuffling seed.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        ramp: Share of the training over which sparsity rises to its target.

    Returns:
        A ``BaselineResult`` whose ``parameters`` counts non-zero weights and
        biases; ``widths`` are the unchanged dense widths; no separate search
        (``search_seconds`` 0, everything is training).

    Raises:
        ConfigError: Missing tfmot/tf_keras, or a budget below the biases.
    """
    import tensorflow as tf

    from converters.qat import legacy_keras_modules, to_tf_keras
    from mpath_tf.training.loop import accuracy

    tf_keras, tfmot = legacy_keras_modules()
    spec.check(budget)
    model = dense_mlp(spec, seed=seed)
    sizes = [spec.inputs, *spec.widths, spec.num_classes]
    kernels = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    biases = sum(sizes[1:])
    if budget <= biases:
        raise ConfigError(f"Budget {budget} leaves no kernel weight: the MLP has {biases} biases.")
    sparsity = 1.0 - (budget - biases) / kernels
    x, y = np.asarray(data.x_train, "float32"), np.asarray(data.y_train)
    steps = epochs * math.ceil(len(x) / batch_size)
    frequency = max(1, int(ramp * steps) // 50)
    end_step = frequency * max(1, int(ramp * steps) // frequency)  # a pruning step lands on it
    sparsity_api = tfmot.sparsity.keras
    schedule = sparsity_api.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step,
                                            frequency=frequency)
    tf.keras.utils.set_random_seed(seed)
    rebuilt, _ = to_tf_keras(model)
    start = time.perf_counter()
    pruned = sparsity_api.prune_low_magnitude(rebuilt, pruning_schedule=schedule)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
               callbacks=[sparsity_api.UpdatePruningStep()])
    model.set_weights(sparsity_api.strip_pruning(pruned).get_weights())
    seconds = time.perf_counter() - start
    parameters = nonzero_parameters(model)
    if not within_budget(parameters, budget):
        raise ConfigError(f"magnitude pruning kept {parameters} non-zero parameters, more than "
                          f"{TOLERANCE:.0%} from the budget {budget}.")
    return BaselineResult("magnitude", list(spec.widths), parameters, model,
                          accuracy(model, data.x_val, data.y_val), 0.0, seconds,
                          {"sparsity": sparsity, "end_step": end_step})
