"""Baselines at a parameter budget: uniform scaling and NeuralScale's
mechanisms on small problems."""

import numpy as np
import pytest

from mpath_tf.baselines import mlp_parameters, uniform_widths, within_budget
from mpath_tf.baselines.neuralscale import (
    fit_power_law,
    generate_widths,
    iterative_prune,
    taylor_importance,
)
from mpath_tf.errors import ConfigError


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_uniform_scaling_meets_the_budget(share):
    dense = mlp_parameters(784, [500] * 4, 10)
    widths = uniform_widths(784, 10, 4, int(share * dense))
    assert within_budget(mlp_parameters(784, widths, 10), int(share * dense), 0.02)
    assert max(widths) - min(widths) <= 1


def test_budget_below_the_smallest_mlp_is_refused():
    with pytest.raises(ConfigError, match="needs at least 811 parameters"):
        uniform_widths(784, 10, 4, 100)


def test_power_law_fit_recovers_known_alpha_and_beta(rng):
    tau = np.geomspace(1e4, 1e6, 12)
    alpha, beta = np.array([3.0, 0.5, 0.05]), np.array([0.4, 0.6, 0.8])
    phis = alpha * tau[:, None] ** beta * np.exp(rng.normal(0, 0.01, (12, 3)))
    got_alpha, got_beta = fit_power_law(tau, phis)
    np.testing.assert_allclose(got_beta, beta, atol=0.01)
    np.testing.assert_allclose(got_alpha, alpha, rtol=0.1)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_generated_networks_meet_the_budget(share):
    budget = int(share * mlp_parameters(784, [500] * 4, 10))
    widths = generate_widths(np.array([4.0, 2.0, 1.0, 0.5]), np.full(4, 0.5), budget, 784, 10)
    assert within_budget(mlp_parameters(784, widths, 10), budget, 0.02)
    assert widths[0] > widths[1] > widths[2] > widths[3]  # the power laws' order


def test_taylor_importance_of_a_dead_neuron_is_zero(digits):
    from mpath_tf.baselines.neuralscale import _gated_mlp

    model, gates = _gated_mlp(64, [6, 6], 10)
    dense = model.get_layer("dense_1")
    kernel, bias = dense.get_weights()
    kernel[:, 0], bias[0] = 0.0, -1.0  # neuron 0 of layer 1 never fires
    dense.set_weights([kernel, bias])
    x = digits.x_train.reshape(len(digits.x_train), -1)
    importance = taylor_importance(model, gates, x, digits.y_train)
    assert importance[0][0] == 0 and np.all(importance[0][1:] >= 0)
    gates[1].z.assign(np.array([1, 1, 0, 1, 1, 1], "float32"))
    assert taylor_importance(model, gates, x, digits.y_train)[1][2] == np.inf  # pruned


def test_iterative_pruning_records_shrinking_networks(digits):
    flat = digits.__class__(**{**digits.__dict__,
                               "x_train": digits.x_train.reshape(len(digits.x_train), -1)})
    taus, phis = iterative_prune(64, [16, 16], 10, flat, pretrain_epochs=1, steps_per_prune=2,
                                 prune_fraction=0.1, batch_size=64)
    assert len(taus) >= 3 and np.all(np.diff(taus) < 0)
    assert np.all(np.diff(phis.sum(axis=1)) < 0) and phis.min() >= 1
    alpha, beta = fit_power_law(taus, phis)  # the records fit a power law
    assert np.all(beta > 0)
