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


# --- the shared interface: every method meets the budget ----------------------------------

SPEC_WIDTHS = (48, 48, 48)


def _spec(data):
    from mpath_tf.baselines import MLPSpec

    return MLPSpec(data.input_shape, SPEC_WIDTHS, data.num_classes)


FAST = {
    "uniform": {},
    "neuralscale": {"pretrain_epochs": 1, "steps_per_prune": 2, "prune_fraction": 0.1},
    "morphnet": {"search_epochs": 5, "strength": 3.0},
    "group_lasso": {"search_epochs": 5, "strength": 3e-3},
    "variational_dropout": {"search_epochs": 5},
    "magnitude": {},
}


@pytest.mark.parametrize("method", list(FAST))
def test_every_method_returns_a_trained_model_within_two_percent_of_the_budget(method, digits):
    from mpath_tf.baselines import METHODS, compress
    from mpath_tf.training.loop import accuracy

    assert set(FAST) == set(METHODS)
    spec = _spec(digits)
    budget = spec.parameters * 2 // 5
    result = compress(method, spec, digits, budget, epochs=8, seed=0, **FAST[method])
    assert result.method == method
    assert within_budget(result.parameters, budget)
    if method == "magnitude":  # zeros inside the dense kernels
        from mpath_tf.baselines.magnitude import nonzero_parameters

        assert result.widths == list(SPEC_WIDTHS)
        assert nonzero_parameters(result.model) == result.parameters
    else:  # a smaller dense MLP of exactly these widths
        assert result.model.count_params() == result.parameters == mlp_parameters(64, result.widths, 10)
    assert accuracy(result.model, digits.x_test, digits.y_test) > 0.5  # trained, not initial
    assert result.train_seconds > 0 and result.search_seconds >= 0


def test_one_search_serves_every_budget(digits):
    from mpath_tf.baselines import search

    spec = _spec(digits)
    found = search("group_lasso", spec, digits, strength=3e-3, search_epochs=2)
    budgets = [spec.parameters // 4, spec.parameters // 2, spec.parameters * 3 // 4]
    widths = [found.widths(b) for b in budgets]
    assert all(within_budget(spec.count(w), b) for w, b in zip(widths, budgets))
    assert all(np.all(np.array(a) <= np.array(b)) for a, b in zip(widths, widths[1:]))  # nested
    result = found.train(digits, budgets[0], epochs=1)
    assert result.widths == widths[0] and result.search_seconds == found.seconds
    with pytest.raises(ConfigError, match="expected one of uniform, neuralscale, morphnet, "
                                          "group_lasso, variational_dropout."):
        search("magnitude", spec, digits)  # unstructured: nothing to search apart from training


def test_unknown_method_and_impossible_budget_are_refused(digits):
    from mpath_tf.baselines import compress

    with pytest.raises(ConfigError, match="Unknown baseline method 'lasso'; expected one of uniform"):
        compress("lasso", _spec(digits), digits, 1000)
    with pytest.raises(ConfigError, match="needs at least 89 parameters"):
        compress("group_lasso", _spec(digits), digits, 50)


def test_neuron_removal_follows_the_scores_across_layers():
    from mpath_tf.baselines import MLPSpec
    from mpath_tf.baselines.common import fit_scores_to_budget, keep_to_budget

    spec = MLPSpec((20,), (10, 10), 2)
    high, low = np.linspace(1, 2, 10), np.linspace(0, 0.5, 10)
    widths = keep_to_budget(spec, [high, low], spec.count([10, 4]))
    assert widths == [10, 4]  # only the low-scored layer loses neurons
    # the neurons the method removed go first, whatever their scores
    alive = [np.ones(10, bool), np.arange(10) < 5]
    assert keep_to_budget(spec, [low, high], spec.count([10, 5]))[1] == 10  # by score alone
    assert fit_scores_to_budget(spec, [low, high], alive, spec.count([10, 5])) == [10, 5]
    # more removed than the budget asks: the best-scored removed neurons stay
    alive = [np.arange(10) < 2, np.ones(10, bool)]
    assert fit_scores_to_budget(spec, [high, high], alive, spec.count([6, 10])) == [6, 10]


# --- group lasso ------------------------------------------------------------------------------

def test_group_lasso_drives_whole_neurons_to_zero(digits):
    from mpath_tf.baselines import group_lasso
    from mpath_tf.training.loop import accuracy

    spec = _spec(digits)

    def zeroed(model):  # neurons whose incoming weights are < 1% of the layer's largest
        return sum(int(np.sum(n < 0.01 * n.max())) for n in group_lasso.neuron_norms(model, 3))

    assert zeroed(group_lasso.sparsify(spec, digits, 0.0, epochs=20, batch_size=32)) == 0
    model = group_lasso.sparsify(spec, digits, strength=3e-3, epochs=20, batch_size=32)
    assert zeroed(model) >= 20  # whole columns, not single weights
    kernel = np.asarray(model.get_layer("hidden_1").kernel)  # (64, 48)
    rms = np.sqrt(np.mean(kernel ** 2, axis=0))
    dead = rms < 0.01 * rms.max()
    assert np.abs(kernel[:, dead]).max() < 0.05 * np.abs(kernel[:, ~dead]).max()
    assert accuracy(model, digits.x_test, digits.y_test) > 0.8  # the rest still classifies
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        group_lasso.sparsify(spec, digits, strength=float("nan"))


def test_group_lasso_penalty_is_eq_1_and_round_trips():
    from mpath_tf.baselines.group_lasso import GroupLasso

    kernel = np.array([[3.0, 0.0, 1.0], [4.0, 0.0, 1.0]], "float32")  # column norms 5, 0, sqrt 2
    expected = 0.1 * np.sqrt(2) * (5 + 0 + np.sqrt(2))
    assert float(GroupLasso(0.1)(kernel)) == pytest.approx(expected, rel=1e-5)
    config = GroupLasso(0.1).get_config()
    assert GroupLasso(**config).get_config() == config


# --- MorphNet ---------------------------------------------------------------------------------

def test_morphnet_shrink_zeroes_the_scales_of_costly_neurons_first(digits):
    from mpath_tf.baselines import morphnet

    spec = _spec(digits)  # 64 -> 48 -> 48 -> 48 -> 10: a layer-3 neuron costs half a layer-1 one
    scales = morphnet.shrink(spec, digits, strength=3.0, epochs=20, batch_size=32)
    zeroed = [float(np.mean(s == 0)) for s in scales]  # exactly zero: the proximal step
    assert zeroed[0] > zeroed[2] and zeroed[1] > zeroed[2] and zeroed[2] < 1
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        morphnet.search(spec, digits, iterations=0)


def test_soft_threshold_is_the_l1_proximal_step_and_round_trips():
    from mpath_tf.baselines.morphnet import SoftThreshold

    out = np.asarray(SoftThreshold(0.5)(np.array([2.0, 0.3, -0.5, -1.0], "float32")))
    np.testing.assert_allclose(out, [1.5, 0.0, 0.0, -0.5])
    assert SoftThreshold(**SoftThreshold(0.25).get_config()).get_config() == {"threshold": 0.25}
    with pytest.raises(ValueError, match="threshold must be >= 0. Received: threshold=-1"):
        SoftThreshold(-1)


def test_expand_multiplies_every_width_by_one_factor():
    from mpath_tf.baselines import MLPSpec
    from mpath_tf.baselines.common import scale_to_budget

    spec = MLPSpec((784,), (500,) * 4, 10)
    for budget in (spec.parameters // 4, spec.parameters * 3 // 4):
        widths = scale_to_budget(spec, [200, 100, 100, 40], budget)
        assert within_budget(spec.count(widths), budget)
        ratios = np.array(widths) / [200, 100, 100, 40]
        assert ratios.max() / ratios.min() < 1.05


# --- variational dropout ----------------------------------------------------------------------

def test_variational_dense_masks_dropped_weights_at_inference_and_round_trips(tmp_path):
    import keras

    from mpath_tf.baselines.variational_dropout import VariationalDense

    layer = VariationalDense(2, seed=0)
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    layer(x)
    theta = np.array([[1.0, 0.5], [2.0, -1.0], [0.0, 1.0]], "float32")
    log_sigma2 = np.full((3, 2), -10.0, "float32")
    log_sigma2[1, 0] = 8.0  # log alpha = 8 - log 4 > 3: dropped
    layer.set_weights([theta, log_sigma2, np.zeros(2, "float32")])
    kept = theta.copy()
    kept[1, 0] = 0.0
    np.testing.assert_allclose(np.asarray(layer(x)), x @ kept, rtol=1e-6)
    noisy = np.asarray(layer(np.repeat(x, 500, axis=0), training=True))  # weight [1,0] adds noise
    assert noisy[:, 0].std() > 1.0 and noisy[:, 1].std() < 0.1
    assert float(layer.losses[-1]) > 0  # the KL term
    model = keras.Sequential([keras.Input((3,)), layer])
    model.save(tmp_path / "vd.keras")
    again = keras.saving.load_model(tmp_path / "vd.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.layers[0].get_config() == layer.get_config()
    with pytest.raises(ValueError, match="units must be >= 1. Received: units=0"):
        VariationalDense(0)


def test_variational_dropout_drops_the_weights_of_blank_pixels(digits):
    from mpath_tf.baselines import variational_dropout

    spec = _spec(digits)
    model = variational_dropout.sparsify(spec, digits, epochs=10, batch_size=32)
    x = digits.x_train.reshape(len(digits.x_train), -1)
    blank = np.all(x == 0, axis=0)  # pixels that are 0 in every training image
    assert blank.sum() >= 2
    dropped = np.asarray(model.get_layer("hidden_1").log_alpha()) >= 3.0  # (64, 48)
    assert dropped[blank].mean() > 0.9  # no data: only the KL term acts on them
    assert dropped[~blank].mean() < dropped[blank].mean()
    shares = variational_dropout.kept_share(model, 3)
    assert [len(s) for s in shares] == list(SPEC_WIDTHS) and all(np.all((0 <= s) & (s <= 1)) for s in shares)


# --- tfmot magnitude pruning -----------------------------------------------------------------

def test_magnitude_pruning_keeps_the_dense_shape_so_the_tflite_does_not_shrink(digits, tmp_path):
    from converters import export_tflite
    from mpath_tf.baselines import magnitude
    from mpath_tf.baselines.common import dense_mlp

    spec = _spec(digits)
    result = magnitude.compress(spec, digits, spec.parameters // 4, epochs=3)
    kernel = np.asarray(result.model.get_layer("hidden_2").kernel)
    assert abs(np.mean(kernel == 0) - result.details["sparsity"]) < 0.01  # every kernel pruned
    sparse = export_tflite(result.model, tmp_path / "pruned.tflite")
    dense = export_tflite(dense_mlp(spec, seed=0), tmp_path / "dense.tflite")
    # the zeros are stored: a quarter of the non-zero weights, (about) the dense file's size
    assert sparse.stat().st_size >= 0.95 * dense.stat().st_size
