"""``mpath-tf search --method lambda|hypernet``: the cost-regularized searches.

- ``lambda``: one-shot training of a gated supernet at ``--lam``
  (``gated.keras``), derive from its gates, fine-tune, export.
- ``hypernet``: the paper's one-shot training (``supernet.keras``, shared with
  ``--method rank``), the lam-hypernetwork (``hypernet.keras``), the
  accuracy-vs-lam curve of its networks before fine-tuning, then the network
  at ``--lam``, or at the smallest lam within ``--max-params``, or at the
  largest lam whose accuracy is within ``--max-accuracy-drop`` of lam = 0's;
  fine-tune, export.

Every architecture (the built-in MLP, ``--arch cnn|resnet8``, ``--model``)
trains the same way: a ``Supernet`` with a trade-off (``gate``), gates and a
cost table in every stack, so one lam chooses a path count per stack.

Trainings checkpoint every epoch and each finished step is recorded in
``state.json``, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras

from mpath_tf.core.costs import CostTable
from mpath_tf.data import Dataset
from mpath_tf.core.derivation import derive
from mpath_tf.errors import ConfigError
from mpath_tf.pipeline.results import SearchResults
from mpath_tf.storage import atomic_save_model
from mpath_tf.training.loop import accuracy, top1
from mpath_tf.pipeline.steps import (
    build_supernet_for,
    export_run_model,
    train_derived,
    train_supernet,
)
from mpath_tf.tradeoff.train import (
    estimate_lambda,
    lam_for_budget,
    lambda_curve,
    train_fixed_lambda,
    train_hypernet,
)
from converters.profiles import latency_costs, load_profile, stack_latency_costs

CURVE_POINTS = 21


def cost_table(config, width: int, depth: int, supernet=None) -> CostTable | list[CostTable]:
    """The run's cost: parameters, or latency from a lowering profile; for a
    ``supernet`` of another shape than the MLP, one table per stack.

    Raises:
        ConfigError: The table is for another network or target, or unreadable.
    """

    if config.cost == "params":
        return CostTable.params(width, depth) if supernet is None else None
    profile = None
    if config.cost_table:
        try:
            content = json.loads(Path(config.cost_table).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"Cannot read the cost table {config.cost_table}: {err}.") from None
        if content.get("format") == "mpath-tf-cost-table":
            if supernet is not None:
                raise ConfigError(
                    f"{config.cost_table} is a cost table for one Dense stack (the built-in "
                    "MLP); this network's stacks are priced from a lowering profile: pass the "
                    "table of `mpath-tf profile --output FILE` as --cost-table FILE.")
            table = CostTable.from_dict(content)
            if table.kind != "latency":
                raise ConfigError(f"{config.cost_table} is a {table.kind} table; `cost='latency'` "
                                  "needs a latency table.")
            table.check(width, depth, config.target)
            return table
        profile = load_profile(config.cost_table)
    profile = profile or load_profile()
    if profile.get("target") != config.target:
        raise ConfigError(
            f"The lowering profile {config.cost_table or '(bundled)'} was measured on target "
            f"'{profile.get('target')}', not '{config.target}'; profile it "
            f"(`mpath-tf profile --target {config.target} --output FILE`) and pass "
            "--cost-table FILE.")
    if supernet is not None:
        return stack_latency_costs(supernet, profile, quantization="int8")
    return latency_costs(width, depth, profile, quantization="int8")


def _train_gated(run, data: Dataset, cost, base, log, progress):
    config, path = run.config, run.path / "gated.keras"
    model = run.done_model(run.state.get("gated"), path, log, "gated one-shot training")
    if model is not None:
        return model
    log(f"gated one-shot training at lam={config.lam} ({config.cost}) for {config.epochs} epochs")
    progress.phase("gated one-shot training", 1, config.epochs)
    start = time.perf_counter()
    model = train_fixed_lambda(data, config.lam, config.depth, config.width, cost, config.epochs,
                               config.batch_size, config.learning_rate, config.seed,
                               checkpoint_dir=run.path / "checkpoints" / "gated",
                               callbacks=[progress.callback()], supernet=base)
    progress.done()
    run.finish_model(model, path, run.state, "gated", {"seconds": time.perf_counter() - start,
                                                      "path_widths": model.derived_layout()})
    return model


def _train_hypernet(run, supernet, data: Dataset, cost, log, progress):
    config, path = run.config, run.path / "hypernet.keras"
    model = run.done_model(run.state.get("hypernet"), path, log, "hypernetwork training")
    if model is not None:
        return model
    epochs = config.hyper_epochs or config.epochs
    log(f"hypernetwork training, lam ~ U[0, {config.lam_max}] ({config.cost}), {epochs} epochs")
    progress.phase("hypernetwork training", 1, epochs)
    start = time.perf_counter()
    model = train_hypernet(supernet, data, config.lam_max, cost, epochs, config.batch_size,
                           config.learning_rate, config.seed,
                           checkpoint_dir=run.path / "checkpoints" / "hypernet",
                           callbacks=[progress.callback()], log=log)
    progress.done()
    lams = [config.lam_max * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    curve = lambda_curve(model, data, lams)
    run.finish_model(model, path, run.state, "hypernet", {
        "seconds": time.perf_counter() - start, "warmup_steps": model.warmup_steps,
        "curve": curve, "estimated_lambda": estimate_lambda(curve, data.num_classes)})
    return model


def _choose_lam(run, model, log) -> float:
    config = run.config
    if config.lam is not None:
        return config.lam
    if config.max_params is not None:
        lam = lam_for_budget(model, max_parameters=config.max_params)
        if lam is None:
            curve = run.state["hypernet"]["curve"]
            raise ConfigError(
                f"No network of the hypernetwork meets --max-params {config.max_params}: the "
                f"cheapest, at lam={config.lam_max}, has {curve[-1]['parameters']} parameters. "
                "Raise --max-params or train with a larger --lam-max.")
        log(f"smallest lam within {config.max_params} parameters: {lam:.4g}")
        return lam
    curve = run.state["hypernet"]["curve"]
    ok = [r["lam"] for r in curve
          if r["val_accuracy"] >= curve[0]["val_accuracy"] - config.max_accuracy_drop]
    log(f"largest lam within {config.max_accuracy_drop} accuracy of lam=0 (before fine-tuning): "
        f"{max(ok):.4g}")
    return max(ok)


def search_tradeoff(run, data: Dataset, log, progress) -> dict:
    """Run (or resume) a ``lambda`` or ``hypernet`` search in ``run``.

    Args:
        run: The ``RunDir`` (its config has ``method`` lambda or hypernet).
        data: The dataset.
        log: Progress lines.
        progress: Phase display.

    Returns:
        The content of ``results.json``.

    Raises:
        ConfigError: A cost table for another network or target, or an unmet budget.
    """
    config = run.config
    # the MLP has its own classes; any other network is gated stack by stack
    base = None if config.model is None and config.arch == "mlp" else build_supernet_for(
        config, data)
    cost = cost_table(config, config.width, config.depth, base)
    curve = None
    if config.method == "lambda":
        source = _train_gated(run, data, cost, base, log, progress)
        lam, search_seconds = config.lam, run.state["gated"]["seconds"]
        layout = source.derived_layout()
    else:
        supernet = train_supernet(run, data, log, progress)
        source = _train_hypernet(run, supernet, data, cost, log, progress)
        curve = run.state["hypernet"]["curve"]
        lam = _choose_lam(run, source, log)
        layout = source.derived_layout(lam=lam)
        search_seconds = run.state["supernet"]["seconds"] + run.state["hypernet"]["seconds"]
    paths = sum(len(widths) for widths in layout)
    epochs = config.final_budget
    key = f"lam={lam:.6g}-e{epochs}"
    path = run.path / "models" / f"{key}.keras"
    model = run.done_model(run.state["final"].get(key), path, log, "final fine-tuning")
    if model is None:
        log(f"fine-tuning the network at lam={lam:.4g} ({paths} paths) for {epochs} epochs")
        progress.phase("final fine-tuning", 1, epochs)
        keras.utils.set_random_seed(config.seed)
        model = derive(source, lam=lam) if config.method == "hypernet" else derive(source)
        before = accuracy(model, data.x_val, data.y_val)
        model = train_derived(model, data, epochs, batch_size=config.batch_size,
                              learning_rate=config.learning_rate, keep_best=False,
                              checkpoint_dir=run.path / "checkpoints" / key,
                              callbacks=[progress.callback()])
        progress.done()
        run.finish_model(model, path, run.state["final"], key,
                         {"val_accuracy_before": before, "epochs": epochs})
    atomic_save_model(model, run.path / "model.keras")
    dense = source.layout_parameters([[sum(widths)] for widths in layout])
    parameters = model.count_params()
    expected = model.predict(data.x_test, batch_size=1024, verbose=0)  # once: accuracy, checks
    chosen = {
        "paths": paths, "path_widths": layout[0] if len(layout) == 1 else layout,
        "lam": lam, "parameters": parameters, "percent_of_mlp": 100.0 * parameters / dense,
        "relative_cost": source.layout_cost(layout),
        "predicted_val_accuracy": None,
        "val_accuracy_before_finetuning": run.state["final"][key]["val_accuracy_before"],
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
        "test_accuracy": top1(expected, data.y_test),
        "exports": export_run_model(run, model, data, log, expected=expected),
    }
    result = SearchResults(
        run_dir=str(run.path), data_source=data.source, classes=data.class_labels,
        settings=config.to_dict(), method=config.method,
        cost=_cost_record(config, cost, source), search_seconds=search_seconds,
        one_shot=run.state.get("supernet"),
        hypernet=None if curve is None else {
            k: run.state["hypernet"][k] for k in ("curve", "estimated_lambda", "warmup_steps")},
        chosen=chosen, rows=[], pareto_params=sorted({r["paths"] for r in curve or []}),
        budget=None if config.max_params is None else {"limits": f"max_params={config.max_params}"},
    )
    result.write(run.path)
    counts = "" if len(layout) == 1 else f" ({' + '.join(str(len(w)) for w in layout)} by stack)"
    log(f"chosen: lam={lam:.4g}, {paths} paths{counts}, {parameters} parameters "
        f"({chosen['percent_of_mlp']:.1f}% of the {'MLP' if base is None else 'dense network'}), "
        f"test accuracy {chosen['test_accuracy']:.4f}")
    return result.to_dict()


def _cost_record(config, cost, source) -> dict:
    """What results.json records of the cost: the MLP's table (without its
    block costs), or the kind and each stack's table header."""
    if isinstance(cost, CostTable):
        return cost.to_dict() | {"block": None}
    return {"kind": config.cost, "stacks": [t.to_dict() | {"block": None}
                                            for t in source.costs]}
