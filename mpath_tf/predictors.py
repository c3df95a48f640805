"""Accuracy predictors: from a few fine-tuned path counts to every path count.

Every predictor follows scikit-learn's estimator rules: no logic in
``__init__``, validation in ``fit``, learned state in attributes ending in
``_``, ``fit`` returns ``self``, ``predict`` refuses to run before ``fit``.
"""

from __future__ import annotations

import bisect

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression


class PaperPredictor:
    """The paper's array-regression predictor (section 3), implemented as written.

    ``fit`` sorts the sampled path counts B and their accuracies V and fits one
    multi-output ordinary least-squares model g: R^|B| -> R^|B| on the single
    training point (B, V). ``predict`` inserts each new path count b into B at
    its sorted position, drops the last element (or the first, if b went to the
    end) to keep |B| inputs, applies g, and reads the output at b's index.

    What this reduces to: with an intercept (``fit_intercept=True``, the OLS
    default) the single centred training point is all zeros, so the coefficients
    are zero and g(B') = V for every B'. The prediction for b is then the
    measured accuracy of the smallest sampled path count >= b, or of the largest
    sample when b is beyond all of them: a step function through the samples.
    Without an intercept, the minimum-norm solution is g(B') = V (B . B') / |B|^2,
    a rescaled copy of V. Better predictors are the job of other classes here.

    Args:
        fit_intercept: Fit an intercept in the OLS model.

    Example:
        >>> p = PaperPredictor().fit([2, 4, 6, 8], [0.9, 0.8, 0.7, 0.6])
        >>> p.predict([5, 4, 9]).round(3).tolist()
        [0.7, 0.8, 0.6]
    """

    def __init__(self, fit_intercept: bool = True):
        self.fit_intercept = fit_intercept

    def fit(self, path_counts, accuracies) -> "PaperPredictor":
        """Fit on sampled path counts and their validation accuracies.

        Args:
            path_counts: Distinct sampled path counts (at least 2).
            accuracies: Their measured validation accuracies.

        Returns:
            self.

        Raises:
            ValueError: If the arrays differ in length, have fewer than 2
                samples, repeat a path count or hold non-finite values.
        """
        b = np.asarray(path_counts, dtype="float64").reshape(-1)
        v = np.asarray(accuracies, dtype="float64").reshape(-1)
        if b.shape != v.shape or b.size < 2:
            raise ValueError(
                "`path_counts` and `accuracies` must be 1-D arrays of the same "
                f"length >= 2. Received: {b.size} path counts, {v.size} accuracies"
            )
        if not (np.isfinite(b).all() and np.isfinite(v).all()):
            raise ValueError("`path_counts` and `accuracies` must be finite numbers.")
        if np.unique(b).size != b.size:
            raise ValueError(
                f"`path_counts` must be distinct. Received: {b.astype(int).tolist()}"
            )
        order = np.argsort(b)
        self.path_counts_ = b[order]
        self.accuracies_ = v[order]
        self.model_ = LinearRegression(fit_intercept=self.fit_intercept)
        self.model_.fit(self.path_counts_[None, :], self.accuracies_[None, :])
        return self

    def predict(self, path_counts) -> np.ndarray:
        """Predicted validation accuracy for each path count.

        Args:
            path_counts: Path counts to predict.

        Returns:
            A float array of the same length.

        Raises:
            NotFittedError: If ``fit`` has not been called.
        """
        if not hasattr(self, "model_"):
            raise NotFittedError("Call PaperPredictor.fit before predict.")
        sampled = self.path_counts_.tolist()
        n = len(sampled)
        out = []
        for b in np.asarray(path_counts, dtype="float64").reshape(-1):
            k = bisect.bisect_left(sampled, b)
            inserted = sampled[:k] + [b] + sampled[k:]
            if k == n:  # inserted last: drop the first element
                inserted, k = inserted[1:], n - 1
            else:  # inserted elsewhere: drop the last element
                inserted = inserted[:-1]
            out.append(self.model_.predict(np.array([inserted]))[0, k])
        return np.asarray(out)


PREDICTORS = {"paper": PaperPredictor}
