"""Choosing by what the target pays: the cheapest model within the accuracy limit.

``--objective params`` is the paper's choice (the most paths, so the fewest
parameters, within ``--max-accuracy-drop``). ``latency``, ``ram`` and
``flash`` choose for the device ``--target`` names:

1. The candidates are every path count whose predicted validation accuracy
   is within the drop of the best measured one, and the dense reference
   (its accuracy measured) when it was trained; without a reference, one
   path (the dense shape) is a path count like any other.
2. Each candidate's cost is predicted (``predicted_costs``): latency from
   the target's lowering cost table for the lowering ``auto`` picks there
   (``converters.profiles.auto_cost``; the bundled tables of ``local``,
   ``tflm`` and the Cortex-M cores), or, for a target without a table and
   for RAM and flash, from a line fitted to a few path counts measured on
   the target (``fitted_costs``).
3. The ``FINALISTS`` cheapest candidates, the one with the most paths (the
   ``params`` choice) and the dense reference are exported and measured on
   the target (``TargetFiles``); the cheapest measured one is chosen. On a target that times (rather than counts) a
   multipath model must beat dense by ``TIMING_MARGIN``, so that timing
   noise never ships a model that is not faster.

The predictions are then fitted to the measured costs (scale and offset),
so every path count's predicted cost in ``results.csv`` is in the target's
unit for the whole network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_bench.targets import counts_instructions
from mpath_tf.errors import ConfigError
from edge_bench.analysis import choose_fit_paths
from mpath_tf.pipeline.budget import pareto_paths

OBJECTIVES = ("params", "latency", "ram", "flash")
FINALISTS = 3
TIMING_MARGIN = 0.05
# Path counts measured to fit a cost line when the target has no cost table.
FIT_POINTS = 4
UNITS = {"params": "parameters", "ram": "bytes", "flash": "bytes"}
DENSE = "dense"


def check_objective(objective: str) -> None:
    """Refuse an unknown objective (exit 2 in the CLI).

    Raises:
        ConfigError: ``objective`` is not one of ``OBJECTIVES``.

    Example:
        >>> check_objective("latency")
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"Unknown objective '{objective}'. Choose one of: "
                          f"{', '.join(OBJECTIVES)}.")


def measured_on(objective: str, target: str) -> str:
    """The ``edge_bench`` target an objective's costs are measured on: the
    run's ``target`` for latency; a TFLM one for RAM (the arena) and flash
    (the file without metadata), ``tflm`` when ``target`` is not a TFLM one.

    Example:
        >>> measured_on("ram", "local"), measured_on("flash", "tflm:cortex-m4")
        ('tflm', 'tflm:cortex-m4')
    """
    if objective == "latency" or target.startswith("tflm"):
        return target
    return "tflm"


def candidates(rows: list[dict], max_accuracy_drop: float,
               reference_accuracy: float | None = None) -> list[int | str]:
    """The path counts within ``max_accuracy_drop`` of the best measured
    validation accuracy (the dense reference's too), and ``DENSE`` when the
    reference is within it; one path stands for the dense shape only without
    a reference.

    Example:
        >>> rows = [{"paths": b, "predicted_val_accuracy": a, "measured_val_accuracy": m}
        ...         for b, a, m in [(1, 0.95, None), (2, 0.95, 0.95), (3, 0.90, 0.90)]]
        >>> candidates(rows, 0.01), candidates(rows, 0.01, reference_accuracy=0.955)
        ([1, 2], [2, 'dense'])
    """
    best = max(r["measured_val_accuracy"] for r in rows if r["measured_val_accuracy"] is not None)
    if reference_accuracy is not None:
        best = max(best, reference_accuracy)
    limit = best - max_accuracy_drop
    found: list[int | str] = [r["paths"] for r in rows if r["predicted_val_accuracy"] >= limit
                              and not (reference_accuracy is not None and r["paths"] == 1)]
    if reference_accuracy is not None and reference_accuracy >= limit:
        found.append(DENSE)
    if not found:  # none within the drop: the most accurate, as choose_paths does
        top = max(r["predicted_val_accuracy"] for r in rows)
        found = [min(r["paths"] for r in rows if r["predicted_val_accuracy"] == top)]
    return found


def table_costs(supernet, table: dict, quantization: str = "int8") -> dict[int, tuple[str, float]]:
    """Every path count's lowering and predicted cost of its block-diagonal
    stack from a lowering cost table (the rest of the network costs the same
    for every path count): what ``auto`` picks for that table's device.

    Args:
        supernet: A trained MLP supernet (one stack of Dense membrane layers).
        table: A lowering cost table (``converters.profiles.load_profile``).
        quantization: The quantization whose entries are used.

    Returns:
        ``{b: (lowering, cost in the table's unit)}`` for b in [1, W].
    """
    from converters.profiles import auto_cost, profiled_mode, fit_costs
    from converters.lowering import neighbour_weights, path_stack
    from converters.tflite import AUTO_EXCLUDED
    from mpath_tf.core.derivation import derive, path_widths

    probe = derive(supernet, min(2, supernet.width))
    depth, neighbours = len(path_stack(probe) or [None]), neighbour_weights(probe)
    mode = profiled_mode(quantization)
    excluded = AUTO_EXCLUDED.get(mode, set())
    coefficients = fit_costs(table, mode)  # once for the W stacks
    return {b: auto_cost(table, path_widths(supernet, b), mode, depth, excluded, neighbours,
                         coefficients)
            for b in range(1, supernet.width + 1)}


def cost_table(supernet, target: str, path=None) -> dict | None:
    """The lowering cost table that predicts ``target``'s latency for this
    supernet, or None: ``path`` (a table of ``mpath-tf profile --target``)
    if given, else the bundled ones of ``local`` (this CPU's, else the
    bundled one) and the emulated targets (TFLM, ARM cores); tables cover
    MLP stacks only."""
    from converters.profiles import load_profile, target_profile

    if not _mlp(supernet):
        return None
    if path is not None:
        return load_profile(path)
    if target == "local":
        return load_profile(None, "int8")
    path = target_profile(target)
    return load_profile(path) if path else None


def fitted_costs(parameters: dict[int, int], measure: Callable[[int], float],
                 within: list[int]) -> dict[int, float]:
    """Costs predicted by a line in (parameters, paths) fitted to
    ``FIT_POINTS`` path counts of ``within`` measured with ``measure``.

    Example:
        >>> fitted = fitted_costs({b: 100 - b for b in range(1, 11)}, lambda b: 5.0 + 2 * b,
        ...                       list(range(1, 11)))
        >>> round(fitted[7], 6)
        19.0
    """
    points = choose_fit_paths(within, FIT_POINTS)
    y = np.array([measure(b) for b in points], dtype="float64")
    features = lambda b: [1.0, parameters[b], float(b)]  # noqa: E731
    x = np.array([features(b) for b in points])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    return {b: float(np.array(features(b)) @ coef) for b in parameters}


def fit_to_measured(predicted: dict[int, float], measured: dict[int, float]) -> dict[int, float]:
    """``predicted`` mapped onto the measured scale: a scale and an offset
    fitted to the path counts measured (offset only with fewer than three,
    or when the fitted scale is not positive).

    Example:
        >>> fit_to_measured({1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0}, {1: 7.0, 2: 9.0, 3: 11.0})[4]
        13.0
    """
    keys = [b for b in measured if b in predicted]
    if not keys:
        return dict(predicted)
    p = np.array([predicted[b] for b in keys])
    m = np.array([measured[b] for b in keys])
    scale, offset = 1.0, float(np.median(m - p))
    if len(keys) >= 3 and np.ptp(p) > 0:
        slope, intercept = np.polyfit(p, m, 1)
        if slope > 0:
            scale, offset = float(slope), float(intercept)
    return {b: scale * v + offset for b, v in predicted.items()}


def choose(candidates_: list[int | str], predicted: dict, measure: Callable, accuracy: dict,
           margin: float = 0.0, finalists: int = FINALISTS, always=()) -> dict:
    """The cheapest candidate by measured cost among the ``finalists``
    cheapest by predicted cost, those of ``always`` and ``DENSE``.

    Args:
        candidates_: Path counts (and ``DENSE``) within the accuracy limit.
        predicted: Predicted cost of each path count (``DENSE`` need not have one).
        measure: The measured cost of a candidate on the target.
        accuracy: Predicted (measured, for ``DENSE``) validation accuracy of
            each candidate, to break ties.
        margin: A multipath model must cost less than ``(1 - margin)`` x
            dense's to be chosen over it.
        finalists: How many path counts are measured by predicted cost.
        always: Path counts measured whatever their prediction (the search
            adds the most paths within the limit, the ``params`` choice, so
            an objective never ends with a costlier model than the default
            choice because a prediction missed it).

    Returns:
        ``{"choice": b or DENSE, "measured": {candidate: cost}, "finalists":
        [...], "runner_up": the cheapest measured multipath model or None}``.

    Example:
        >>> out = choose([2, 3, 4, "dense"], {2: 5.0, 3: 4.0, 4: 3.0},
        ...              {2: 5.0, 3: 4.5, 4: 6.0, "dense": 4.6}.get,
        ...              {2: .9, 3: .9, 4: .9, "dense": .91}, margin=0.05, finalists=2)
        >>> out["choice"], out["runner_up"], sorted(out["measured"], key=str)
        ('dense', 3, [3, 4, 'dense'])
    """
    paths = [c for c in candidates_ if c != DENSE]
    finals = sorted(paths, key=lambda b: (predicted[b], -accuracy[b], b))[:finalists]
    finals += [b for b in always if b in paths and b not in finals]
    measured = {c: float(measure(c)) for c in finals + [c for c in candidates_ if c == DENSE]}
    by_cost = sorted(finals, key=lambda b: (measured[b], -accuracy[b]))
    runner_up = by_cost[0] if by_cost else None
    choice = runner_up
    if DENSE in measured and (runner_up is None
                              or measured[runner_up] > (1 - margin) * measured[DENSE]):
        choice = DENSE
    return {"choice": choice, "measured": measured, "finalists": finals, "runner_up": runner_up}


def paying_targets(supernet, candidates_: list[int], min_gain: float = 1.05) -> list[dict]:
    """Where multipath models of this network pay, by the bundled cost
    tables: for each table's device, the candidate whose block-diagonal
    stack is predicted cheapest and its gain over the dense stack (only
    those of at least ``min_gain``). Predictions of the stack, not measurements."""
    from converters.profiles import PROFILES_DIR, load_profile

    found = []
    paths = [b for b in candidates_ if isinstance(b, int) and b > 1]
    if not paths:
        return found
    for path in sorted(PROFILES_DIR.glob("*.json")):
        table = load_profile(path)
        costs = table_costs(supernet, table)
        best = min(paths, key=lambda b: costs[b][1])
        gain = float(costs[1][1] / costs[best][1]) if costs[best][1] > 0 else 0.0
        if gain >= min_gain:
            found.append({"target": table.get("target", path.stem), "table": path.name,
                          "paths": best, "gain": gain,
                          "unit": table.get("unit", "us")})
    return found


def choose_for_target(config, supernet, rows: list[dict], files, reference_accuracy,
                      log: Callable[[str], None]) -> dict:
    """The choice of ``config.objective`` on ``config.target`` (see the
    module docstring); adds ``predicted_cost`` (and ``measured_cost`` where
    measured) to ``rows``.

    Args:
        config: The run's ``SearchConfig``.
        supernet: The trained supernet.
        rows: The search's result rows (``paths``, ``parameters``,
            ``predicted_val_accuracy``, ``measured_val_accuracy``).
        files: ``mpath_tf.pipeline.steps.TargetFiles`` of the run (with
            the dense reference's model when it was trained).
        reference_accuracy: The dense reference's validation accuracy, or None.
        log: Progress lines.

    Returns:
        The record ``results.json`` keeps as ``objective``: ``name``,
        ``target``, ``measured_on``, ``unit``, ``source`` of the
        predictions (``dense`` is measured for comparison even when it is not
        within the accuracy limit), ``pareto`` (path counts on the front of predicted
        accuracy against predicted cost), ``candidates``, ``finalists``,
        ``measured`` (cost per candidate measured, ``dense`` included), ``choice`` (a path count or
        ``dense``), ``runner_up`` (the cheapest multipath model measured),
        ``margin`` and, when dense is chosen, ``paying`` (``paying_targets``).
    """
    objective, target = config.objective, config.target
    where = measured_on(objective, target)
    within = candidates(rows, config.max_accuracy_drop, reference_accuracy)
    paths = [c for c in within if c != DENSE]
    measured: dict = {}

    def measure(key) -> float:
        if key not in measured:
            measured[key] = files.cost(key, objective)
        return measured[key]

    log(f"choosing by {objective} on {where}: {len(paths)} path count"
        f"{'s' if len(paths) != 1 else ''} within --max-accuracy-drop "
        f"{config.max_accuracy_drop:g}" + (" and the dense reference" if DENSE in within else ""))
    table = cost_table(supernet, target, config.cost_table) if objective == "latency" else None
    if table is not None:
        predicted = {b: cost for b, (_, cost) in table_costs(supernet, table).items()}
        source = f"the lowering cost table of {table.get('target', target)}"
    else:
        parameters = {r["paths"]: r["parameters"] for r in rows}
        predicted = fitted_costs(parameters, measure, paths) if len(paths) > FIT_POINTS else {
            b: float(parameters[b]) for b in parameters}
        source = (f"a line fitted to {FIT_POINTS} path counts measured on {where}"
                  if len(paths) > FIT_POINTS else "parameters (every candidate is measured)")
    accuracy = {r["paths"]: r["predicted_val_accuracy"] for r in rows}
    if reference_accuracy is not None:
        accuracy[DENSE] = reference_accuracy
    margin = TIMING_MARGIN if objective == "latency" and not counts_instructions(where) else 0.0
    result = choose(within, predicted, measure, accuracy, margin,
                    finalists=FINALISTS if len(paths) > FINALISTS or table is not None
                    else len(paths), always=[max(paths)] if paths else [])
    if DENSE not in measured and files.reference_model is not None:
        measure(DENSE)  # not within the accuracy limit, but what the choice is compared with
    on_scale = {b: v for b, v in measured.items() if b != DENSE}
    if DENSE in measured and 1 not in on_scale:
        on_scale[1] = measured[DENSE]  # the same layers as one path
    fitted = fit_to_measured(predicted, on_scale)
    for row in rows:
        row["predicted_cost"] = fitted.get(row["paths"])
        row["measured_cost"] = measured.get(row["paths"])

    record = {
        "name": objective, "target": target, "measured_on": where,
        "pareto": pareto_paths(rows, fitted),
        "unit": _unit(objective, where), "source": source,
        "candidates": [str(c) for c in within], "finalists": result["finalists"],
        "measured": {str(k): v for k, v in measured.items()},
        "choice": result["choice"], "runner_up": result["runner_up"], "margin": margin,
        "paying": None,
    }
    if result["choice"] == DENSE and _mlp(supernet):
        record["paying"] = paying_targets(supernet, paths)
    return record


def _mlp(supernet) -> bool:
    """True for a supernet of one stack of Dense membrane layers (what the
    lowering cost tables describe)."""
    from mpath_tf.core.conv import MembraneConv2D

    return len(supernet.stacks) == 1 and not any(
        isinstance(supernet.get_layer(n), MembraneConv2D) for n in supernet.stacks[0])


def _unit(objective: str, target: str) -> str:
    if objective != "latency":
        return UNITS[objective]
    return "instructions" if counts_instructions(target) else "us"
