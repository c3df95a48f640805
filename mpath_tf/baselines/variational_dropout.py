"""Sparse variational dropout (Molchanov et al., 2017; section 2.2 of
``../shared/papers/001_...txt``), made structured.

Every Dense of the MLP becomes a ``VariationalDense``: each weight has a
mean theta and a log-variance, trained with the local reparameterization
trick and the KL approximation of Molchanov et al. (their Eq. 14), scaled by
1 / (training examples). A weight with log alpha = log(sigma^2 / theta^2)
above ``threshold`` (3) is dropped. A hidden neuron is removed when more
than ``neuron_sparsity`` of its weights (incoming and outgoing) are dropped;
the budget is then met as in ``group_lasso``, ranking neurons by the share
of their weights kept (``fit_scores_to_budget``),
and the found architecture is trained from scratch.
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
    fit_scores_to_budget,
)
from mpath_tf.training.loop import train

_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695  # Molchanov et al., Eq. 14


@keras.saving.register_keras_serializable(package="mpath_tf")
class VariationalDense(keras.layers.Layer):
    """Dense layer with sparse variational dropout on every weight.

    Training draws the pre-activation from N(x theta + b, x^2 sigma^2) and
    adds the KL term (times ``kl_weight``) to the model's losses; inference
    uses theta with the weights whose log alpha exceeds ``threshold`` set to 0.

    Args:
        units: Output neurons (>= 1).
        activation: Activation after the layer.
        threshold: log alpha above which a weight is dropped.
        kl_weight: Factor of the KL term (1 / training examples for the ELBO).
        seed: Seed of the noise.

    Example:
        >>> layer = VariationalDense(3, activation="relu")
        >>> layer(np.ones((2, 4), "float32")).shape
        TensorShape([2, 3])
    """

    def __init__(self, units: int, activation=None, threshold: float = 3.0, kl_weight: float = 1.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be >= 1. Received: units={units}")
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0. Received: kl_weight={kl_weight}")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.threshold = float(threshold)
        self.kl_weight = float(kl_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.theta = self.add_weight(name="theta", shape=(fan_in, self.units),
                                     initializer="glorot_uniform")
        self.log_sigma2 = self.add_weight(name="log_sigma2", shape=(fan_in, self.units),
                                          initializer=keras.initializers.Constant(-10.0))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def log_alpha(self):
        """log(sigma^2 / theta^2), clipped to [-10, 10], shape (fan_in, units)."""
        return ops.clip(self.log_sigma2 - ops.log(ops.square(self.theta) + 1e-8), -10.0, 10.0)

    def call(self, x, training=False):
        log_alpha = self.log_alpha()
        if training:
            mean = ops.matmul(x, self.theta) + self.bias
            variance = ops.matmul(ops.square(x), ops.exp(self.log_sigma2))
            noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
            out = mean + ops.sqrt(variance + 1e-8) * noise
            neg_kl = (_K1 * ops.sigmoid(_K2 + _K3 * log_alpha)
                      - 0.5 * ops.log1p(ops.exp(-log_alpha)) - _K1)
            self.add_loss(-self.kl_weight * ops.sum(neg_kl))
        else:
            kept = ops.cast(log_alpha < self.threshold, self.theta.dtype)
            out = ops.matmul(x, self.theta * kept) + self.bias
        return self.activation(out)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "threshold": self.threshold, "kl_weight": self.kl_weight, "seed": self.seed}


def sparsify(spec: MLPSpec, data, epochs: int = 3, seed: int = 0, batch_size: int = 128,
             learning_rate: float = 1e-3, threshold: float = 3.0):
    """Train ``spec``'s MLP with sparse variational dropout on every layer.

    Returns:
        The trained model (hidden layers ``hidden_1..L``, then ``classifier``).
    """
    kl_weight = 1.0 / len(data.x_train)

    def hidden(h, i, width, fan_in):
        return VariationalDense(width, "relu", threshold, kl_weight, seed=seed + i,
                                name=f"hidden_{i + 1}")(h)

    model = dense_mlp(spec, seed=seed, hidden=hidden)
    classifier = model.get_layer("classifier")
    out = VariationalDense(spec.num_classes, "softmax", threshold, kl_weight, seed=seed + 99,
                           name="classifier")(classifier.input)
    model = keras.Model(model.input, out)
    train(model, data, epochs, batch_size=batch_size, learning_rate=learning_rate, keep_best=False)
    return model


def kept_share(model, depth: int) -> list[np.ndarray]:
    """Per hidden neuron, the share of its incoming and outgoing weights kept."""
    names = [f"hidden_{i + 1}" for i in range(depth)] + ["classifier"]
    kept = [np.asarray(model.get_layer(n).log_alpha()) < model.get_layer(n).threshold
            for n in names]  # (fan_in, units) each
    return [(kept[i].sum(axis=0) + kept[i + 1].sum(axis=1)) / (kept[i].shape[0] + kept[i + 1].shape[1])
            for i in range(depth)]


def search(spec: MLPSpec, data, seed: int = 0, batch_size: int = 128, search_epochs: int = 3,
           threshold: float = 3.0, neuron_sparsity: float = 0.9) -> Search:
    """Train ``spec`` with sparse VD and score its neurons by the weights kept.

    Args:
        spec: The dense MLP.
        data: A ``mpath_tf.data.Dataset``.
        seed: Seed of the variational run.
        batch_size: Mini-batch size.
        search_epochs: Epochs of the variational training.
        threshold: log alpha above which a weight is dropped.
        neuron_sparsity: A neuron with more than this share of its weights
            dropped is removed.

    Returns:
        A ``Search``; ``details`` has the share of weights dropped and the
        neurons removed per layer.
    """
    start = time.perf_counter()
    model = sparsify(spec, data, search_epochs, seed, batch_size, threshold=threshold)
    shares = kept_share(model, len(spec.widths))
    alive = [s >= 1 - neuron_sparsity for s in shares]
    dropped = [float(np.mean(np.asarray(model.get_layer(f"hidden_{i + 1}").log_alpha()) >= threshold))
               for i in range(len(spec.widths))]
    details = {"weights_dropped": dropped, "neurons_removed": [int(np.sum(~a)) for a in alive]}
    return Search("variational_dropout", spec, time.perf_counter() - start, details,
                  lambda budget: fit_scores_to_budget(spec, shares, alive, budget))
