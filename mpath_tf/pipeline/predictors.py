"""Accuracy predictors: from a few fine-tuned path counts to every path count.

Every predictor follows scikit-learn's estimator rules: no logic in
``__init__``, validation in ``fit``, learned state in attributes ending in
``_``, ``fit`` returns ``self``, ``predict`` refuses to run before ``fit``.
"""

from __future__ import annotations

import bisect

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression

from mpath_tf.errors import ConfigError


def _check_samples(path_counts, accuracies) -> tuple[np.ndarray, np.ndarray]:
    """Validated samples, sorted by path count."""
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
    return b[order], v[order]


class Predictor(BaseEstimator):
    """Shared behaviour: validation, leave-one-out uncertainty, ``return_std``.

    Subclasses implement ``_fit(b, v)`` (sorted, validated samples) and
    ``_predict(b)``. ``fit`` also refits the predictor without each sample in
    turn and keeps the residuals (``loo_residuals_``); their root mean square
    (``loo_rmse_``) is the uncertainty of a prediction: ``predict(...,
    return_std=True)`` returns it beside every prediction, and plots draw it as
    a band. With fewer than 3 samples there is nothing to leave out and the
    uncertainty is NaN.
    """

    def fit(self, path_counts, accuracies):
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
        b, v = _check_samples(path_counts, accuracies)
        self.path_counts_, self.accuracies_ = b, v
        self._fit(b, v)
        residuals = []
        if b.size >= 3:
            for i in range(b.size):
                keep = np.arange(b.size) != i
                other = clone(self)
                other.path_counts_, other.accuracies_ = b[keep], v[keep]
                other._fit(b[keep], v[keep])
                residuals.append(float(other._predict(b[i : i + 1])[0] - v[i]))
        self.loo_residuals_ = np.asarray(residuals)
        self.loo_rmse_ = (float(np.sqrt(np.mean(self.loo_residuals_ ** 2)))
                          if residuals else float("nan"))
        return self

    def predict(self, path_counts, return_std: bool = False):
        """Predicted validation accuracy for each path count.

        Args:
            path_counts: Path counts to predict.
            return_std: Also return the uncertainty of each prediction.

        Returns:
            A float array of the same length, or ``(predictions, std)``.

        Raises:
            NotFittedError: If ``fit`` has not been called.
        """
        if not hasattr(self, "path_counts_"):
            raise NotFittedError(f"Call {type(self).__name__}.fit before predict.")
        b = np.asarray(path_counts, dtype="float64").reshape(-1)
        mean = np.asarray(self._predict(b), dtype="float64")
        if return_std:
            return mean, np.full_like(mean, self.loo_rmse_)
        return mean


class PaperPredictor(Predictor):
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

    def _fit(self, b, v):
        self.model_ = LinearRegression(fit_intercept=self.fit_intercept)
        self.model_.fit(b[None, :], v[None, :])

    def _predict(self, path_counts):
        sampled = self.path_counts_.tolist()
        n = len(sampled)
        out = []
        for b in path_counts:
            k = bisect.bisect_left(sampled, b)
            inserted = sampled[:k] + [b] + sampled[k:]
            if k == n:  # inserted last: drop the first element
                inserted, k = inserted[1:], n - 1
            else:  # inserted elsewhere: drop the last element
                inserted = inserted[:-1]
            out.append(self.model_.predict(np.array([inserted]))[0, k])
        return np.asarray(out)


class PchipPredictor(Predictor):
    """Monotone piecewise-cubic (PCHIP) interpolation over log(path count).

    Passes through every sample and never overshoots between two of them;
    beyond the outermost samples it holds the end values. Path counts are
    spaced evenly, but accuracy changes fastest at few paths, hence the log.

    Example:
        >>> p = PchipPredictor().fit([2, 4, 8, 16], [0.9, 0.8, 0.7, 0.6])
        >>> p.predict([4, 32]).round(3).tolist()
        [0.8, 0.6]
    """

    def _fit(self, b, v):
        from scipy.interpolate import PchipInterpolator

        self.curve_ = PchipInterpolator(np.log(b), v, extrapolate=False)

    def _predict(self, b):
        x = np.clip(np.log(b), np.log(self.path_counts_[0]), np.log(self.path_counts_[-1]))
        return self.curve_(x)


class IsotonicPredictor(Predictor):
    """Isotonic regression: the closest non-increasing curve in path count.

    More paths mean fewer parameters, so accuracy is assumed not to rise with
    the path count; noise that breaks that order is averaged out. Linear
    between the fitted points, constant beyond them.

    Example:
        >>> p = IsotonicPredictor().fit([2, 4, 6, 8], [0.9, 0.8, 0.82, 0.6])
        >>> p.predict([4, 6]).round(3).tolist()
        [0.81, 0.81]
    """

    def _fit(self, b, v):
        from sklearn.isotonic import IsotonicRegression

        self.model_ = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(b, v)

    def _predict(self, b):
        return self.model_.predict(b)


class PowerLawPredictor(Predictor):
    """Error as a power law of the parameter count: err = a + c * params^-k.

    The scaling-law form (error falls as a power of model size towards a
    floor ``a``), fitted by non-linear least squares with a >= 0, c >= 0,
    0 < k <= 3.

    Args:
        parameters: Parameter count of each path count (``{b: params}``, as
            ``mpath_tf.parameter_counts`` gives); without it the predictor
            uses 1 / b, which falls with the path count as parameters do.

    Example:
        >>> params = {b: 1000 // b for b in range(1, 65)}
        >>> err = {b: 0.02 + 5 * params[b] ** -1.0 for b in params}
        >>> p = PowerLawPredictor(params).fit([2, 8, 16, 32, 64], [1 - err[b] for b in (2, 8, 16, 32, 64)])
        >>> round(float(p.predict([4])[0]), 3) == round(1 - err[4], 3)
        True
    """

    def __init__(self, parameters: dict | None = None):
        self.parameters = parameters

    def _x(self, b):
        if self.parameters is None:
            return 1.0 / b
        try:
            return np.array([float(self.parameters[int(v)]) for v in b])
        except KeyError as err:
            raise ValueError(f"No parameter count for path count {err.args[0]}.") from None

    def _fit(self, b, v):
        from scipy.optimize import curve_fit

        x = self._x(b)
        scale = float(np.median(x))
        err = 1.0 - v

        def curve(z, a, c, k):
            return a + c * np.power(z, -k)

        # Start from a line in log-log space through the two ends.
        k0 = 1.0
        c0 = max(float(err.max() - err.min()), 1e-4) / max(float((x.min() / scale) ** -k0), 1e-9)
        try:
            params, _ = curve_fit(curve, x / scale, err, p0=[max(float(err.min()) / 2, 0.0), c0, k0],
                                  bounds=([0.0, 0.0, 1e-3], [1.0, np.inf, 3.0]), maxfev=20000)
        except RuntimeError:  # no convergence: the least-squares constant
            params = np.array([float(err.mean()), 0.0, 1.0])
        self.scale_, self.coef_ = scale, params

    def _predict(self, b):
        a, c, k = self.coef_
        return 1.0 - (a + c * np.power(self._x(b) / self.scale_, -k))


PREDICTORS = {
    "paper": PaperPredictor,
    "pchip": PchipPredictor,
    "isotonic": IsotonicPredictor,
    "power_law": PowerLawPredictor,
}


def make_predictor(name: str, parameters: dict | None = None) -> Predictor:
    """A predictor by name (``PREDICTORS``), given the parameter counts it may use.

    Raises:
        ConfigError: Unknown name.

    Example:
        >>> type(make_predictor("pchip")).__name__
        'PchipPredictor'
    """
    if name not in PREDICTORS:
        raise ConfigError(f"Unknown predictor '{name}'. Choose one of: {', '.join(PREDICTORS)}.")
    if name == "power_law":
        return PowerLawPredictor(parameters)
    return PREDICTORS[name]()
