"""MorphNet-style shrink and expand (section 2.3 of ``../shared/papers/001_...txt``).

Shrink: every hidden Dense is followed by batch normalization whose scale
gamma carries an L1 penalty weighted by the parameters the neuron costs
(its fan-in + 1 + fan-out, relative to the costliest neuron), so cheap
neurons are not kept for free. The penalty is applied by a proximal step
after every Adam update (``SoftThreshold``), so the scales of unneeded
neurons reach exactly zero (a neuron with gamma = 0 outputs a constant).
A plain L1 term in the loss does not sparsify here: the next layer's
normalization undoes any common factor, so the scales of a layer shrink
together (measured on digits: every gamma near 0.18, none below 1e-2, for
lambda from 1e-3 to 1). Expand: the surviving widths
are multiplied by one factor so the MLP meets the budget. ``iterations`` > 1
shrinks the expanded MLP again. The final MLP (no normalization) is
trained from scratch.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import ops

from mpath_tf.baselines.common import (
    MLPSpec,
    dense_mlp,
    Search,
    scale_to_budget,
)
from mpath_tf.training.loop import train


@keras.saving.register_keras_serializable(package="mpath_tf")
class SoftThreshold(keras.constraints.Constraint):
    """Proximal step of an L1 penalty: ``sign(w) * max(0, |w| - threshold)``.

    Applied by the optimizer after every update, with ``threshold`` = step
    size * lambda, it makes weights exactly zero where a penalty in the loss
    would leave them small.

    Args:
        threshold: Shrinkage per update (>= 0).

    Example:
        >>> import numpy as np
        >>> np.asarray(SoftThreshold(0.5)(np.array([1.0, -0.2, -3.0], "float32"))).tolist()
        [0.5, 0.0, -2.5]
    """

    def __init__(self, threshold: float):
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0. Received: threshold={threshold}")
        self.threshold = float(threshold)

    def __call__(self, w):
        return ops.sign(w) * ops.maximum(ops.abs(w) - self.threshold, 0.0)

    def get_config(self) -> dict:
        return {"threshold": self.threshold}


def shrink(spec: MLPSpec, data, strength: float = 1.0, epochs: int = 3, seed: int = 0,
           batch_size: int = 128, learning_rate: float = 1e-3) -> list[np.ndarray]:
    """Train with the cost-weighted L1 on the normalization scales.

    Args:
        spec: The MLP to shrink.
        data: A ``mpath_tf.data.Dataset``.
        strength: lambda of the penalty (>= 0).
        epochs: Training epochs.
        seed: Initialization seed.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate (also the proximal step size).

    Returns:
        |gamma| of every hidden neuron, one array per layer (0: removed).

    Raises:
        ValueError: Negative or non-finite ``strength``.
    """
    if not (np.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength must be a finite number >= 0. Received: strength={strength}")
    sizes = [spec.inputs, *spec.widths, spec.num_classes]
    costs = [sizes[i] + 1 + sizes[i + 2] for i in range(len(spec.widths))]  # params per neuron

    def hidden(h, i, width, fan_in):
        h = keras.layers.Dense(width, name=f"hidden_{i + 1}")(h)
        step = learning_rate * strength * costs[i] / max(costs)
        h = keras.layers.BatchNormalization(gamma_constraint=SoftThreshold(step),
                                            name=f"scale_{i + 1}")(h)
        return keras.layers.ReLU()(h)

    model = dense_mlp(spec, seed=seed, hidden=hidden)
    train(model, data, epochs, batch_size=batch_size, learning_rate=learning_rate, keep_best=False)
    return [np.abs(np.asarray(model.get_layer(f"scale_{i + 1}").gamma))
            for i in range(len(spec.widths))]


def search(spec: MLPSpec, data, seed: int = 0, batch_size: int = 128, strength: float = 1.0,
           search_epochs: int = 3, iterations: int = 1) -> Search:
    """Shrink ``spec``; with ``iterations`` > 1, expand the survivors back to
    the dense MLP's parameter count and shrink again.

    Args:
        spec: The dense MLP.
        data: A ``mpath_tf.data.Dataset``.
        seed: Seed of the shrinking runs.
        batch_size: Mini-batch size.
        strength: lambda of the L1 penalty.
        search_epochs: Epochs of each shrinking training.
        iterations: Shrink-expand rounds (>= 1).

    Returns:
        A ``Search`` whose ``widths(budget)`` expands the last survivors
        uniformly; ``details["history"]`` lists each round's survivors.

    Raises:
        ValueError: ``iterations`` < 1.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1. Received: iterations={iterations}")
    start = time.perf_counter()
    current, history = spec, []
    for _ in range(iterations):
        scales = shrink(current, data, strength, search_epochs, seed, batch_size)
        alive = [max(1, int(np.sum(s > 0))) for s in scales]
        history.append({"start": list(current.widths), "shrunk": alive})
        current = MLPSpec(spec.input_shape, scale_to_budget(spec, alive, spec.parameters),
                          spec.num_classes)
    return Search("morphnet", spec, time.perf_counter() - start,
                  {"strength": strength, "history": history},
                  lambda budget: scale_to_budget(spec, alive, budget))
