"""Group lasso on neurons (Eq. 1 of ``../shared/papers/001_...txt``).

Training minimizes E_D(W) + lambda * sum_l sum_j sqrt(n_l) * ||W_l[:, j]||_2,
the group of neuron j being its incoming weights (a kernel column, n_l of
them): the ``GroupLasso`` regularizer, added to the loss. Neurons the data
does not need are driven to zero (to within the optimizer's step size:
Adam keeps them oscillating around 0 at about the learning rate), and a
neuron whose root-mean-square incoming weight ends below ``tolerance``
times its layer's largest is removed. If the rest is still over the
budget, the neurons with the smallest such norm go next; if more were
removed than the budget asks, the removed ones with the largest norms are
kept after all (``fit_scores_to_budget``). The architecture found is trained from scratch.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
from keras import ops

from mpath_tf.baselines.common import (
    MLPSpec,
    dense_mlp,
    Search,
    fit_scores_to_budget,
)
from mpath_tf.training.loop import train


@keras.saving.register_keras_serializable(package="mpath_tf")
class GroupLasso(keras.regularizers.Regularizer):
    """``strength * sqrt(n) * sum_j ||W[:, j]||_2`` for a kernel W of shape (n, units).

    Args:
        strength: lambda of Eq. 1 (finite, >= 0).

    Example:
        >>> import numpy as np
        >>> float(GroupLasso(0.5)(np.array([[3.0, 0.0], [4.0, 0.0]], "float32")))
        3.5355...
    """

    def __init__(self, strength: float):
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f"strength must be a finite number >= 0. Received: strength={strength}")
        self.strength = float(strength)

    def __call__(self, kernel):
        norms = ops.sqrt(ops.sum(ops.square(kernel), axis=0) + 1e-12)  # (units,)
        return self.strength * math.sqrt(kernel.shape[0]) * ops.sum(norms)

    def get_config(self) -> dict:
        return {"strength": self.strength}


def sparsify(spec: MLPSpec, data, strength: float = 1e-4, epochs: int = 3, seed: int = 0,
             batch_size: int = 128, learning_rate: float = 1e-3):
    """Train ``spec``'s MLP with the group-lasso penalty on every hidden neuron.

    Args:
        spec: The dense MLP.
        data: A ``mpath_tf.data.Dataset``.
        strength: lambda of Eq. 1 (>= 0).
        epochs: Training epochs.
        seed: Initialization seed.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.

    Returns:
        The trained Keras model (last epoch's weights).

    Raises:
        ValueError: Negative or non-finite ``strength``.
    """
    penalty = GroupLasso(strength)

    def hidden(h, i, width, fan_in):
        return keras.layers.Dense(width, activation="relu", kernel_regularizer=penalty,
                                  name=f"hidden_{i + 1}")(h)

    model = dense_mlp(spec, seed=seed, hidden=hidden)
    train(model, data, epochs, batch_size=batch_size, learning_rate=learning_rate, keep_best=False)
    return model


def neuron_norms(model, depth: int) -> list[np.ndarray]:
    """Root-mean-square incoming weight of every hidden neuron, one array per layer."""
    out = []
    for i in range(depth):
        kernel = np.asarray(model.get_layer(f"hidden_{i + 1}").kernel)  # (fan_in, width)
        out.append(np.sqrt(np.mean(np.square(kernel), axis=0)))
    return out


def search(spec: MLPSpec, data, seed: int = 0, batch_size: int = 128, strength: float = 1e-4,
           search_epochs: int = 3, tolerance: float = 0.01) -> Search:
    """Sparsify ``spec`` with the group lasso and rank its neurons.

    Args:
        spec: The dense MLP.
        data: A ``mpath_tf.data.Dataset``.
        seed: Seed of the sparsifying run.
        batch_size: Mini-batch size.
        strength: lambda of Eq. 1.
        search_epochs: Epochs of the sparsifying training.
        tolerance: A neuron whose norm is below this share of its layer's
            largest counts as driven to zero and is removed.

    Returns:
        A ``Search``; ``details["zeroed"]`` counts the neurons the penalty
        drove to zero, per layer.
    """
    start = time.perf_counter()
    model = sparsify(spec, data, strength, search_epochs, seed, batch_size)
    norms = neuron_norms(model, len(spec.widths))
    alive = [n >= tolerance * n.max() for n in norms]
    details = {"strength": strength, "zeroed": [int(np.sum(~a)) for a in alive]}
    return Search("group_lasso", spec, time.perf_counter() - start, details,
                  lambda budget: fit_scores_to_budget(spec, norms, alive, budget))
