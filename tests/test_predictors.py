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
