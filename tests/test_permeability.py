"""Eq. 2 against a brute-force reference, plus a hand-computed case."""

import numpy as np
import pytest
import tensorflow as tf

from mpath_tf.core.permeability import RangeMinIndex, connection_permeability, discrete_permeability


def brute_force(p):
    """P[i, j] = min over the membranes a connection i <-> j crosses; 1 if i == j."""
    width = len(p) + 1
    out = np.ones((width, width), dtype="float32")
    for i in range(width):
        for j in range(width):
            if i != j:
                out[i, j] = min(p[k] for k in range(min(i, j), max(i, j)))
    return out


@pytest.mark.parametrize("width", [2, 3, 4, 7, 16, 33, 64], ids=lambda w: f"W{w}")
def test_matches_brute_force(width, rng):
    p = rng.uniform(0, 1, width - 1).astype("float32")
    got = np.asarray(connection_permeability(p))
    np.testing.assert_array_equal(got, brute_force(p))
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), np.ones(width))


def test_hand_computed_case():
    # Membranes 0.9 | 0.1 | 0.5 between 4 neurons.
    p = np.array([0.9, 0.1, 0.5], dtype="float32")
    expected = np.array(
        [[1, 0.9, 0.1, 0.1], [0.9, 1, 0.1, 0.1], [0.1, 0.1, 1, 0.5], [0.1, 0.1, 0.5, 1]],
        dtype="float32",
    )
    np.testing.assert_array_equal(np.asarray(connection_permeability(p)), expected)


def test_gradient_reaches_only_the_minimum_membrane():
    p = tf.Variable([0.9, 0.1, 0.5])
    with tf.GradientTape() as tape:
        value = connection_permeability(p)[0, 3]  # crosses all three membranes
    np.testing.assert_array_equal(tape.gradient(value, p).numpy(), [0, 1, 0])


def test_width_below_two_is_refused():
    with pytest.raises(ValueError, match="Received: width=1"):
        RangeMinIndex(1)


def test_discrete_permeability_is_block_diagonal():
    got = discrete_permeability([2, 1, 3])
    expected = np.zeros((6, 6), dtype="float32")
    expected[:2, :2] = expected[2:3, 2:3] = expected[3:, 3:] = 1
    np.testing.assert_array_equal(got, expected)
