"""Choosing for the device: ``--objective latency|ram|flash`` on a target,
the dense reference a candidate, predictions a user can trust."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from mpath_tf.pipeline.objective import (DENSE, candidates, choose, fit_to_measured,
                                         paying_targets, table_costs)

from .conftest import TINY_CONFIG



def test_choose_never_ships_a_multipath_model_costlier_than_dense():
    rng = np.random.default_rng(0)
    for _ in range(200):
        paths = list(range(2, 12))
        cost = {b: float(rng.uniform(1, 3)) for b in paths} | {DENSE: float(rng.uniform(1, 3))}
        predicted = {b: cost[b] + float(rng.normal(0, 0.5)) for b in paths}
        accuracy = {b: 0.9 for b in [*paths, DENSE]}
        out = choose([*paths, DENSE], predicted, cost.get, accuracy, margin=0.05)
        if out["choice"] != DENSE:
            assert out["measured"][out["choice"]] <= 0.95 * cost[DENSE]
        else:  # dense is chosen only when no finalist beats it by the margin
            assert all(out["measured"][b] > 0.95 * cost[DENSE] for b in out["finalists"])
        assert set(out["finalists"]) <= set(paths) and len(out["finalists"]) == 3
    # the params choice is measured whatever its prediction, and wins when cheapest
    out = choose([2, 3, 4, 9, DENSE], {2: 1.0, 3: 1.1, 4: 1.2, 9: 5.0},
                 {2: 2.0, 3: 2.0, 4: 2.0, 9: 0.9, DENSE: 1.0}.get,
                 {b: 0.9 for b in [2, 3, 4, 9, DENSE]}, margin=0.05, always=[9])
    assert out["choice"] == 9 and out["finalists"] == [2, 3, 4, 9]


def test_candidates_are_within_the_drop_and_dense_stands_for_one_path():
    rows = [{"paths": b, "predicted_val_accuracy": a, "measured_val_accuracy": None}
            for b, a in [(1, 0.96), (2, 0.955), (3, 0.94), (4, 0.90)]]
    rows[1]["measured_val_accuracy"] = 0.955
    assert candidates(rows, 0.02) == [1, 2, 3]
    assert candidates(rows, 0.02, reference_accuracy=0.96) == [2, 3, DENSE]
    assert candidates(rows, 0.0, reference_accuracy=0.99) == [DENSE]


def test_fit_to_measured_puts_predictions_on_the_measured_scale():
    predicted = {b: 100.0 / b for b in range(1, 20)}
    measured = {b: 3 * predicted[b] + 7 for b in (1, 4, 9)}
    fitted = fit_to_measured(predicted, measured)
    assert fitted[13] == pytest.approx(3 * predicted[13] + 7)


def test_table_costs_follow_the_bundled_cortex_m4_table():
    """On the Cortex-M4 table, 256-wide multipath stacks are predicted
    cheaper than dense (the default digits run measured 2.14x fewer
    instructions at 57 paths, docs/results.md), 64-wide ones at many paths
    are not (measured 0.69-0.88x from 8 paths)."""
    from converters.profiles import load_profile
    from converters.profiles import target_profile
    from mpath_tf import build_supernet

    table = load_profile(target_profile("tflm:cortex-m4"))
    wide_net = build_supernet((64,), 10, depth=4, width=256, seed=0)
    wide = table_costs(wide_net, table)
    assert wide[1][0] == "per_path"
    assert min(cost for b, (_, cost) in wide.items() if 8 <= b <= 64) < wide[1][1] / 1.5
    narrow = table_costs(build_supernet((64,), 10, depth=4, width=64, seed=0), table)
    assert narrow[46][1] > narrow[1][1]
    assert {lowering for lowering, _ in narrow.values()} <= {"per_path", "batch_matmul", "conv",
                                                               "bucketed"}
    paying = paying_targets(wide_net, list(range(2, 65)))
    assert "tflm:cortex-m4" in {p["target"] for p in paying}


@pytest.mark.parametrize("extra,message", [
    (["--objective", "latency", "--max-params", "900"], "Drop one of them"),
    (["--objective", "ram", "--paths", "2"], "cannot be combined with --objective ram"),
    (["--objective", "latency", "--method", "lambda", "--lam", "1"], "--method rank"),
    (["--objective", "speed"], "Invalid value for '--objective'"),
])
def test_bad_objective_settings_exit_2(extra, message, tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["search", "--run-dir", str(tmp_path / "r"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A copy of the session's tiny finished run: the objectives resume it
    (objective and target are not part of what a run trains)."""
    from .conftest import tiny_run_copy

    return tiny_run_copy(tmp_path_factory)


def _search(run, **settings):
    from mpath_tf.pipeline.config import SearchConfig
    from mpath_tf.pipeline.run import search

    config = SearchConfig(**{**TINY_CONFIG, **settings}).validate()
    lines: list[str] = []
    return search(config, run, log=lines.append), lines


def _assert_trade_off_recorded(result, run):
    objective = result["objective"]
    rows = {r["paths"]: r for r in result["rows"]}
    assert all(r["predicted_cost"] is not None for r in rows.values())
    for key, cost in objective["measured"].items():
        if key != DENSE:
            assert rows[int(key)]["measured_cost"] == cost
    with open(run / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {"predicted_cost", "measured_cost"} <= set(table[0])
    assert json.loads((run / "results.json").read_text())["objective"] == objective


def test_objective_latency_on_cortex_m4_never_costs_more_than_dense(trained):
    """Instructions are counted exactly: the chosen model executes no more
    than dense, measured in the run, and the closing lines say what was
    chosen against dense."""
    from edge_bench.mcu.build import get_core, is_built

    if not is_built(get_core("cortex-m4")):
        if os.environ.get("MPATH_TF_REQUIRE_MCU"):
            pytest.fail("the Cortex-M4 runner is not built; .ci/run runs `mpath-tf setup mcu`")
        pytest.skip("the Cortex-M4 runner is not built (`mpath-tf setup mcu`); CI builds it")
    result, lines = _search(trained, objective="latency", target="tflm:cortex-m4",
                            max_accuracy_drop=1.0)
    objective = result["objective"]
    assert objective["unit"] == "instructions" and objective["measured_on"] == "tflm:cortex-m4"
    measured = objective["measured"]
    assert measured[str(objective["choice"])] <= measured[DENSE]
    assert 3 <= len(objective["finalists"]) <= 4 and DENSE in measured
    assert objective["source"].startswith("the lowering cost table of tflm:cortex-m4")
    assert max(r["paths"] for r in result["rows"]) in objective["finalists"]  # drop 1.0: all in
    assert any(line.startswith("--objective latency on tflm:cortex-m4:") for line in lines)
    if objective["choice"] == DENSE:
        assert result["chosen"]["dense"] and result["chosen"]["parameters"] == (
            result["reference"]["parameters"])
        assert any("dense is the answer here" in line for line in lines)
    _assert_trade_off_recorded(result, trained)


def test_objective_ram_chooses_by_the_measured_tflm_arena(trained):
    """RAM is TFLM's arena on this machine's TFLM interpreter (target local):
    the chosen model's arena is the smallest measured, dense included, and
    a resumed run with another objective trains nothing again."""
    result, lines = _search(trained, objective="ram", max_accuracy_drop=1.0)
    objective = result["objective"]
    assert objective["measured_on"] == "tflm" and objective["unit"] == "bytes"
    measured = objective["measured"]
    assert measured[str(objective["choice"])] == min(measured.values())
    _assert_trade_off_recorded(result, trained)

    again, lines = _search(trained, objective="flash", max_accuracy_drop=1.0)
    assert not any("training" in line and "done earlier" not in line for line in lines
                   if line.startswith(("one-shot", "dense reference", "sample")))
    flash = again["objective"]["measured"]
    assert flash[str(again["objective"]["choice"])] == min(flash.values())


def test_a_finished_run_chooses_again_with_a_cost_table(trained):
    """--cost-table only predicts an objective's costs in a rank run, so a
    finished run resumes with one (a table of the target from `mpath-tf
    calibrate`), and its predictions come from that table."""
    from converters.profiles import BUNDLED

    result, _ = _search(trained, objective="latency", max_accuracy_drop=1.0,
                        cost_table=str(BUNDLED))
    assert result["objective"]["source"] == "the lowering cost table of local"


def test_predictions_never_exceed_what_the_run_measured_by_more_than_their_error(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    best = max([r["measured_val_accuracy"] for r in results["rows"]
                if r["measured_val_accuracy"] is not None]
               + [results["reference"]["val_accuracy"]])
    for row in results["rows"]:
        assert row["predicted_val_accuracy"] <= best + (row["predicted_std"] or 0) + 1e-9


def test_a_model_chosen_for_another_device_says_so_when_slower_here():
    from mpath_tf.pipeline.results import outcome_lines

    result = {
        "chosen": {"paths": 57, "parameters": 26806, "percent_of_mlp": 12.4,
                   "test_accuracy": 0.96, "exports": {"int8": {"bytes": 94834}}},
        "reference": {"test_accuracy": 0.97, "parameters": 216586, "accuracy_difference_pt": -1,
                      "exports": {"int8": {"bytes": 250010}}},
        "speed": {"int8": {"chosen_us": 4.5, "reference_us": 3.2, "speedup": 0.71}},
        "settings": {"max_accuracy_drop": 0.01},
        "rows": [{"paths": 57, "parameters": 26806}],
        "objective": {"name": "latency", "measured_on": "tflm:cortex-m4",
                      "unit": "instructions", "choice": 57, "runner_up": 57,
                      "finalists": [57, 58], "measured": {"57": 227.5e3, "58": 228.1e3,
                                                          "dense": 486.5e3}},
    }
    lines = outcome_lines(result)
    assert ("--objective latency on tflm:cortex-m4: chosen 57 paths, int8 inference 227.5k "
            "instructions vs dense 486.5k instructions, 2.14x less; other finalists: 58 paths "
            "228.1k instructions") in lines
    slower = next(line for line in lines if line.startswith("the chosen model is slower"))
    assert "cheapest in latency on tflm:cortex-m4" in slower
    assert slower.endswith("It was chosen for tflm:cortex-m4, not for this machine.")


def test_a_calibrated_table_of_the_target_predicts_its_costs(tmp_path):
    """`mpath-tf profile --target ssh://...` makes the table that predicts
    a board's costs; a file that is not one is refused before training."""
    from click.testing import CliRunner

    from converters.profiles import BUNDLED
    from mpath_tf import build_supernet
    from mpath_tf.cli import cli
    from mpath_tf.pipeline.objective import cost_table

    net = build_supernet((64,), 10, depth=4, width=16, seed=0)
    assert cost_table(net, "ssh://pi@board") is None  # no table: a fitted line instead
    assert cost_table(net, "ssh://pi@board", BUNDLED)["layers"]
    bad = tmp_path / "table.json"
    bad.write_text("{}")
    result = CliRunner().invoke(cli, ["search", "--objective", "latency", "--cost-table", str(bad),
                                      "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is not a lowering profile" in result.output
    assert not (tmp_path / "r").exists()
