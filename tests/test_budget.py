"""Choosing by budget: the rule, its messages, and a search that meets a
size and a latency limit measured on this machine."""

import json

import pytest

from mpath_tf.pipeline.budget import Budget, BudgetError, choose_by_budget, pareto_paths
from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.errors import ConfigError

ROWS = [{"paths": b, "parameters": 1000 // b, "predicted_val_accuracy": 0.99 - 0.01 * b}
        for b in range(1, 11)]


def test_the_most_accurate_model_within_every_limit_is_chosen():
    assert choose_by_budget(ROWS, Budget(max_params=300))["paths"] == 4  # 250 params
    assert choose_by_budget(ROWS, Budget(max_params=300, min_accuracy=0.94))["paths"] == 4
    # size is asked only for candidates within the exact limits, best first
    asked = []
    chosen = choose_by_budget(ROWS, Budget(max_size_kb=0.15),
                              size_kb=lambda b: asked.append(b) or 1000 / b / 1000 + 0.02)
    assert chosen["paths"] == 8 and asked == [7, 8]  # 142 params -> 0.163 KB; 125 -> 0.145
    chosen = choose_by_budget(ROWS, Budget(max_latency_ms=0.5), latency_ms=lambda b: 3.0 / b)
    assert chosen["paths"] == 6 and set(chosen["checked"]) == {1, 2, 3, 4, 5, 6}


def test_no_model_meets_the_budget_names_the_nearest():
    with pytest.raises(BudgetError, match=r"No model meets min_accuracy=0\.985 and "
                                          r"max_params=200\. The nearest is 5 paths"):
        choose_by_budget(ROWS, Budget(min_accuracy=0.985, max_params=200))


@pytest.mark.parametrize("settings, message", [
    pytest.param(dict(paths=3, max_params=100), "`paths` chooses the model itself", id="paths"),
    pytest.param(dict(min_accuracy=97), r"Received: min_accuracy=97", id="percent"),
    pytest.param(dict(max_latency_ms=0), r"`max_latency_ms` must be a finite number > 0",
                 id="latency"),
    pytest.param(dict(final_epochs=0), r"`final_epochs` must be >= 1", id="final"),
])
def test_bad_budgets_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(width=8, **settings).validate()


def test_pareto_front_of_accuracy_against_parameters():
    cost = {r["paths"]: r["parameters"] for r in ROWS}
    assert pareto_paths(ROWS, cost) == list(range(10, 0, -1))  # all on the front


def test_pareto_front_keeps_only_undominated_points():
    import numpy as np

    rng = np.random.default_rng(0)
    points = rng.random((50, 2))
    rows = [{"paths": i, "predicted_val_accuracy": float(a)} for i, (_, a) in enumerate(points)]
    cost = {i: float(c) for i, (c, _) in enumerate(points)}
    front = set(pareto_paths(rows, cost))
    for i, (c, a) in enumerate(points):
        dominated = any(c2 <= c and a2 >= a and (c2, a2) != (c, a) for c2, a2 in points)
        assert (i in front) != dominated


def test_search_meets_size_and_latency_budgets_measured_here(tiny_run, tmp_path):
    import shutil

    from mpath_tf.pipeline.run import search

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # one-shot training and samples are reused
    settings = json.loads((run / "run.json").read_text())["settings"]
    budget = SearchConfig(**{**settings, "max_size_kb": 20.0, "max_latency_ms": 1.0,
                             "final_epochs": 2})
    result = search(budget, run)
    chosen = result["chosen"]["paths"]
    checked = result["budget"]["checked"][str(chosen)]
    assert checked["size_kb"] <= 20.0 and checked["latency_ms"] <= 1.0
    assert (run / "budget" / f"paths-{chosen}_int8.tflite").is_file()
    rows = {r["paths"]: r for r in result["rows"]}
    best = max(rows.values(), key=lambda r: (r["predicted_val_accuracy"], -r["parameters"]))
    assert result["pareto_params"][-1] == best["paths"]  # the front ends at the most accurate
    # final fine-tuning with 2 epochs is kept apart from the 1-epoch samples
    assert (run / "models" / f"paths-{chosen}-final-e2.keras").is_file()
    state = json.loads((run / "state.json").read_text())
    assert state["final"][str(chosen)]["epochs"] == 2
    assert all(len(s["val_curve"]) == 1 for s in state["samples"].values())  # 1 epoch each
    with pytest.raises(BudgetError, match="The nearest is"):
        search(SearchConfig(**{**settings, "max_params": 10}), run)
    # the refused budget lost nothing: the last results are still there
    assert json.loads((run / "results.json").read_text())["budget"]["limits"].startswith("max_size_kb=20")
