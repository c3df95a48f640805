"""Uniform width scaling (the width multiplier of MobileNets): every hidden
layer gets the same width, chosen so the MLP meets the parameter budget."""

from __future__ import annotations

from mpath_tf.baselines.common import (
    MLPSpec,
    adjust_to_budget,
    check_budget,
    Search,
    mlp_parameters,
)


def uniform_widths(inputs: int, classes: int, depth: int, budget: int) -> list[int]:
    """Equal hidden widths whose MLP is closest to ``budget`` parameters.

    The width is the largest w with params(w) <= budget or the next one,
    whichever is closer; for small budgets where one neuron more or less
    moves the count by more than 2%, single layers are then widened or
    narrowed by one neuron towards the budget (``adjust_to_budget``).

    Args:
        inputs: Input features.
        classes: Output classes.
        depth: Hidden layers.
        budget: Parameter budget.

    Returns:
        ``depth`` hidden widths.

    Raises:
        ConfigError: Budget below the smallest MLP.

    Example:
        >>> w = uniform_widths(784, 10, 4, 1149010 // 2)
        >>> w, mlp_parameters(784, w, 10)
        ([325, 324, 324, 324], 574599)
    """
    check_budget(inputs, classes, depth, budget)
    lo, hi = 1, max(1, budget)
    while lo < hi:  # largest w with params <= budget
        mid = (lo + hi + 1) // 2
        if mlp_parameters(inputs, [mid] * depth, classes) <= budget:
            lo = mid
        else:
            hi = mid - 1
    widths = min(([lo] * depth, [lo + 1] * depth),
                 key=lambda w: abs(mlp_parameters(inputs, w, classes) - budget))
    return adjust_to_budget(MLPSpec((inputs,), widths, classes), widths, budget)


def search(spec: MLPSpec, data=None, seed: int = 0, batch_size: int = 128) -> Search:
    """Uniform scaling needs no search: the widths follow from the budget.

    Args:
        spec: The dense MLP (its depth is kept).
        data, seed, batch_size: Unused (the shared signature).

    Returns:
        A ``Search`` whose ``widths(budget)`` is ``uniform_widths``.
    """
    return Search("uniform", spec, 0.0, {}, lambda budget: uniform_widths(
        spec.inputs, spec.num_classes, len(spec.widths), budget))
