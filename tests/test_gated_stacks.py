"""Cost-regularized search (``--method lambda|hypernet``) on networks other
than the built-in MLP: a CNN, a ResNet-8, a user's model with a convolution
and a Dense stack. Every stack gets its own gates and cost table, so one lam
chooses a path count per stack; the derived network is exactly the
hard-gated supernet."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mpath_tf import derive, load_model
from mpath_tf.cli import cli
from mpath_tf.core.costs import CostTable
from mpath_tf.core.gates import stack_parameter_costs
from mpath_tf.core.models import build_cnn, build_resnet8
from mpath_tf.core.supernet import gate, to_supernet
from mpath_tf.data import load_dataset
from mpath_tf.tradeoff.train import train_fixed_lambda
from tests.conftest import search_finished


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def scrambled(model, seed=0):
    """Give the gates a mix of open and closed membranes (and slopes, for a hypernetwork)."""
    rng = np.random.default_rng(seed)
    for omega in model.omegas:
        omega.assign(rng.normal(0, 0.15, omega.shape).astype("float32"))
    for slope in getattr(model, "slopes", []):
        slope.assign(rng.uniform(0, 0.3, slope.shape).astype("float32"))
    return model


@pytest.mark.parametrize("build", [
    pytest.param(lambda: build_cnn((8, 8, 1), 3, depth=3, width=6), id="cnn"),
    pytest.param(lambda: build_resnet8((8, 8, 1), 3), id="resnet8"),
])
@pytest.mark.parametrize("kind", ["lam", "lam_max"])
def test_derived_network_is_the_hard_gated_supernet(build, kind, tmp_path):
    model = scrambled(gate(to_supernet(build()), **{kind: 1.0}, seed=0))
    lam = 0.4 if kind == "lam_max" else None
    layout = model.derived_layout(lam=lam)
    assert [sum(w) for w in layout] == model.widths and len(layout) == len(model.stacks)
    assert any(len(w) > 1 for w in layout)  # the scrambled gates cut somewhere
    x = np.random.default_rng(1).random((6, 8, 8, 1)).astype("float32")
    derived = derive(model, lam=lam) if lam is not None else derive(model)
    hard = model(x, permeability=model.layout_permeability(layout))
    np.testing.assert_allclose(derived(x), hard, atol=1e-5)
    np.testing.assert_allclose(model(x, lam=lam) if lam is not None else model(x), hard,
                               atol=1e-6)  # inference runs the hard gates
    assert model.layout_parameters(layout) == derived.count_params()
    # the gates, the costs and the function survive a .keras round trip
    model.save(tmp_path / "gated.keras")
    again = load_model(tmp_path / "gated.keras")
    assert type(again) is type(model) and again.derived_layout(lam=lam) == layout
    assert [t.block for t in again.costs] == [t.block for t in model.costs]
    np.testing.assert_allclose(again(x, permeability=again.layout_permeability(layout)), hard,
                               atol=1e-6)


def test_expected_cost_is_the_layout_cost_once_the_gates_are_certain():
    model = gate(to_supernet(build_resnet8((8, 8, 1), 3)), lam=1.0)
    # the gates start open: the derived network is the dense one
    assert model.derived_layout() == [[w] for w in model.widths]
    assert model.layout_cost(model.derived_layout()) == 1.0
    rng = np.random.default_rng(0)
    for omega in model.omegas:  # logits of +-20: open probabilities 0 or 1
        omega.assign(rng.choice([-2.0, 2.0], omega.shape).astype("float32"))
    layout = model.derived_layout()
    assert float(model.relative_cost()) == pytest.approx(model.layout_cost(layout), rel=1e-4)
    # parameters: a path of width w costs 9 w^2 + w in each membrane conv of a stage
    assert model.layout_cost(layout) == pytest.approx(
        sum(t.cost(w) for t, w in zip(stack_parameter_costs(model), layout))
        / sum(t.dense for t in stack_parameter_costs(model)))


def test_a_hypernetwork_only_cuts_more_as_lam_grows():
    model = scrambled(gate(to_supernet(build_resnet8((8, 8, 1), 3)), lam_max=2.0), seed=3)
    layouts = [model.derived_layout(lam=lam) for lam in np.linspace(0, 2, 11)]
    for before, after in zip(layouts, layouts[1:]):
        assert all(len(a) >= len(b) for a, b in zip(after, before))
        assert model.layout_cost(after) <= model.layout_cost(before)
    assert model.layout_cost(layouts[-1]) < model.layout_cost(layouts[0])


def test_a_stack_cost_table_must_fit_its_stack():
    supernet = to_supernet(build_cnn((8, 8, 1), 3, depth=3, width=6))
    with pytest.raises(Exception, match="width 8 and depth 3, not 6 and 3"):
        gate(supernet, lam=1.0, costs=[CostTable.params(width=8, depth=3)])


def test_the_cost_term_closes_gates_of_a_cnn():
    data = load_dataset("digits")

    def trained(lam):
        keras.utils.set_random_seed(0)
        supernet = to_supernet(build_cnn(data.input_shape, data.num_classes, depth=3, width=8))
        return train_fixed_lambda(data, lam, epochs=2, batch_size=64, learning_rate=3e-3,
                                  seed=0, supernet=supernet)

    free, priced = trained(0.0), trained(20.0)
    assert priced.trade_off == "lambda" and priced.lam == 20.0
    assert float(priced.relative_cost()) < float(free.relative_cost()) - 0.1


def user_model(path):
    """Two 3x3 convolutions of 6 channels, then Dense 12 -> 12: two stacks."""
    inputs = keras.Input((8, 8))
    h = keras.layers.Reshape((8, 8, 1))(inputs)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
    h = keras.layers.Dense(12, activation="relu")(h)
    h = keras.layers.Dense(12, activation="relu")(h)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h)).save(path)
    return path


def test_search_lambda_on_your_own_model_splits_each_stack(tmp_path):
    model, run = user_model(tmp_path / "mine.keras"), tmp_path / "run"
    result = invoke("search", "--model", model, "--method", "lambda", "--lam", "2",
                    "--epochs", "2", "--final-epochs", "1", "--batch-size", "64",
                    "--learning-rate", "0.01", "--no-bench", "--no-reference", "--run-dir", run)
    assert search_finished(result.exit_code, result.output), result.output
    results = json.loads((run / "results.json").read_text())
    chosen = results["chosen"]
    assert [sum(w) for w in chosen["path_widths"]] == [6, 12]  # one layout per stack
    assert chosen["paths"] == sum(len(w) for w in chosen["path_widths"])
    assert chosen["parameters"] == load_model(run / "model.keras").count_params()
    assert [t["width"] for t in results["cost"]["stacks"]] == [6, 12]
    assert chosen["exports"]["float32"]["verification"]["passed"]


def test_search_hypernet_on_the_cnn(tmp_path):
    run = tmp_path / "run"
    result = invoke("search", "--arch", "cnn", "--depth", "3", "--width", "6", "--method",
                    "hypernet", "--lam-max", "2", "--lam", "1", "--epochs", "2",
                    "--hyper-epochs", "1", "--final-epochs", "1", "--batch-size", "64",
                    "--learning-rate", "0.01", "--no-bench", "--no-reference", "--run-dir", run)
    assert search_finished(result.exit_code, result.output), result.output
    results = json.loads((run / "results.json").read_text())
    curve, chosen = results["hypernet"]["curve"], results["chosen"]
    assert len(curve) == 21 and all(len(r["path_counts"]) == 1 for r in curve)
    at_1 = next(r for r in curve if r["lam"] == 1.0)
    assert chosen["path_widths"] == load_model(run / "hypernet.keras").derived_widths(lam=1.0)
    assert chosen["paths"] == at_1["paths"] and chosen["parameters"] == at_1["parameters"]
    assert chosen["exports"]["float32"]["verification"]["passed"]


@pytest.mark.parametrize("extra, message", [
    (["--cost", "latency"], "no path-convolution int8 entries"),
    (["--cost", "latency", "--cost-table", "{table}"], "cost table for one Dense stack"),
])
def test_latency_costs_of_a_cnn_need_a_conv_calibration(extra, message, tmp_path):
    table = CostTable.params(width=6, depth=3).save(tmp_path / "t.json")
    run = tmp_path / "run"
    result = invoke("search", "--arch", "cnn", "--depth", "3", "--width", "6", "--method",
                    "lambda", "--lam", "1", *[a.format(table=table) for a in extra],
                    "--no-bench", "--run-dir", run)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (run / "gated.keras").exists()
