"""The search pipeline behind ``mpath-tf search`` (paper, section 3).

With ``method`` ``lambda`` or ``hypernet`` the cost-regularized searches of
``mpath_tf.pipeline.tradeoff`` run instead. The paper's (``rank``):

1. One-shot training of the supernet (best validation epoch kept).
2. Sample fine-tuning: derive and fine-tune path counts in [2, W] (evenly
   spaced or adaptive), as KerasTuner trials (``mpath_tf.pipeline.tuning``), in this
   process or on worker processes.
3. Fit the accuracy predictor and predict every path count in [1, W].
4. Choose a model (by accuracy drop or by budget, ``mpath_tf.pipeline.budget``),
   fine-tune it if it was not sampled, export it to float32 and int8
   ``.tflite`` and verify both against Keras in the LiteRT interpreter.
5. Write ``results.json``, ``results.csv`` and ``results.png``.

After each step the state is saved, and every training saves a checkpoint
after each epoch, so a killed search resumes where it stopped and never
redoes finished work.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpath_tf.pipeline.budget import choose_by_budget, pareto_paths
from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.data import Dataset
from mpath_tf.core.derivation import parameter_counts, path_widths
from mpath_tf.training.distributed import is_chief, make_strategy
from mpath_tf.errors import DamagedFileError, MpathError, WorkerError
from mpath_tf.storage import atomic_save_model, atomic_write_record, read_json, set_aside
from mpath_tf.pipeline.plotting import plot_search
from mpath_tf.pipeline.results import SearchResults, outcome_lines, write_csv
from mpath_tf.pipeline.predictors import make_predictor
from mpath_tf.progress import Progress
from mpath_tf.pipeline.rundir import RunDir, lock_run_dir
from mpath_tf.pipeline.steps import (TargetFiles, budget_gains_of, profile_notice,
                                     choose_paths, default_run_dir, export_run_model, final_model,
                                     load_data, raise_predictions, resolution_notice,
                                     result_rows, sample_path_counts, train_supernet,
                                     with_model_shape, worker_one_shot)
from mpath_tf.training.loop import accuracy, top1
from edge_bench import get_target
from mpath_tf.pipeline.objective import choose_for_target
from mpath_tf.pipeline.tuning import run_distributed
from mpath_tf.pipeline.reference import compare_on_tflm, compare_speed, train_reference
from mpath_tf.pipeline.tradeoff import search_tradeoff
from converters.tflm import is_tflm_target

def _sample_finetune(run: RunDir, supernet, data: Dataset, log,
                     progress: Progress) -> dict[int, float]:
    """Fine-tune the sampled path counts as KerasTuner trials (``mpath_tf.pipeline.tuning``):
    in this process, or on ``config.workers`` local worker processes."""
    config = run.config
    (run.path / "samples").mkdir(exist_ok=True)
    for b, sample in run.state["samples"].items():  # runs from before the tuner
        if not run.sample_path(int(b)).is_file():
            atomic_write_record(run.sample_path(int(b)), sample)
    for record in (run.path / "samples").glob("paths-*.json"):
        try:
            read_json(record)
        except DamagedFileError as err:
            set_aside(record)
            shutil.rmtree(run.path / "tuner", ignore_errors=True)  # it counts that trial done
            log(f"  {err}: set aside as {record.name}.damaged; fine-tuning that sample again")

    def finished() -> list[int]:
        return sorted(int(p.stem.removeprefix("paths-"))
                      for p in (run.path / "samples").glob("paths-*.json"))

    wanted = (sample_path_counts(config.width, config.samples) if config.sampling == "even"
              else None)
    if config.samples > config.width - 1:
        log(f"  --samples {config.samples} is more than the {config.width - 1} path counts "
            f"2..{config.width} of --width {config.width}: fine-tuning each of them once")
    for attempt in range(2):
        todo = ([b for b in wanted if b not in finished()] if wanted
                else range(max(0, min(config.samples, config.width - 1) - len(finished()))))
        if not todo:
            if not attempt:
                log(f"sample fine-tuning: done earlier ({len(finished())} samples)")
            break
        if not attempt:
            log(f"sample fine-tuning: {len(todo)} of {len(todo) + len(finished())} samples "
                f"to go, {config.finetune_epochs} epochs each")
        if attempt:  # the oracle says done but results are missing (deleted by hand):
            shutil.rmtree(run.path / "tuner", ignore_errors=True)  # start a fresh oracle
        progress.phase("sample fine-tuning", len(todo), config.finetune_epochs)
        with contextlib.redirect_stdout(io.StringIO()):  # KerasTuner's own chatter
            tuner = _sample_tuner(run, log, progress)
            if config.workers:
                run_distributed(run.path, config.workers, log=log)
            else:
                try:
                    tuner.search(verbose=0)
                except Exception as err:  # run_trial wraps errors in KerasTuner's FatalError
                    if isinstance(err.__cause__, MpathError):
                        raise err.__cause__ from None
                    raise
    for b in wanted or finished():
        record = run.sample_path(b)
        if not record.is_file():
            raise WorkerError(f"Sample {b} paths did not finish; see {run.path / 'tuner'}.")
        run.state["samples"][str(b)] = read_json(record)
    run.save_state()
    return {int(b): s["val_accuracy"] for b, s in run.state["samples"].items()}


def _sample_tuner(run: RunDir, log, progress: Progress):
    """The run's sample tuner, its saved state reloaded; a state KerasTuner
    cannot read back is set aside for a fresh one (the finished samples'
    records are the truth: their trials end at once)."""
    from mpath_tf.pipeline.tuners import make_tuner

    try:
        return make_tuner(run.path, log=log, progress=progress)
    except Exception as err:  # KerasTuner raises what its JSON parsing raised
        folder = run.path / "tuner"
        if not folder.exists():
            raise
        set_aside(folder)
        log(f"  the sample tuner's state in {folder} cannot be read back "
            f"({type(err).__name__}: {str(err)[:120]}); set aside as tuner.damaged, "
            "starting a fresh one (finished samples are kept)")
        return make_tuner(run.path, log=log, progress=progress)


def search(
    config: SearchConfig | None = None,
    run_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run (or resume) a whole search and write its run directory.

    Args:
        config: Settings; default ``SearchConfig()`` (digits, mpath-4-256).
        run_dir: Run directory; default ``default_run_dir(config)``. An existing
            run there is resumed; a run with other settings is refused.
        log: Called with one line per progress message (default: ``progress.log``).
        progress: Where phases, epochs and time left are shown (default:
            nowhere; the CLI shows them on stderr).

    Returns:
        The content of ``results.json``; on a ``multiworker`` task other than
        the chief, which only takes part in the one-shot training, a short
        dict with ``role: "worker"``.

    Raises:
        ConfigError: Bad settings, or settings that differ from the run's.
        DataError: The dataset cannot be loaded.
        RunDirError: The run directory cannot be used.

    Example:
        >>> import tempfile
        >>> config = SearchConfig(depth=2, width=4, epochs=1, finetune_epochs=1, samples=2,
        ...                       reference=False, bench=False)  # short: no dense MLP, no timing
        >>> result = search(config, run_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> [row["paths"] for row in result["rows"]]  # doctest: +SKIP
        [1, 2, 3, 4]
    """
    config = (config or SearchConfig()).validate()
    progress = progress or Progress(quiet=True)
    log = log or progress.log
    # multiworker needs its strategy before TensorFlow runs anything
    strategy = make_strategy(config.strategy, config.cluster_timeout_s) if config.strategy else None
    data = load_data(config)
    config = with_model_shape(config, data)  # --model: its depth, width and digest
    settings, config = config, config.for_data(len(data.x_train))  # as asked; as run
    if strategy is not None and not is_chief(strategy):
        return worker_one_shot(config, data, strategy, log, progress)
    path = Path(run_dir or default_run_dir(settings))
    with lock_run_dir(path):  # one writer per run directory
        return _search(path, settings, config, data, log, progress, strategy)


def _search(path: Path, settings: SearchConfig, config: SearchConfig, data: Dataset, log,
            progress: Progress, strategy) -> dict:
    """``search`` after the data is loaded and the run directory locked."""
    if is_tflm_target(config.target):  # usable before hours of training, or exit 2 now

        get_target(config.target).describe()
    run = RunDir.create_or_resume(path, settings, data.class_labels)
    run.config = config
    log = run.logger(log)
    log(f"run directory: {run.path}")
    for notice in run.notices:
        log(notice)
    if config.method != "rank":
        return search_tradeoff(run, data, log, progress)

    supernet = train_supernet(run, data, log, progress, strategy)
    reference_model, reference_record = None, None
    if config.reference:
        reference_model, reference_record = train_reference(run, data, log, progress)
    measured = _sample_finetune(run, supernet, data, log, progress)

    predictor = make_predictor(config.predictor, parameter_counts(supernet)).fit(
        list(measured), list(measured.values()))
    rows = result_rows(supernet, measured, predictor)
    gains = budget_gains_of(run, config, [r["paths"] for r in rows])
    gain = float(np.median(list(gains.values()))) if gains else 0.0
    if gains:
        log(f"  the samples' learning curves add {min(gains.values()):.4f}-"
            f"{max(gains.values()):.4f} accuracy at {config.final_budget} epochs (per path "
            "count, between the samples'); predictions raised by that much")
    best_measured = max([*measured.values()]
                        + ([reference_record["val_accuracy"]] if reference_record else []))
    raise_predictions(rows, gains, best_measured)
    capped = sum(r["capped"] for r in rows)
    if capped:
        log(f"  {capped} predictions held at the best validation accuracy measured in the run "
            f"({best_measured:.4f}) plus the predictor's +-")
    budget = config.budget()
    selection, objective = None, None
    if budget.active:
        log(f"choosing by budget: {budget.describe()}")
        files = TargetFiles(run, supernet, data, log)
        selection = choose_by_budget(rows, budget, files.size_kb, files.latency_ms, files.tflm_row)
        chosen = selection["paths"]
    elif config.paths:
        chosen = config.paths
    elif config.objective != "params":
        objective = choose_for_target(
            config, supernet, rows, TargetFiles(run, supernet, data, log, reference_model),
            reference_record["val_accuracy"] if reference_record else None, log)
        chosen = 1 if objective["choice"] == "dense" else objective["choice"]
    else:
        notice = resolution_notice(len(data.y_val), config.max_accuracy_drop)
        if notice:
            log(notice)
        chosen = choose_paths(rows, config.max_accuracy_drop,
                              reference_record["val_accuracy"] if reference_record else None)
    dense_chosen = objective is not None and objective["choice"] == "dense"
    if dense_chosen:  # the dense reference is the answer: it ships as the model
        log(f"chosen: the dense reference (the cheapest for --objective {config.objective} "
            f"on {objective['measured_on']})")
        model = reference_model
        chosen_row = {**next(r for r in rows if r["paths"] == 1), "dense": True,
                      "parameters": reference_record["parameters"], "percent_of_mlp": 100.0,
                      "predicted_val_accuracy": reference_record["val_accuracy"],
                      "predicted_std": None}
    else:
        model = final_model(run, supernet, chosen, data, log, progress)
        chosen_row = next(r for r in rows if r["paths"] == chosen)
    atomic_save_model(model, run.path / "model.keras")
    expected = model.predict(data.x_test, batch_size=1024, verbose=0)  # once: accuracy, checks
    test_accuracy = top1(expected, data.y_test)
    exports = export_run_model(run, model, data, log, expected=expected)
    if not is_tflm_target(config.target):  # a TFLM target's int8 used that target's table
        profile_notice(model, log)
    reference = None
    if reference_model is not None:
        reference = {**reference_record,
                     "exports": export_run_model(run, reference_model, data, log, "reference"),
                     "accuracy_difference_pt": 100 * (test_accuracy
                                                      - reference_record["test_accuracy"])}
    speed = None
    if config.bench and not dense_chosen:  # dense chosen: the same file as the reference

        log("timing the chosen model" + (" and the dense reference" if reference else "")
            + " on this machine (LiteRT)")
        files = {"chosen": {q: run.path / e["file"] for q, e in exports.items()}}
        if reference:
            files["reference"] = {q: run.path / e["file"]
                                  for q, e in reference["exports"].items()}
        speed = compare_speed(run.path, files, log, config.bench_seconds)
    device = None
    if is_tflm_target(config.target):
        log("measuring the chosen model" + (" and the dense reference" if reference else "")
            + f" on {config.target} (int8)")
        files = {"chosen": run.path / exports["int8"]["file"]}
        if reference:
            files["reference"] = run.path / reference["exports"]["int8"]["file"]
        if dense_chosen:
            files.pop("reference", None)
        device = compare_on_tflm(run.path, files, config.target, log)
    result = SearchResults(
        run_dir=str(run.path),
        data_source=data.source,
        classes=data.class_labels,
        settings=config.to_dict(),
        method="rank",
        device=device,
        one_shot=run.state["supernet"],
        chosen={
            **chosen_row,
            "path_widths": [supernet.width] if dense_chosen else path_widths(supernet, chosen),
            "val_accuracy": accuracy(model, data.x_val, data.y_val),
            "test_accuracy": test_accuracy,
            "exports": exports,
        },
        reference=reference,
        speed=speed,
        rows=rows,
        pareto_params=pareto_paths(rows, {r["paths"]: r["parameters"] for r in rows}),
        budget=None if selection is None else {
            "limits": budget.describe(), "checked": {str(b): v for b, v in selection["checked"].items()}},
        budget_gain=gain,
        objective=objective,
    )
    write_csv(rows, run.path / "results.csv")
    plot_search(
        rows,
        chosen,
        run.path / "results.png",
        f"{data.name}: {config.network()}, predictor '{config.predictor}'",
    )
    result.write(run.path)
    for line in outcome_lines(result.to_dict()):
        log(line)
    return result.to_dict()


