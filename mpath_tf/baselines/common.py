"""What every baseline shares: the parameter count of an MLP and the budget check."""

from __future__ import annotations

from collections.abc import Sequence

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
