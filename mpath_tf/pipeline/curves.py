"""Learning-curve extrapolation: the accuracy a short fine-tuning would reach
with a longer one.

The search fine-tunes its sampled path counts briefly, but the model it
ships is fine-tuned for longer, so a predictor fitted on the short-budget
accuracies is biased low by however much the extra epochs add. Every sample
records its validation accuracy after each epoch; ``extrapolate`` fits one
saturating power law per sample,

    acc_i(e) = A_i - C_i * e^-k        (k shared by all samples),

and reads it at the longer budget. Sharing the exponent k keeps the fit
stable with only a few epochs per sample (the learning-curve extrapolation
of Domhan et al., 2015, reduced to its simplest parametric family).
"""

from __future__ import annotations

import numpy as np


def extrapolate(curves: dict[int, list[float]], epochs: int) -> dict[int, float]:
    """Each curve's accuracy at ``epochs``, from a shared-exponent power law.

    Args:
        curves: Validation accuracy after each epoch, per path count (all
            curves of the same length n >= 1).
        epochs: The budget to extrapolate to (>= n).

    Returns:
        ``{path count: accuracy}``. With fewer than 3 epochs per curve there
        is nothing to fit and the last accuracy is returned unchanged; an
        extrapolation never goes below the best observed accuracy nor above 1.

    Raises:
        ValueError: Curves of different lengths or ``epochs`` shorter than them.

    Example:
        >>> e = np.arange(1, 4)
        >>> curves = {b: list(0.98 - 0.02 * b / 10 - 0.05 * e ** -1.0) for b in (2, 10, 20)}
        >>> {b: round(a, 3) for b, a in extrapolate(curves, 30).items()}
        {2: 0.974, 10: 0.958, 20: 0.938}
    """
    from scipy.optimize import least_squares

    lengths = {len(c) for c in curves.values()}
    if len(lengths) != 1:
        raise ValueError(f"All curves must have the same number of epochs. Received: {sorted(lengths)}")
    n = lengths.pop()
    if epochs < n:
        raise ValueError(f"`epochs` must be >= the {n} epochs observed. Received: epochs={epochs}")
    keys = list(curves)
    y = np.array([curves[b] for b in keys], dtype="float64")  # (samples, epochs)
    last = y[:, -1]
    best = y.max(axis=1)
    if n < 3 or epochs == n:
        return {b: float(v) for b, v in zip(keys, last)}
    e = np.arange(1, n + 1, dtype="float64")
    m = len(keys)

    def residuals(theta):
        a, c, k = theta[:m], theta[m : 2 * m], theta[-1]
        return (a[:, None] - c[:, None] * e[None, :] ** -k - y).ravel()

    start = np.concatenate([last + 0.005, np.maximum(y[:, -1] - y[:, 0], 1e-3) * 2, [1.0]])
    lower = np.concatenate([np.zeros(m), np.zeros(m), [0.1]])
    upper = np.concatenate([np.ones(m), np.ones(m), [5.0]])
    fit = least_squares(residuals, np.clip(start, lower + 1e-9, upper - 1e-9),
                        bounds=(lower, upper))
    a, c, k = fit.x[:m], fit.x[m : 2 * m], fit.x[-1]
    at = np.clip(a - c * float(epochs) ** -k, best, 1.0)
    return {b: float(v) for b, v in zip(keys, at)}


def budget_gain(curves: dict[int, list[float]], epochs: int) -> float:
    """The accuracy the longer budget adds, one number for all samples: the
    median over samples of ``extrapolate(curves, epochs)[b] - curves[b][-1]``.

    A single median is robust to the samples whose few epochs extrapolate
    badly, and adding it to the measured accuracies moves the predicted curve
    without changing its shape (so its correlation with the truth is kept).

    Example:
        >>> e = np.arange(1, 4)
        >>> curves = {b: list(0.98 - 0.001 * b - 0.05 * e ** -1.0) for b in (2, 10, 20)}
        >>> round(budget_gain(curves, 30), 4)  # 0.05 * (1/3 - 1/30)
        0.015
    """
    extrapolated = extrapolate(curves, epochs)
    return float(np.median([extrapolated[b] - curves[b][-1] for b in curves]))


def gains_by_paths(curves: dict[int, list[float]], epochs: int, paths) -> dict[int, float]:
    """The accuracy the longer budget adds at each path count: each sample's
    own extrapolated gain (``extrapolate``), interpolated linearly between
    the sampled path counts and held constant beyond them. A path count
    near a sample that gains little is not raised by what another, far away,
    gains (one median for all raised the many-path models and the one-path
    ones alike).

    Args:
        curves: Validation accuracy after each epoch, per sampled path count.
        epochs: The longer budget.
        paths: The path counts to give a gain.

    Returns:
        ``{path count: gain >= 0}``.

    Example:
        >>> e = np.arange(1, 4)
        >>> curves = {2: list(0.9 - 0.01 * e ** -1.0), 10: list(0.9 - 0.10 * e ** -1.0)}
        >>> {b: round(g, 4) for b, g in gains_by_paths(curves, 30, [1, 2, 6, 10, 20]).items()}
        {1: 0.003, 2: 0.003, 6: 0.0165, 10: 0.03, 20: 0.03}
    """
    extrapolated = extrapolate(curves, epochs)
    sampled = sorted(curves)
    gain = [max(0.0, extrapolated[b] - curves[b][-1]) for b in sampled]
    return {int(b): float(np.interp(b, sampled, gain)) for b in paths}
