"""The search pipeline behind ``mpath-tf search`` (paper, section 3).

With ``method`` ``lambda`` or ``hypernet`` the cost-regularized searches of
``mpath_tf.tradeoff.search`` run instead. The paper's (``rank``):

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

import csv
import hashlib
import io
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from mpath_tf.pipeline.budget import choose_by_budget, pareto_paths
from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.data import Dataset, load_dataset, load_file
from mpath_tf.core.derivation import derive, parameter_counts, path_widths
from mpath_tf.training.distributed import cluster_from_env, is_chief, make_strategy, train_distributed
from mpath_tf.errors import ConfigError, DamagedFileError, MpathError
from mpath_tf.storage import (atomic_save_model, atomic_write_json, atomic_write_record,
                         atomic_write_text, read_json, set_aside)
from mpath_tf.core.models import adapt_normalization, build_supernet
from mpath_tf.reporting.plotting import plot_search
from mpath_tf.pipeline.predictors import make_predictor
from mpath_tf.progress import Progress
from mpath_tf.pipeline.rundir import RunDir, lock_run_dir
from mpath_tf.training.loop import accuracy, epochs_done, train

RESULT_COLUMNS = (
    "paths",
    "parameters",
    "percent_of_mlp",
    "predicted_val_accuracy",
    "predicted_std",
    "measured_val_accuracy",
)


def sample_path_counts(width: int, samples: int) -> list[int]:
    """Evenly spaced path counts in [2, W], as the paper samples them.

    Args:
        width: Network width W (>= 2).
        samples: How many to take; all of [2, W] when W - 1 <= samples.

    Returns:
        Sorted distinct path counts.

    Example:
        >>> sample_path_counts(10, 5)
        [2, 4, 6, 8, 10]
    """
    counts = np.rint(np.linspace(2, width, min(samples, width - 1))).astype(int)
    return sorted(set(counts.tolist()))


def load_data(config: SearchConfig) -> Dataset:
    """The dataset a search runs on: ``config.data`` if set, else ``config.dataset``."""
    if config.data:
        return load_file(config.data, config.label, many_classes=config.many_classes,
                         normalize=config.normalize)
    return load_dataset(config.dataset, config.data_dir)


def default_run_dir(config: SearchConfig) -> Path:
    """``runs/<dataset>-mpath-<depth>-<width>-seed<seed>`` under the current directory."""
    name = Path(config.data).stem if config.data else config.dataset
    return Path("runs") / f"{name}-mpath-{config.depth}-{config.width}-seed{config.seed}"


def finetune(
    supernet, paths: int, data: Dataset, config: SearchConfig, epochs: int | None = None,
    history: list | None = None, checkpoint_dir=None, callbacks: list | None = None,
    summary: dict | None = None, log=None,
) -> keras.Model:
    """Derive ``paths`` paths and fine-tune them, seeded by the run's seed and b.

    It is fine-tuned at ``config.tune_learning_rate``, scored before the
    first epoch, and the best validation epoch is kept: the result is never
    below the derived model on validation accuracy.

    Args:
        supernet: The trained supernet.
        paths: Path count b.
        data: The run's dataset.
        config: The run's settings (seed, batch size, learning rates).
        epochs: Fine-tuning epochs (default ``config.finetune_epochs``; 0: none).
        history: If given, receives the validation accuracy after each epoch.
        checkpoint_dir: Per-epoch checkpoints (a killed fine-tuning resumes).
        callbacks: More Keras callbacks.
        summary: If given, receives ``start_accuracy`` (the derived model's
            validation accuracy) and ``best_epoch`` (0: no epoch improved it).
        log: Where notices go (a damaged checkpoint set aside); default stderr.

    Returns:
        The derived, fine-tuned model.
    """
    keras.utils.set_random_seed(config.seed * 100_003 + paths)
    model = derive(supernet, paths)
    epochs = config.finetune_epochs if epochs is None else epochs
    if epochs == 0:
        return model
    train(
        model,
        data,
        epochs,
        batch_size=config.batch_size,
        learning_rate=config.tune_learning_rate,
        keep_best=True,
        score_start=True,
        history=history,
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
        summary=summary,
        log=log,
    )
    return model


def _build(config: SearchConfig, data: Dataset) -> keras.Model:
    supernet = build_supernet(data.input_shape, data.num_classes, config.depth, config.width,
                              seed=config.seed, normalize=data.normalize)
    return adapt_normalization(supernet, data.x_train)


def _train_supernet(run: RunDir, data: Dataset, log, progress: Progress,
                    strategy=None) -> keras.Model:
    config = run.config
    if run.state["supernet"] is not None and run.supernet_path.is_file():
        log("one-shot training: done earlier, loading supernet.keras")
        supernet = run.load_or_set_aside(run.supernet_path, log)
        if supernet is not None:
            if strategy is not None:  # the other workers wait to hear that
                train_distributed(lambda: _build(config, data), data, config.epochs, strategy,
                                  finished=True)
            return supernet
    checkpoints = run.path / "checkpoints" / "supernet"
    done = epochs_done(checkpoints)
    log(f"one-shot training mpath-{config.depth}-{config.width} for {config.epochs} epochs"
        + (f" (resuming after epoch {done})" if done else ""))
    start = time.perf_counter()
    progress.phase("one-shot training", 1, config.epochs)
    if strategy is None:
        supernet = _build(config, data)
        val = train(
            supernet,
            data,
            config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            checkpoint_dir=checkpoints,
            callbacks=[progress.callback()],
            log=log,
        )
    else:
        log(f"  with --strategy {config.strategy}: {strategy.num_replicas_in_sync} replica(s), "
            f"global batch {config.batch_size}")
        supernet, val = train_distributed(
            lambda: _build(config, data), data, config.epochs, strategy,
            batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
            checkpoint_dir=checkpoints, on_epoch=lambda epoch, _: progress.epoch(epoch))
    progress.done()
    atomic_save_model(supernet, run.supernet_path)
    run.state["supernet"] = {
        "val_accuracy": val,
        "test_accuracy": accuracy(supernet, data.x_test, data.y_test),
        "seconds": time.perf_counter() - start,
    }
    run.save_state()
    shutil.rmtree(checkpoints, ignore_errors=True)  # supernet.keras holds the result now
    log(f"  one-shot validation accuracy {val:.4f}")
    return supernet


def _worker_one_shot(config: SearchConfig, data: Dataset, strategy, log,
                     progress: Progress) -> dict:
    """A non-chief task of ``--strategy multiworker``: take part in the
    one-shot training, then leave the rest of the search to the chief."""
    cluster = cluster_from_env()
    log(f"{cluster.describe()}: one-shot training with the chief at {cluster.chief_address}; "
        "the chief writes the run directory")
    progress.phase("one-shot training", 1, config.epochs)
    model, _ = train_distributed(
        lambda: _build(config, data), data, config.epochs, strategy,
        batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
        on_epoch=lambda epoch, _: progress.epoch(epoch))
    progress.done()
    log("one-shot training " + ("finished" if model is not None else "was finished earlier")
        + "; the chief goes on with the search")
    return {"role": "worker", "task": f"{cluster.task_type}:{cluster.index}",
            "chief": cluster.chief_address, "trained": model is not None}


def _sample_finetune(run: RunDir, supernet, data: Dataset, log,
                     progress: Progress) -> dict[int, float]:
    """Fine-tune the sampled path counts as KerasTuner trials (``mpath_tf.pipeline.tuning``):
    in this process, or on ``config.workers`` local worker processes."""
    import contextlib

    from mpath_tf.pipeline.tuning import run_distributed, sample_record_path

    config = run.config
    (run.path / "samples").mkdir(exist_ok=True)
    for b, sample in run.state["samples"].items():  # runs from before the tuner
        if not sample_record_path(run.path, int(b)).is_file():
            atomic_write_record(sample_record_path(run.path, int(b)), sample)
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
        record = sample_record_path(run.path, b)
        if not record.is_file():
            raise ConfigError(f"Sample {b} paths did not finish; see {run.path / 'tuner'}.")
        run.state["samples"][str(b)] = read_json(record)
    run.save_state()
    return {int(b): s["val_accuracy"] for b, s in run.state["samples"].items()}


def _sample_tuner(run: RunDir, log, progress: Progress):
    """The run's sample tuner, its saved state reloaded; a state KerasTuner
    cannot read back is set aside for a fresh one (the finished samples'
    records are the truth: their trials end at once)."""
    from mpath_tf.pipeline.tuning import make_tuner

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


def _result_rows(supernet, measured: dict[int, float], predictor) -> list[dict]:
    counts = parameter_counts(supernet)
    mlp = counts[1]
    paths = np.arange(1, supernet.width + 1)
    predicted, std = predictor.predict(paths, return_std=True)
    return [
        {
            "paths": int(b),
            "parameters": counts[int(b)],
            "percent_of_mlp": 100.0 * counts[int(b)] / mlp,
            "predicted_val_accuracy": float(p),
            # leave-one-out residual RMS of the predictor; None with < 3 samples
            "predicted_std": None if np.isnan(s) else float(s),
            "measured_val_accuracy": measured.get(int(b)),
        }
        for b, p, s in zip(paths, predicted, std)
    ]


def choose_paths(rows: list[dict], max_accuracy_drop: float,
                 reference_accuracy: float | None = None) -> int:
    """The most paths whose predicted accuracy is within the allowed drop.

    The drop is measured from the best fine-tuned sample, or from the dense
    reference's validation accuracy when that is higher: the user compares
    the chosen model with the MLP they would otherwise ship. When no path
    count is predicted within the drop, the most accurate one is chosen.

    Args:
        rows: Result rows (see ``RESULT_COLUMNS``).
        max_accuracy_drop: Allowed drop below the best measured sample.
        reference_accuracy: Validation accuracy of the dense reference, if trained.

    Returns:
        The chosen path count.

    Example:
        >>> rows = [{"paths": 1, "predicted_val_accuracy": 0.9, "measured_val_accuracy": None},
        ...         {"paths": 2, "predicted_val_accuracy": 0.9, "measured_val_accuracy": 0.9},
        ...         {"paths": 3, "predicted_val_accuracy": 0.8, "measured_val_accuracy": 0.8}]
        >>> choose_paths(rows, 0.05)
        2
        >>> choose_paths(rows, 0.05, reference_accuracy=0.99)  # none within: the most accurate
        1
    """
    best = max(r["measured_val_accuracy"] for r in rows if r["measured_val_accuracy"] is not None)
    if reference_accuracy is not None:
        best = max(best, reference_accuracy)
    ok = [r["paths"] for r in rows if r["predicted_val_accuracy"] >= best - max_accuracy_drop]
    if ok:
        return max(ok)
    top = max(r["predicted_val_accuracy"] for r in rows)
    return min(r["paths"] for r in rows if r["predicted_val_accuracy"] == top)


def _final_model(run: RunDir, supernet, paths: int, data: Dataset, log,
                 progress: Progress) -> keras.Model:
    config = run.config
    epochs = config.final_epochs or config.finetune_epochs
    final = run.state["final"].get(str(paths))
    if epochs == config.finetune_epochs and str(paths) in run.state["samples"] and (
            run.model_path(paths).is_file()):
        model = run.load_or_set_aside(run.model_path(paths), log)
        if model is not None:
            return model
        model = finetune(supernet, paths, data, config)  # seeded: the sample's model again
        atomic_save_model(model, run.model_path(paths))
        return model
    path = run.path / "models" / f"paths-{paths}-final-e{epochs}.keras"
    if final and final.get("epochs", config.finetune_epochs) == epochs and path.is_file():
        model = run.load_or_set_aside(path, log)
        if model is not None:
            return model
    checkpoints = run.path / "checkpoints" / path.stem
    resumed = epochs_done(checkpoints)
    log(f"fine-tuning the chosen model ({paths} paths) for {epochs} epochs"
        + (f", resuming after epoch {resumed}" if resumed else ""))
    progress.phase("final fine-tuning", 1, epochs)
    model = finetune(supernet, paths, data, config, epochs=epochs, checkpoint_dir=checkpoints,
                     callbacks=[progress.callback()], log=log)
    progress.done()
    atomic_save_model(model, path)
    shutil.rmtree(checkpoints, ignore_errors=True)
    run.state["final"][str(paths)] = {"val_accuracy": accuracy(model, data.x_val, data.y_val),
                                      "epochs": epochs}
    run.save_state()
    return model


def _budget_gain(run: RunDir, config: SearchConfig) -> float:
    """The accuracy ``final_epochs`` add over the samples' budget (0: same budget)."""
    from mpath_tf.pipeline.curves import budget_gain

    if not config.final_epochs or config.final_epochs <= config.finetune_epochs:
        return 0.0
    curves = {int(b): s["val_curve"] for b, s in run.state["samples"].items() if s.get("val_curve")}
    if len(curves) != len(run.state["samples"]) or not curves:
        return 0.0  # samples from before curves were recorded
    return budget_gain(curves, config.final_epochs)


def _budget_files(run: RunDir, supernet, data: Dataset, log):
    """(size_kb, latency_ms) callables that export a path count's int8 file
    once (``RUN/budget/paths-<b>_int8.tflite``, weights of the supernet: size
    and latency do not depend on fine-tuning) and measure it on the target."""
    from converters import Int8, export_tflite
    from edge_bench import Journal, get_target, measure_models
    from edge_bench.targets import target_slug

    config = run.config
    folder = run.path / "budget"
    folder.mkdir(exist_ok=True)

    def file(b: int) -> Path:
        path = folder / f"paths-{b}_int8.tflite"
        if not path.is_file():
            log(f"  budget: exporting {b} paths (int8)")
            export_tflite(derive(supernet, b), path, Int8(), data.x_train, lowering="auto",
                          labels=data.class_names)
        return path

    def size_kb(b: int) -> float:
        return file(b).stat().st_size / 1000

    def latency_ms(b: int) -> float:
        target = get_target(config.target)
        journal = Journal(folder / f"latency-{target_slug(target.name)}.jsonl")
        row = measure_models(target, [({"paths": b, "quantization": "int8"}, file(b))], journal,
                             log=lambda *_: None)[0]
        if row["status"] != "ok":
            raise ConfigError(f"Cannot measure {b} paths on {config.target}: {row.get('error')}")
        log(f"  budget: {b} paths run in {row['stats']['median_us'] / 1000:.4f} ms on "
            f"{target.name}")
        return row["stats"]["median_us"] / 1000

    return size_kb, latency_ms


def _export(run: RunDir, model: keras.Model, data: Dataset, log, name: str = "model",
            expected: np.ndarray | None = None) -> dict:
    """Export ``model`` to float32 and int8 ``RUN/<name>_<q>.tflite`` (with
    ``labels.txt``), verified against ``expected`` (its Keras outputs on the
    test split; None: not verified); done once per model (``state["exports"]``)."""
    from converters import Float32, Int8, export_tflite, verify

    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes()
                                     for w in model.get_weights())).hexdigest()[:16]
    key = f"{name}:{model.name}:{digest}"  # the same weights: the same files
    done = run.state.setdefault("exports", {}).get(key)
    if done and all((run.path / e["file"]).is_file() for e in done.values()):
        log(f"  {name} exports: done earlier")
        return done
    exports = {}
    for scheme in (Float32(), Int8()):
        path = run.path / f"{name}_{scheme.name}.tflite"
        export_tflite(model, path, scheme, representative_data=data.x_train, lowering="auto",
                      labels=data.class_names)
        exports[scheme.name] = {"file": path.name, "bytes": path.stat().st_size}
        if expected is not None:
            check = verify(path, model, data.x_test, scheme, data.y_test, expected=expected)
            exports[scheme.name].update(test_accuracy=check.tflite_accuracy,
                                        verification=check.to_dict())
            log(f"  {path.name}: {path.stat().st_size} bytes, {check.summary()}")
    run.state["exports"][key] = exports
    run.save_state()
    return exports


def _calibration_notice(log) -> None:
    """Say so when ``auto`` lowered with a calibration table of another CPU."""
    from converters.calibration import calibration_source, foreign_table_notice

    notice = foreign_table_notice(calibration_source(None, "int8"))
    if notice:
        log(f"  {notice}")


def summary(result: dict) -> dict:
    """The machine-readable summary of a search (``mpath-tf search --json``).

    Args:
        result: What ``search`` returned.

    Returns:
        Run directory, chosen model, exported files, Pareto front, budget, predictor.
    """
    chosen = result["chosen"]
    return {
        "run_dir": result["run_dir"],
        "chosen": {k: chosen[k] for k in ("paths", "parameters", "percent_of_mlp",
                                          "predicted_val_accuracy", "val_accuracy",
                                          "test_accuracy", "path_widths")},
        "exports": {q: {"file": str(Path(result["run_dir"]) / e["file"]), "bytes": e["bytes"],
                        "test_accuracy": e["test_accuracy"],
                        "parity_passed": e["verification"]["passed"]}
                    for q, e in chosen["exports"].items()},
        "pareto_params": result["pareto_params"],
        "budget": result["budget"],
        "predictor": result["settings"]["predictor"],
        "classes": result.get("classes"),
        "reference": None if not result.get("reference") else {
            k: result["reference"][k] for k in ("test_accuracy", "parameters",
                                                "accuracy_difference_pt")},
        "speed": result.get("speed"),
    }


def _write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in RESULT_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def search(
    config: SearchConfig | None = None,
    run_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run (or resume) a whole search and write its run directory.

    Args:
        config: Settings; default ``SearchConfig()`` (digits, mpath-4-64).
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
        ...                       bench=False)  # no timing in a doctest
        >>> result = search(config, run_dir=tempfile.mkdtemp())
        >>> [row["paths"] for row in result["rows"]]
        [1, 2, 3, 4]
    """
    config = (config or SearchConfig()).validate()
    progress = progress or Progress(quiet=True)
    log = log or progress.log
    # multiworker needs its strategy before TensorFlow runs anything
    strategy = make_strategy(config.strategy, config.cluster_timeout_s) if config.strategy else None
    data = load_data(config)
    settings, config = config, config.for_data(len(data.x_train))  # as asked; as run
    if strategy is not None and not is_chief(strategy):
        return _worker_one_shot(config, data, strategy, log, progress)
    path = Path(run_dir or default_run_dir(settings))
    with lock_run_dir(path):  # one writer per run directory
        return _search(path, settings, config, data, log, progress, strategy)


def _search(path: Path, settings: SearchConfig, config: SearchConfig, data: Dataset, log,
            progress: Progress, strategy) -> dict:
    """``search`` after the data is loaded and the run directory locked."""
    run = RunDir.create_or_resume(path, settings, data.class_labels)
    run.config = config
    log = run.logger(log)
    log(f"run directory: {run.path}")
    for notice in run.notices:
        log(notice)
    if config.method != "rank":
        from mpath_tf.tradeoff.search import search_tradeoff

        return search_tradeoff(run, data, log, progress)

    supernet = _train_supernet(run, data, log, progress, strategy)
    reference_model, reference_record = None, None
    if config.reference:
        from mpath_tf.pipeline.reference import train_reference

        reference_model, reference_record = train_reference(run, data, log, progress)
    measured = _sample_finetune(run, supernet, data, log, progress)

    predictor = make_predictor(config.predictor, parameter_counts(supernet)).fit(
        list(measured), list(measured.values()))
    rows = _result_rows(supernet, measured, predictor)
    gain = _budget_gain(run, config)
    if gain:
        log(f"  the samples' learning curves add {gain:.4f} accuracy at {config.final_epochs} "
            "epochs; predictions raised by that much")
        for row in rows:
            row["predicted_val_accuracy"] = min(1.0, row["predicted_val_accuracy"] + gain)
    budget = config.budget()
    selection = None
    if budget.active:
        log(f"choosing by budget: {budget.describe()}")
        selection = choose_by_budget(rows, budget, *_budget_files(run, supernet, data, log))
        chosen = selection["paths"]
    else:
        chosen = config.paths or choose_paths(
            rows, config.max_accuracy_drop,
            reference_record["val_accuracy"] if reference_record else None)
    model = _final_model(run, supernet, chosen, data, log, progress)
    atomic_save_model(model, run.path / "model.keras")
    chosen_row = next(r for r in rows if r["paths"] == chosen)
    expected = model.predict(data.x_test, batch_size=1024, verbose=0)  # once: accuracy, checks
    test_accuracy = float(np.mean(np.argmax(expected, axis=-1) == data.y_test))
    exports = _export(run, model, data, log, expected=expected)
    _calibration_notice(log)
    reference = None
    if reference_model is not None:
        reference = {**reference_record,
                     "exports": _export(run, reference_model, data, log, "reference"),
                     "accuracy_difference_pt": 100 * (test_accuracy
                                                      - reference_record["test_accuracy"])}
    speed = None
    if config.bench:
        from mpath_tf.pipeline.reference import compare_speed

        log("timing the chosen model" + (" and the dense reference" if reference else "")
            + " on this machine (LiteRT)")
        files = {"chosen": {q: run.path / e["file"] for q, e in exports.items()}}
        if reference:
            files["reference"] = {q: run.path / e["file"]
                                  for q, e in reference["exports"].items()}
        speed = compare_speed(run.path, files, log)
    result = {
        "run_dir": str(run.path),
        "data_source": data.source,
        "classes": data.class_labels,
        "settings": config.to_dict(),
        "one_shot": run.state["supernet"],
        "chosen": {
            **chosen_row,
            "path_widths": path_widths(supernet, chosen),
            "val_accuracy": accuracy(model, data.x_val, data.y_val),
            "test_accuracy": test_accuracy,
            "exports": exports,
        },
        "reference": reference,
        "speed": speed,
        "rows": rows,
        "pareto_params": pareto_paths(rows, {r["paths"]: r["parameters"] for r in rows}),
        "budget": None if selection is None else {
            "limits": budget.describe(), "checked": {str(b): v for b, v in selection["checked"].items()}},
        "budget_gain": gain,
    }
    _write_csv(rows, run.path / "results.csv")
    plot_search(
        rows,
        chosen,
        run.path / "results.png",
        f"{config.dataset}: mpath-{config.depth}-{config.width}, predictor '{config.predictor}'",
    )
    atomic_write_json(run.path / "results.json", result)
    for line in outcome_lines(result):
        log(line)
    return result


def outcome_lines(result: dict) -> list[str]:
    """The closing lines of a search: the chosen model, against the dense
    reference in accuracy, size and speed, and whether its exports passed.

    Args:
        result: The content of ``results.json``.

    Returns:
        Lines to print.
    """
    chosen = result["chosen"]
    lines = [f"chosen: {chosen['paths']} paths, {chosen['parameters']} parameters "
             f"({chosen['percent_of_mlp']:.1f}% of the MLP), test accuracy "
             f"{chosen['test_accuracy']:.4f}"]
    reference = result.get("reference")
    if reference:
        sizes = ", ".join(f"{q} {chosen['exports'][q]['bytes']:,} vs "
                          f"{reference['exports'][q]['bytes']:,} bytes"
                          for q in ("float32", "int8") if q in reference["exports"])
        lines.append(f"dense reference mlp: test accuracy {reference['test_accuracy']:.4f} "
                     f"({reference['accuracy_difference_pt']:+.2f} points for the chosen "
                     f"model), {reference['parameters']:,} parameters; files: {sizes}")
    if result.get("speed"):
        from mpath_tf.pipeline.reference import speed_line

        line = speed_line(result["speed"])
        if line:
            lines.append(f"speed on this machine: {line}")
    failed = [f"{q}: {'; '.join(e['verification']['failures'])}"
              for q, e in chosen["exports"].items()
              if not e.get("verification", {}).get("passed", True)]
    if failed:
        lines.append("FAILED: the chosen model's exported files miss their checks ("
                     + "; ".join(failed) + "); they are kept, see results.json")
    return lines
