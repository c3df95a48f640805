"""Uniform width scaling (the width multiplier of MobileNets): every hidden
layer gets the same width, chosen so the MLP meets the parameter budget."""

from __future__ import annotations

from mpath_tf.baselines.common import check_budget, mlp_parameters


def uniform_widths(inputs: int, classes: int, depth: int, budget: int) -> list[int]:
    """Equal hidden widths whose MLP is closest to ``budget`` parameters.

    The width is the largest w with params(w) <= budget or the next one,
    whichever is closer; for small budgets where one neuron more or less
    moves the count by more than 2%, one layer is then widened or narrowed
    by one neuron at a time towards the budget.

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
        ([324, 324, 325, 325], 574475)
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
    # fine adjustment: one layer at a time, first layer last (it costs the most)
    for i in reversed(range(depth)):
        for step in (1, -1):
            trial = list(widths)
            trial[i] = max(1, trial[i] + step)
            if abs(mlp_parameters(inputs, trial, classes) - budget) < abs(
                    mlp_parameters(inputs, widths, classes) - budget):
                widths = trial
    return widths
