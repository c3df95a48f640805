"""NeuralScale for MLPs (``../shared/papers/003_...txt``).

1. ``iterative_prune`` (Algorithm 1): a gate after every hidden layer,
   Taylor first-order importance of each neuron, (dE/dz_m)^2 (Eq. 4),
   accumulated over a few training batches; the least important neuron is
   removed after every ``Q`` training steps, and once every layer has lost a
   neuron, (tau, phi_l) is recorded after each removal, until fewer than 5%
   of the neurons are left.
2. ``fit_power_law`` (Algorithm 2): phi_l = alpha_l * tau^beta_l per layer, by
   least squares on ln phi_l = ln alpha_l + beta_l ln tau (Eqs. 5-8).
3. ``generate_widths`` (Algorithm 3): start from tau = the budget (Eq. 9) and
   descend on tau with the update of Eq. 11 until the generated MLP has the
   budgeted parameter count.
4. ``architecture_descent`` (Algorithm 4): prune, fit, generate, repeat.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from mpath_tf.baselines.common import (
    MLPSpec,
    Search,
    adjust_to_budget,
    check_budget,
    flat_inputs,
    mlp_parameters,
)
from mpath_tf.training.loop import compile_model


def fit_power_law(taus: Sequence[float], phis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer (alpha, beta) of phi_l = alpha_l * tau^beta_l (Eqs. 7-8).

    Args:
        taus: Parameter counts tau^(n), one per pruning record (N).
        phis: Neurons per layer at each record, shape (N, L).

    Returns:
        ``(alpha, beta)``, each of shape (L,).

    Raises:
        ValueError: Fewer than 2 records, or non-positive values.

    Example:
        >>> tau = np.array([1e4, 3e4, 1e5])
        >>> phi = np.stack([2.0 * tau ** 0.5, 0.1 * tau ** 0.8], axis=1)
        >>> alpha, beta = fit_power_law(tau, phi)
        >>> np.round(alpha, 3).tolist(), np.round(beta, 3).tolist()
        ([2.0, 0.1], [0.5, 0.8])
    """
    taus = np.asarray(taus, dtype="float64")
    phis = np.asarray(phis, dtype="float64")
    if taus.ndim != 1 or taus.size < 2 or phis.shape[0] != taus.size:
        raise ValueError(f"Need >= 2 records of (tau, phi). Received: {taus.size} taus, "
                         f"phis of shape {phis.shape}")
    if np.any(taus <= 0) or np.any(phis <= 0):
        raise ValueError("tau and phi must be positive to take logarithms.")
    design = np.stack([np.ones_like(taus), np.log(taus)], axis=1)  # T, (N, 2)
    theta, *_ = np.linalg.lstsq(design, np.log(phis), rcond=None)  # (2, L)
    return np.exp(theta[0]), theta[1]


def generate_widths(alpha: np.ndarray, beta: np.ndarray, budget: int, inputs: int,
                    classes: int, learning_rate: float | None = None,
                    iterations: int = 1000) -> list[int]:
    """Hidden widths phi_l(tau) = alpha_l tau^beta_l with about ``budget`` parameters.

    Starts at tau = budget (Eq. 9) and updates tau by Eq. 11 until the MLP
    of the rounded widths is within 0.1% of the budget (or ``iterations``).

    Args:
        alpha, beta: Fitted per-layer parameters (``fit_power_law``).
        budget: Parameter budget (tau-hat).
        inputs: Input features.
        classes: Output classes.
        learning_rate: Step size eta of Eq. 11 (default: at every step,
            1 / (S * dh/dtau), with S the sum in Eq. 11 and dh/dtau the
            slope of the parameter count of unrounded widths: a Newton step).
        iterations: Most updates.

    Returns:
        The hidden widths (each >= 1).

    Example:
        >>> w = generate_widths(np.array([2.0, 1.0]), np.array([0.5, 0.5]), 50000, 784, 10)
        >>> abs(mlp_parameters(784, w, 10) - 50000) / 50000 < 0.01
        True
    """
    check_budget(inputs, classes, len(alpha), budget)

    def widths_at(tau: float) -> list[int]:
        return [max(1, int(round(a * tau ** b))) for a, b in zip(alpha, beta)]

    def smooth_parameters(tau: float) -> float:  # h of unrounded widths
        sizes = [inputs, *(a * tau ** b for a, b in zip(alpha, beta)), classes]
        return sum(x * y + y for x, y in zip(sizes[:-1], sizes[1:]))

    tau = float(budget)
    best = widths_at(tau)
    for _ in range(iterations):
        widths = widths_at(tau)
        h = mlp_parameters(inputs, widths, classes)
        if abs(h - budget) < abs(mlp_parameters(inputs, best, classes) - budget):
            best = widths
        if abs(h - budget) <= 1e-3 * budget:
            return widths
        slope = float(np.sum(beta * alpha * tau ** (beta - 1)))  # the sum in Eq. 11
        if learning_rate is None:
            dh = (smooth_parameters(tau * 1.001) - smooth_parameters(tau)) / (tau * 0.001)
            eta = 1.0 / max(slope * dh, 1e-12)
        else:
            eta = learning_rate
        tau = max(1.0, tau - eta * (h - budget) * slope)  # Eq. 11
    return best


def _gated_mlp(inputs: int, widths: Sequence[int], classes: int, seed: int = 0):
    """A dense MLP with a gate (non-trainable 0/1 per neuron) after every hidden layer."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((inputs,))
    h, gates = x, []
    for i, w in enumerate(widths):
        h = keras.layers.Dense(w, activation="relu", name=f"dense_{i + 1}")(h)
        gate = Gate(name=f"gate_{i + 1}")
        h = gate(h)
        gates.append(gate)
    out = keras.layers.Dense(classes, activation="softmax", name="classifier")(h)
    return keras.Model(x, out), gates


@keras.saving.register_keras_serializable(package="mpath_tf")
class Gate(keras.layers.Layer):
    """Multiplies each neuron by its gate z_m (1 kept, 0 pruned; not trained).

    Example:
        >>> gate = Gate()
        >>> gate(np.ones((1, 3), "float32")).shape
        TensorShape([1, 3])
    """

    def build(self, input_shape):
        self.z = self.add_weight(name="z", shape=(input_shape[-1],), initializer="ones",
                                 trainable=False)

    def call(self, x):
        return x * self.z

    def compute_output_shape(self, input_shape):
        return input_shape


def taylor_importance(model, gates, x, y, batch_size: int = 128, batches: int = 4) -> list[np.ndarray]:
    """Taylor first-order importance of every gated neuron (Eq. 4).

    For each batch, (sum over the batch of dE/dz_m)^2 with E the summed
    cross-entropy; averaged over ``batches`` batches. Pruned neurons get inf.

    Returns:
        One array of importances per hidden layer.
    """
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(reduction="sum")
    totals = [np.zeros(g.z.shape[0]) for g in gates]
    rng = np.random.default_rng(0)
    for _ in range(batches):
        pick = rng.choice(len(x), size=min(batch_size, len(x)), replace=False)
        with tf.GradientTape() as tape:
            tape.watch([g.z.value for g in gates])  # gates are not trainable: watch them
            loss = loss_fn(y[pick], model(x[pick], training=False))
        grads = tape.gradient(loss, [g.z.value for g in gates])
        for t, g in zip(totals, grads):
            t += np.square(np.asarray(g))
    out = []
    for t, g in zip(totals, gates):
        importance = t / batches
        importance[np.asarray(g.z) == 0] = np.inf
        out.append(importance)
    return out


def iterative_prune(inputs: int, widths: Sequence[int], classes: int, data, pretrain_epochs: int = 2,
                    steps_per_prune: int = 10, prune_fraction: float = 0.02,
                    min_fraction: float = 0.05, batch_size: int = 128, seed: int = 0):
    """Algorithm 1: pre-train, then alternately train and remove the least
    important neurons, recording (tau, phi_l) once every layer lost one.

    Deviation from the paper, for CPU budgets: each pruning step removes
    ``prune_fraction`` of the neurons still alive (at least one) instead of
    exactly one.

    Args:
        inputs, widths, classes: The dense MLP to prune.
        data: A ``mpath_tf.data.Dataset`` (flattened inputs).
        pretrain_epochs: P.
        steps_per_prune: Q training steps between pruning steps.
        prune_fraction: Share of alive neurons removed per step.
        min_fraction: Stop when fewer than this share of the neurons is left (epsilon).
        batch_size: Mini-batch size.
        seed: Seed of initialization and batches.

    Returns:
        ``(taus, phis)``: parameter counts (N,) and alive neurons per layer (N, L).
    """
    x, y = flat_inputs(data)
    model, gates = _gated_mlp(inputs, widths, classes, seed)
    compile_model(model)
    model.fit(x, y, epochs=pretrain_epochs, batch_size=batch_size, verbose=0)
    rng = np.random.default_rng(seed)
    total = sum(widths)
    taus, phis = [], []
    pruned_once = np.zeros(len(widths), bool)
    while True:
        alive = [int(np.sum(np.asarray(g.z))) for g in gates]
        if sum(alive) < min_fraction * total or min(alive) <= 1:
            break
        for _ in range(steps_per_prune):
            pick = rng.choice(len(x), size=min(batch_size, len(x)), replace=False)
            model.train_on_batch(x[pick], y[pick])
        importance = taylor_importance(model, gates, x, y, batch_size)
        flat = np.concatenate(importance)
        layer_of = np.concatenate([[i] * len(imp) for i, imp in enumerate(importance)])
        index_in = np.concatenate([np.arange(len(imp)) for imp in importance])
        count = max(1, int(prune_fraction * sum(alive)))
        for k in np.argsort(flat)[:count]:
            layer = int(layer_of[k])
            if np.sum(np.asarray(gates[layer].z)) <= 1:  # keep one neuron per layer
                continue
            z = np.asarray(gates[layer].z).copy()
            z[index_in[k]] = 0.0
            gates[layer].z.assign(z)
            pruned_once[layer] = True
        if pruned_once.all():
            alive = [int(np.sum(np.asarray(g.z))) for g in gates]
            taus.append(mlp_parameters(inputs, alive, classes))
            phis.append(alive)
    return np.array(taus, "float64"), np.array(phis, "float64")


def architecture_descent(inputs: int, widths: Sequence[int], classes: int, data,
                         iterations: int = 1, **prune_options) -> dict:
    """Algorithm 4: prune, fit the power laws; repeat from the widths the fit
    gives at the original parameter count. The last fit generates widths
    for any budget (``generate_widths``).

    Returns:
        ``{"alpha": [...], "beta": [...], "history": [...]}``.

    Raises:
        ValueError: ``iterations`` < 1.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1. Received: iterations={iterations}")
    original = mlp_parameters(inputs, widths, classes)
    current = list(widths)
    history = []
    for _ in range(iterations):
        taus, phis = iterative_prune(inputs, current, classes, data, **prune_options)
        alpha, beta = fit_power_law(taus, phis)
        history.append({"start": current, "records": len(taus)})
        current = generate_widths(alpha, beta, original, inputs, classes)  # scale back up
    return {"alpha": alpha.tolist(), "beta": beta.tolist(), "history": history}


def search(spec: MLPSpec, data, seed: int = 0, batch_size: int = 128, iterations: int = 1,
           **prune_options) -> Search:
    """Prune ``spec`` (architecture descent) and fit NeuralScale's power laws.

    Args:
        spec: The dense MLP to prune.
        data: A ``mpath_tf.data.Dataset``.
        seed: Seed of the pruning run.
        batch_size: Mini-batch size.
        iterations: Architecture-descent iterations (1: prune the dense MLP once).
        **prune_options: Passed to ``iterative_prune`` (``pretrain_epochs``,
            ``steps_per_prune``, ``prune_fraction``, ``min_fraction``).

    Returns:
        A ``Search`` whose ``widths(budget)`` generates by Eq. 11; ``details``
        holds the fitted alpha, beta.
    """
    start = time.perf_counter()
    found = architecture_descent(spec.inputs, spec.widths, spec.num_classes, data, iterations,
                                 batch_size=batch_size, seed=seed, **prune_options)
    alpha, beta = np.array(found["alpha"]), np.array(found["beta"])

    def fit(budget):
        widths = generate_widths(alpha, beta, budget, spec.inputs, spec.num_classes)
        return adjust_to_budget(spec, widths, budget)

    return Search("neuralscale", spec, time.perf_counter() - start, found, fit)
