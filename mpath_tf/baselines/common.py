"""What every baseline shares: the MLP it shrinks, the parameter count, the
budget check, neuron-level fitting to a budget, and training the result."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mpath_tf.errors import ConfigError

TOLERANCE = 0.02  # a baseline's model must be within 2% of its parameter budget


def mlp_parameters(inputs: int, widths: Sequence[int], classes: int) -> int:
    """Weights and biases of a dense MLP with these hidden widths.

    Example:
        >>> mlp_parameters(784, [500] * 4, 10)
        1149010
    """
    sizes = [inputs, *widths, classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def within_budget(parameters: int, budget: int, tolerance: float = TOLERANCE) -> bool:
    """True when ``parameters`` is within ``tolerance`` (relative) of ``budget``."""
    return abs(parameters - budget) <= tolerance * budget


def check_budget(inputs: int, classes: int, depth: int, budget: int) -> None:
    """Refuse a budget no MLP of this depth can meet (below one neuron per layer).

    Raises:
        ConfigError: The budget is below the smallest MLP.
    """
    smallest = mlp_parameters(inputs, [1] * depth, classes)
    if budget < smallest:
        raise ConfigError(f"A {depth}-layer MLP on {inputs} inputs needs at least {smallest} "
                          f"parameters (one neuron per layer). Received: budget={budget}")


@dataclass(frozen=True)
class MLPSpec:
    """The dense MLP a baseline starts from.

    Attributes:
        input_shape: Shape of one example (flattened by the model).
        widths: Hidden widths, for example ``(500, 500, 500, 500)`` for mlp-4-500.
        num_classes: Output classes.

    Example:
        >>> spec = MLPSpec((28, 28), (500,) * 4, 10)
        >>> spec.inputs, spec.parameters
        (784, 1149010)
    """

    input_shape: tuple[int, ...]
    widths: tuple[int, ...]
    num_classes: int

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"An MLP needs >= 1 hidden layer of >= 1 neuron. "
                              f"Received: widths={list(self.widths)}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2. Received: num_classes={self.num_classes}")

    @property
    def inputs(self) -> int:
        """Input features after flattening."""
        return math.prod(self.input_shape)

    @property
    def parameters(self) -> int:
        """Weights and biases of the dense MLP."""
        return self.count(self.widths)

    def count(self, widths: Sequence[int]) -> int:
        """Parameters of the same MLP with other hidden widths."""
        return mlp_parameters(self.inputs, widths, self.num_classes)

    def check(self, budget: int) -> None:
        """Refuse a budget below the smallest MLP of this depth (``ConfigError``)."""
        check_budget(self.inputs, self.num_classes, len(self.widths), budget)


@dataclass
class BaselineResult:
    """A baseline's model at a parameter budget.

    Attributes:
        method: The method's name (``mpath_tf.baselines.METHODS``).
        widths: Hidden widths of the model.
        parameters: Its parameters (for unstructured pruning: non-zero weights and biases).
        model: The trained Keras model.
        val_accuracy: Validation accuracy of the returned weights.
        search_seconds: Wall time to find the architecture (0 for uniform scaling).
        train_seconds: Wall time to train the found architecture.
        details: Method-specific findings (fitted power laws, neurons zeroed, ...).
    """

    method: str
    widths: list[int]
    parameters: int
    model: object
    val_accuracy: float
    search_seconds: float
    train_seconds: float
    details: dict = field(default_factory=dict)


def adjust_to_budget(spec: MLPSpec, widths: Sequence[int], budget: int) -> list[int]:
    """Widen or narrow layers one neuron at a time while that brings the
    parameter count closer to ``budget`` (the rounding step every method ends with).

    Example:
        >>> adjust_to_budget(MLPSpec((64,), (16, 16), 10), [10, 10], 1000)
        [12, 9]
    """
    widths = [max(1, int(w)) for w in widths]
    best = abs(spec.count(widths) - budget)
    while True:
        moves = [(abs(spec.count(trial) - budget), trial)
                 for i in range(len(widths)) for step in (1, -1)
                 if (trial := widths[:i] + [widths[i] + step] + widths[i + 1:])[i] >= 1]
        gap, trial = min(moves, key=lambda m: m[0])
        if gap >= best:
            return widths
        best, widths = gap, trial


def keep_to_budget(spec: MLPSpec, scores: Sequence[np.ndarray], budget: int) -> list[int]:
    """Hidden widths left after removing the lowest-scored neurons, across all
    layers, until the MLP fits ``budget`` (one neuron per layer is always kept).

    Args:
        spec: The MLP the scores belong to.
        scores: One array per hidden layer, one score per neuron (higher = keep).
        budget: Parameter budget.

    Returns:
        Hidden widths, adjusted to the budget neuron by neuron.

    Example:
        >>> spec = MLPSpec((4,), (3, 3), 2)
        >>> keep_to_budget(spec, [np.array([0.9, 0.0, 0.5]), np.array([0.1, 0.2, 0.3])], 20)
        [2, 2]
    """
    spec.check(budget)
    widths = [len(s) for s in scores]
    order = sorted((float(s), layer) for layer, layer_scores in enumerate(scores) for s in layer_scores)
    for _, layer in order:
        if spec.count(widths) <= budget:
            break
        if widths[layer] > 1:
            widths[layer] -= 1
    return adjust_to_budget(spec, widths, budget)


def dense_mlp(spec: MLPSpec, widths: Sequence[int] | None = None, seed: int | None = None,
              hidden=None):
    """A Keras MLP (Flatten, ReLU Dense ``hidden_1..L``, softmax ``classifier``).

    Args:
        spec: Input shape and classes (and the default widths).
        widths: Hidden widths (default ``spec.widths``).
        seed: Seeds Keras before the weights are drawn.
        hidden: Optional ``hidden(h, index, width, fan_in) -> h`` that builds
            hidden layer ``index`` (0-based) instead of a ReLU Dense; the
            methods use it to add constraints, gates or normalization.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    widths = list(spec.widths if widths is None else widths)
    inputs = keras.Input(spec.input_shape)
    h = keras.layers.Flatten(name="flatten")(inputs)
    fan_in = spec.inputs
    for i, w in enumerate(widths):
        if hidden is None:
            h = keras.layers.Dense(int(w), activation="relu", name=f"hidden_{i + 1}")(h)
        else:
            h = hidden(h, i, int(w), fan_in)
        fan_in = int(w)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name="mlp-" + "-".join(str(int(w)) for w in widths))


@dataclass
class Search:
    """What a structured method learned, from which it draws widths for any budget.

    The sparsifying or pruning run does not depend on the budget, so one
    search serves several budgets (``widths``, then ``train``).

    Attributes:
        method: The method's name.
        spec: The dense MLP searched.
        seconds: Wall time of the search.
        details: Method-specific findings (fitted power laws, neurons zeroed, ...).
        fit: ``fit(budget) -> widths`` within the budget's tolerance.
    """

    method: str
    spec: MLPSpec
    seconds: float
    details: dict
    fit: object

    def widths(self, budget: int) -> list[int]:
        """Hidden widths for ``budget`` (``ConfigError`` if below the smallest MLP)."""
        self.spec.check(budget)
        return [int(w) for w in self.fit(budget)]

    def train(self, data, budget: int, epochs: int = 5, seed: int = 0,
              batch_size: int = 128) -> BaselineResult:
        """Train the MLP of ``widths(budget)`` from scratch.

        Raises:
            ConfigError: The widths miss the budget by more than ``TOLERANCE``.
        """
        from mpath_tf.training.loop import train

        widths = self.widths(budget)
        parameters = self.spec.count(widths)
        if not within_budget(parameters, budget):
            raise ConfigError(f"{self.method} found widths {widths} with {parameters} parameters, "
                              f"more than {TOLERANCE:.0%} from the budget {budget}.")
        model = dense_mlp(self.spec, widths, seed)
        start = time.perf_counter()
        val = train(model, data, epochs, batch_size=batch_size)
        return BaselineResult(self.method, widths, parameters, model, val, self.seconds,
                              time.perf_counter() - start, dict(self.details))


def flat_inputs(data) -> tuple[np.ndarray, np.ndarray]:
    """Training examples flattened to (N, features) float32, and labels."""
    x = np.asarray(data.x_train, "float32")
    return x.reshape(len(x), -1), np.asarray(data.y_train)


def scale_to_budget(spec: MLPSpec, widths: Sequence[int], budget: int) -> list[int]:
    """Multiply all widths by one factor so the MLP meets ``budget`` (MorphNet's
    uniform expand; the factor may be below 1), then round neuron by neuron.

    Example:
        >>> spec = MLPSpec((784,), (500,) * 4, 10)
        >>> w = scale_to_budget(spec, [100, 50, 50, 20], 574505)
        >>> w, within_budget(spec.count(w), 574505)
        ([481, 239, 240, 96], True)
    """
    spec.check(budget)
    lo, hi = 0.0, 1.0
    while spec.count([max(1, round(w * hi)) for w in widths]) < budget:
        hi *= 2
    for _ in range(60):  # bisection on the factor: the count grows with it
        mid = (lo + hi) / 2
        if spec.count([max(1, round(w * mid)) for w in widths]) < budget:
            lo = mid
        else:
            hi = mid
    return adjust_to_budget(spec, [max(1, round(w * hi)) for w in widths], budget)


def fit_scores_to_budget(spec: MLPSpec, scores: Sequence[np.ndarray], alive: Sequence[np.ndarray],
                         budget: int) -> list[int]:
    """Widths from per-neuron scores after a sparsifying training.

    Neurons are removed in this order until the MLP fits ``budget``: first
    those the method removed (``alive`` false), lowest score first, then the
    others, lowest score first. So if the method removed more than the budget
    asks, the best-scored of them are kept after all.

    Args:
        spec: The MLP the scores belong to.
        scores: Per hidden layer, one non-negative score per neuron (higher = keep).
        alive: Per hidden layer, which neurons the method kept.
        budget: Parameter budget.

    Returns:
        Hidden widths within the budget's tolerance.

    Example:
        >>> spec = MLPSpec((4,), (3, 3), 2)
        >>> alive = [np.array([True, True, True]), np.array([True, True, False])]
        >>> fit_scores_to_budget(spec, [np.array([3.0, 2.0, 1.0])] * 2, alive, spec.count([3, 2]))
        [3, 2]
    """
    top = max(float(np.max(s)) for s in scores) or 1.0
    ranks = [np.where(a, 2.0 + s / top, s / top) for s, a in zip(scores, alive)]  # removed first
    return keep_to_budget(spec, ranks, budget)
