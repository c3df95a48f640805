"""Cost-regularized searches: cost terms, gated supernets, the lam-hypernetwork, CLI."""

import itertools
import json

import keras
import numpy as np
import pytest

from tests.conftest import search_finished
from click.testing import CliRunner

from mpath_tf import derive
from mpath_tf.cli import cli
from converters.profiles import latency_costs
from mpath_tf.core.costs import CostTable, expected_cost
from mpath_tf.core.derivation import count_parameters
from mpath_tf.errors import ConfigError
from mpath_tf.core.gates import gate_widths
from mpath_tf.core.supernet import Supernet, build_supernet, gate
from mpath_tf.storage import atomic_save_model
from mpath_tf.core.saving import load_model
from mpath_tf.core.permeability import discrete_permeability
from mpath_tf.tradeoff.train import (estimate_lambda, lam_for_budget, lambda_curve, train_fixed_lambda,
                               train_hypernet)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def enumerated_cost(q, table: CostTable) -> float:
    """E[cost] by summing over all 2^(W-1) membrane states (the reference)."""
    total = 0.0
    for state in itertools.product([0, 1], repeat=len(q)):
        probability = np.prod([qk if open_ else 1 - qk for qk, open_ in zip(q, state)])
        cuts = [k + 1 for k, open_ in enumerate(state) if not open_]
        total += probability * table.cost(np.diff([0, *cuts, table.width]))
    return total


@pytest.mark.parametrize("kind", ["params", "random"])
def test_expected_cost_equals_enumerating_every_layout(kind, rng):
    width = 7
    table = (CostTable.params(width, depth=4) if kind == "params" else
             CostTable("latency", width, 4, tuple(rng.uniform(1, 9, width)), "us"))
    q = rng.uniform(0.05, 0.95, width - 1).astype("float32")
    assert float(expected_cost(q, table.block)) == pytest.approx(enumerated_cost(q, table), rel=1e-5)


def test_expected_cost_of_hard_gates_is_the_layout_cost():
    table = CostTable.params(6, depth=3)
    q = np.array([1, 0, 1, 1, 0], "float32")  # paths [2, 3, 1]
    assert float(expected_cost(q, table.block)) == pytest.approx(table.cost([2, 3, 1]))
    # the params table counts the path layers' parameters exactly
    assert table.cost([2, 3, 1]) == (count_parameters(10, 3, 3, [2, 3, 1])
                                     - count_parameters(10, 3, 1, [6]))


def test_expected_cost_gradient_closes_membranes():
    q = keras.Variable(np.full(5, 0.5, "float32"))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        cost = expected_cost(q, CostTable.params(6, 3).block)
    # more open membranes mean wider paths and more parameters
    assert np.all(tape.gradient(cost, q).numpy() > 0)


def test_latency_table_from_the_bundled_calibration():
    table = latency_costs(200, depth=4, quantization="int8")
    assert table.unit == "us" and table.target == "local" and table.lowering == "per_path"
    assert all(b >= a for a, b in zip(table.block, table.block[1:]))  # wider paths cost more
    # per-path overheads: 200 single-neuron paths cost more than their weights alone suggest
    assert table.cost([1] * 200) > 0 and table.dense > 0


def test_cost_table_round_trip_and_refusals(tmp_path):
    table = CostTable.params(5, 3)
    assert CostTable.load(table.save(tmp_path / "t.json")) == table
    with pytest.raises(ConfigError, match="mpath-3-5, not mpath-4-5"):
        table.check(5, 4)
    latency = CostTable("latency", 5, 3, (1.0,) * 5, "us", target="adb")
    with pytest.raises(ConfigError, match="measured on target 'adb', not 'local'"):
        latency.check(5, 3, target="local")
    with pytest.raises(ConfigError, match="finite and >= 0"):
        CostTable("params", 3, 2, (1.0, -1.0, 2.0)).validate()
    with pytest.raises(ConfigError, match="Not an mpath-tf cost table"):
        CostTable.from_dict({"kind": "params"})


def test_gate_widths():
    assert gate_widths([1.0, 2.0]) == [3]
    assert gate_widths([-1.0, 0.0]) == [1, 1, 1]
    assert gate_widths([0.5, -0.5, 0.5]) == [2, 2]


def _gated(**kwargs):
    """The MLP mpath-3-6 with a trade-off (``gate``'s arguments) and set logits."""
    net = gate(build_supernet((5,), 3, depth=3, width=6, seed=0), seed=0, **kwargs)
    net.omega.assign(np.array([0.2, -0.1, 0.3, -0.2, 0.1], "float32"))
    if net.trade_off == "hypernet":
        net.slopes[0].assign(np.array([0.1, 0.0, 0.4, 0.0, 0.05], "float32"))
    return net


@pytest.mark.parametrize("kwargs,lam", [
    pytest.param({"lam": 0.5}, None, id="gated"),
    pytest.param({"lam_max": 2.0}, 0.0, id="hyper-lam0"),
    pytest.param({"lam_max": 2.0}, 1.5, id="hyper-lam1.5"),
])
def test_derived_network_equals_the_hard_gated_supernet(kwargs, lam, rng):
    net = _gated(**kwargs)
    x = rng.normal(size=(16, 5)).astype("float32")
    widths = net.derived_widths(lam=lam)
    model = derive(net, lam=lam)
    expected = net(x, permeability=discrete_permeability(widths))
    np.testing.assert_allclose(model(x), expected, atol=1e-6)
    # inference mode of the supernet is the hard-gated network
    np.testing.assert_allclose(net(x, lam=lam), expected, atol=1e-6)


def test_hypernetwork_cuts_more_as_lam_grows():
    net = _gated(lam_max=2.0)
    assert [len(net.derived_widths(lam=x)) for x in (0.0, 1.4, 1.6, 2.0)] == [3, 3, 4, 4]
    thresholds = net.thresholds()
    assert thresholds[0] == pytest.approx(4.0) and thresholds[2] == pytest.approx(1.5)
    assert thresholds[1] == 0.0 and thresholds[4] == pytest.approx(4.0)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"lam": 0.5}, id="gated"),
    pytest.param({"lam_max": 2.0}, id="hyper"),
])
def test_gated_supernets_round_trip(kwargs, tmp_path, rng):
    net = _gated(costs=[CostTable("latency", 6, 3, tuple(range(1, 7)), "us")], **kwargs)
    config = net.get_config()
    assert Supernet.from_config(config).get_config() == config
    atomic_save_model(net, tmp_path / "net.keras")
    loaded = load_model(tmp_path / "net.keras")
    x = rng.normal(size=(8, 5)).astype("float32")
    np.testing.assert_allclose(loaded(x), net(x), atol=1e-6)
    assert loaded.costs == net.costs and loaded.derived_widths() == net.derived_widths()
    assert loaded.trade_off == net.trade_off


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_lam_is_refused(bad):
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        _gated(lam=bad)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        _gated(lam_max=2.0).derived_widths(lam=bad)


def test_neither_or_both_trade_offs_are_refused():
    net = build_supernet((5,), 3, depth=3, width=6, seed=0)
    for kwargs in ({}, {"lam": 0.1, "lam_max": 1.0}):
        with pytest.raises(ValueError, match="Pass one of `lam`"):
            gate(net, **kwargs)


def test_cost_table_for_another_network_is_refused():
    with pytest.raises(ConfigError, match="for width 6 and depth 4, not 6 and 3"):
        _gated(lam=0.5, costs=[CostTable.params(6, 4)])


def test_lam_above_lambda_warns_and_paper_supernet_has_no_lam():
    with pytest.warns(UserWarning, match="above Lambda=2"):
        _gated(lam_max=2.0).derived_widths(lam=3.0)
    with pytest.raises(ValueError, match="trained without a cost term"):
        derive(build_supernet((5,), 3, 3, 6, seed=0), lam=0.5)


def test_larger_lam_gives_fewer_parameters(digits):
    counts = {}
    for lam in (0.0, 1.0):
        net = train_fixed_lambda(digits, lam, depth=3, width=16, epochs=15, seed=0)
        counts[lam] = derive(net).count_params()
    assert counts[1.0] < counts[0.0]


@pytest.fixture(scope="module")
def hypernet(digits):
    from mpath_tf import build_supernet
    from mpath_tf.training.loop import train

    supernet = build_supernet(digits.input_shape, digits.num_classes, 3, 16, seed=0)
    train(supernet, digits, 8)
    return train_hypernet(supernet, digits, lam_max=2.0, epochs=20, seed=0)


def test_hypernetwork_is_monotone_in_lam_on_digits(hypernet, digits):
    curve = lambda_curve(hypernet, digits, np.linspace(0, 2.0, 11))
    params = [r["parameters"] for r in curve]
    assert all(b <= a for a, b in zip(params, params[1:])), params
    assert params[-1] < params[0]  # one training run spans several trade-offs
    assert curve[0]["val_accuracy"] > 0.5  # and the lam = 0 network works
    assert estimate_lambda(curve, digits.num_classes) is not None


def test_lam_for_budget_is_the_smallest_lam_within_it(hypernet):
    input_dim = 64

    def params(lam):
        return count_parameters(input_dim, 10, 3, hypernet.derived_widths(lam=lam))

    budget = (params(0.0) + params(2.0)) // 2
    lam = lam_for_budget(hypernet, max_parameters=budget)
    assert params(lam) <= budget < params(lam * 0.999)
    assert lam_for_budget(hypernet, max_parameters=10) is None


# lr 0.01: the one-shot model is above chance after 3 epochs, so the
# hypernetwork's warm-up has nothing to do
TINY = ["--no-bench", "--depth", "3", "--width", "8", "--epochs", "3", "--finetune-epochs", "1",
        "--batch-size", "64", "--learning-rate", "0.01"]


@pytest.mark.parametrize("method,extra", [
    pytest.param("lambda", ["--lam", "0.5", "--cost", "latency"], id="lambda-latency"),
    pytest.param("hypernet", ["--lam", "1.0", "--lam-max", "2", "--hyper-epochs", "1"], id="hypernet"),
])
def test_search_methods_from_the_cli(method, extra, tmp_path):
    run = tmp_path / "run"
    result = invoke("search", *TINY, "--method", method, *extra, "--run-dir", run, "--json")
    assert search_finished(result.exit_code, result.output), result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == method and summary["chosen"]["paths"] == results["chosen"]["paths"]
    widths = results["chosen"]["path_widths"]
    assert results["chosen"]["parameters"] == count_parameters(64, 10, 3, widths)
    assert (run / "model_int8.tflite").is_file()
    if method == "hypernet":
        assert len(results["hypernet"]["curve"]) == 21
    # the report renders this run too: its chosen network, and the
    # hypernetwork's networks along lam
    report = invoke("report", run)
    assert report.exit_code == 0, report.output
    page = (run / "report.html").read_text()
    assert f"--method {method}" in page and "Every path count" not in page
    assert ("networks along lam" in page) == (method == "hypernet")
    # a rerun resumes: nothing is trained again
    again = invoke("search", *TINY, "--method", method, *extra, "--run-dir", run)
    assert search_finished(again.exit_code, again.output) and "done earlier" in again.output


@pytest.mark.parametrize("args,message", [
    pytest.param(["--method", "lambda"], "pass --lam", id="lambda-needs-lam"),
    pytest.param(["--method", "lambda", "--lam", "-1"], "finite number >= 0", id="negative"),
    pytest.param(["--method", "lambda", "--lam", "nan"], "finite number >= 0", id="nan"),
    pytest.param(["--cost", "latency"], "apply to --method lambda or --method hypernet", id="rank-latency"),
    pytest.param(["--method", "hypernet", "--lam-max", "0"], "--lam-max must be > 0", id="lam-max"),
    pytest.param(["--method", "lambda", "--lam", "1", "--max-params", "9"], "not from a budget",
                 id="lambda-budget"),
    pytest.param(["--method", "lambda", "--lam", "1", "--cost", "latency", "--target", "adb"],
                 "measured on target 'local', not 'adb'", id="calibration-of-another-target"),
])
def test_bad_search_settings_exit_2(args, message, tmp_path):
    result = invoke("search", *TINY, *args, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cost_table_for_another_width_exits_2(tmp_path):
    table = CostTable("latency", 500, 4, (1.0,) * 500, "us", target="local").save(tmp_path / "t.json")
    result = invoke("search", *TINY, "--method", "lambda", "--lam", "1", "--cost", "latency",
                    "--cost-table", table, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and "mpath-4-500, not mpath-3-8" in result.output
