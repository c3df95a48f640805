"""The paper's array-regression predictor, rule by rule."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mpath_tf import PaperPredictor


def test_paper_example_insert_and_drop():
    # Section 3: B = {2, 4, 6, 8}; predicting 5 inserts it at index 3 (1-based)
    # and drops the last element, then reads index 3 of g(B').
    predictor = PaperPredictor().fit([8, 2, 6, 4], [0.6, 0.9, 0.7, 0.8])
    assert predictor.path_counts_.tolist() == [2, 4, 6, 8]
    assert predictor.predict([5])[0] == pytest.approx(0.7)


def test_with_intercept_it_is_a_step_function_through_the_samples(rng):
    b = np.array([2, 10, 18, 26, 34])
    v = rng.uniform(0.5, 1.0, 5)
    predictor = PaperPredictor().fit(b, v)
    np.testing.assert_allclose(predictor.model_.coef_, 0, atol=1e-12)
    queries = np.arange(1, 41)
    # The value of the smallest sample >= b, or of the largest sample beyond it.
    expected = [v[min(np.searchsorted(b, q), 4)] for q in queries]
    np.testing.assert_allclose(predictor.predict(queries), expected)


def test_without_intercept_it_rescales_v():
    b = np.array([2.0, 4.0, 6.0, 8.0])
    v = np.array([0.9, 0.8, 0.7, 0.6])
    predictor = PaperPredictor(fit_intercept=False).fit(b, v)
    inserted = np.array([2.0, 4.0, 5.0, 6.0])
    assert predictor.predict([5])[0] == pytest.approx(v[2] * (b @ inserted) / (b @ b))


def test_predict_before_fit_is_refused():
    with pytest.raises(NotFittedError, match="fit"):
        PaperPredictor().predict([3])


@pytest.mark.parametrize(
    "b, v, match",
    [
        pytest.param([2], [0.5], "length >= 2", id="one-sample"),
        pytest.param([2, 4], [0.5], "same", id="lengths"),
        pytest.param([2, 2], [0.5, 0.6], "distinct", id="repeat"),
        pytest.param([2, 4], [0.5, np.nan], "finite", id="nan"),
    ],
)
def test_fit_validates(b, v, match):
    with pytest.raises(ValueError, match=match):
        PaperPredictor().fit(b, v)


# --- the other predictors (issue: search) ---------------------------------

from mpath_tf.pipeline.curves import extrapolate  # noqa: E402
from mpath_tf.errors import ConfigError  # noqa: E402
from mpath_tf.pipeline.predictors import (  # noqa: E402
    PREDICTORS,
    IsotonicPredictor,
    PchipPredictor,
    PowerLawPredictor,
    make_predictor,
)

B = np.array([2, 24, 46, 68, 90, 112, 134, 156, 178, 200])


def _params(b):
    # parameter count of mpath-4-200 on 784 inputs, closed form: the first and
    # last layers are dense, 3 block layers hold W^2 / b weights each
    return 784 * 200 + 200 + 3 * (200 * 200 / b + 200) + 200 * 10 + 10


def test_power_law_recovers_a_known_curve():
    params = {int(b): _params(b) for b in range(1, 201)}
    acc = {b: 1 - (0.015 + 40.0 * params[b] ** -0.5) for b in params}
    p = PowerLawPredictor(params).fit(B, [acc[b] for b in B])
    queries = [5, 30, 150]
    np.testing.assert_allclose(p.predict(queries), [acc[b] for b in queries], atol=2e-4)
    assert p.loo_rmse_ < 5e-4


def test_pchip_interpolates_monotone_data_without_overshoot(rng):
    v = np.sort(rng.uniform(0.9, 0.99, B.size))[::-1]  # accuracy falls with b
    p = PchipPredictor().fit(B, v)
    np.testing.assert_allclose(p.predict(B), v, atol=1e-12)
    grid = p.predict(np.arange(2, 201))
    assert np.all(np.diff(grid) <= 1e-12) and grid.min() >= v.min() and grid.max() <= v.max()
    np.testing.assert_allclose(p.predict([1, 500]), [v[0], v[-1]])  # held beyond the samples


def test_isotonic_averages_out_an_inversion():
    p = IsotonicPredictor().fit([2, 4, 6, 8], [0.95, 0.90, 0.92, 0.80])
    assert p.predict([4, 6]).tolist() == pytest.approx([0.91, 0.91])
    assert np.all(np.diff(p.predict(np.arange(2, 9))) <= 0)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_every_predictor_has_the_estimator_contract(name):
    params = {int(b): _params(b) for b in range(1, 201)}
    v = 1 - (0.02 + 0.0001 * B)
    predictor = make_predictor(name, params)
    with pytest.raises(NotFittedError, match="fit"):
        predictor.predict([3])
    predictor.fit(B[::-1], v[::-1])
    assert predictor.path_counts_.tolist() == B.tolist()  # sorted in fit
    mean, std = predictor.predict([10, 100], return_std=True)
    assert mean.shape == std.shape == (2,) and np.all(std == predictor.loo_rmse_)
    assert predictor.loo_residuals_.shape == (B.size,)
    from sklearn.base import clone

    assert clone(predictor).get_params() == predictor.get_params()


def test_unknown_predictor_name():
    with pytest.raises(ConfigError, match="Unknown predictor 'linear'. Choose one of: paper"):
        make_predictor("linear")


def test_learning_curves_are_extrapolated_to_the_longer_budget():
    e = np.arange(1, 4)
    truth = {b: (0.99 - 0.0001 * b, 0.03 + 0.0001 * b) for b in (2, 50, 100, 200)}
    curves = {b: list(a - c * e ** -0.8) for b, (a, c) in truth.items()}
    got = extrapolate(curves, 8)
    for b, (a, c) in truth.items():
        assert got[b] == pytest.approx(a - c * 8 ** -0.8, abs=1e-4)
        assert got[b] > curves[b][-1]  # more epochs, more accuracy
    assert extrapolate({2: [0.5, 0.6]}, 8) == {2: 0.6}  # too short to fit: as measured
    with pytest.raises(ValueError, match="same number of epochs"):
        extrapolate({2: [0.5, 0.6, 0.7], 3: [0.5]}, 8)
    with pytest.raises(ValueError, match="epochs=2"):
        extrapolate({2: [0.5, 0.6, 0.7]}, 2)
