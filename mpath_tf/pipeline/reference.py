"""The dense reference of a search, and the speed of the chosen model against it.

A user deciding whether to ship the multipath model needs two numbers the
paper leaves implicit: how accurate the plain MLP of the same depth and
width would have been on the same data and budget, and how much faster the
chosen model runs. ``train_reference`` trains that MLP as a step of the run
(checkpointed each epoch, recorded in ``state.json``, never redone);
``compare_speed`` times both exported models on this machine with
``edge_bench``'s local target, side by side, and keeps the result in a
journal so a rerun does not time again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras

from mpath_tf.data import Dataset
from mpath_tf.errors import TargetError
from mpath_tf.core.derivation import to_dense
from mpath_tf.pipeline.steps import build_supernet_for
from mpath_tf.progress import Progress
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.training.loop import accuracy, epochs_done, train
from edge_bench import BenchSettings, Journal, get_target, measure_models
from edge_bench.targets import target_slug
from edge_bench.tflm import summary

REFERENCE_FILE = "reference.keras"
# Timing budget of the summary comparison: about 15 s for four files on a
# desktop CPU (each timed in a fresh process: start, 0.3 s warm-up, 2 s timed).
# The closing speed check's settings; its measured time is SearchConfig.bench_seconds.
SPEED_SETTINGS = dict(warmup_min_secs=0.3, runs=50, timeout_s=120.0)


def train_reference(run: RunDir, data: Dataset, log, progress: Progress) -> tuple[keras.Model, dict]:
    """Train (or load) the dense MLP of the run's depth and width.

    It has the supernet's input normalization, epochs, batch size, learning
    rate and seed, and keeps its best validation epoch, as one-shot training.

    Args:
        run: The run directory (``RUN/reference.keras``, ``state["reference"]``).
        data: The run's dataset.
        log: Message printer.
        progress: Progress display.

    Returns:
        The trained model and its record (accuracies, parameters, seconds).
    """
    config = run.config
    path = run.path / REFERENCE_FILE
    model = run.done_model(run.state.get("reference"), path, log, "dense reference")
    if model is not None:
        return model, run.state["reference"]
    checkpoints = run.path / "checkpoints" / "reference"
    resumed = epochs_done(checkpoints)
    # the supernet's starting point, fully connected: same layers, same initial weights
    model = to_dense(build_supernet_for(config, data))
    log(f"dense reference {model.name}: training for {config.epochs} epochs"
        + (f", resuming after epoch {resumed}" if resumed else ""))
    start = time.perf_counter()
    progress.phase("dense reference", 1, config.epochs)
    val = train(model, data, config.epochs, batch_size=config.batch_size,
                learning_rate=config.learning_rate, checkpoint_dir=checkpoints,
                callbacks=[progress.callback()], log=log, recalibrate=True)
    progress.done()
    record = {"val_accuracy": val, "test_accuracy": accuracy(model, data.x_test, data.y_test),
              "parameters": int(model.count_params()),
              "seconds": time.perf_counter() - start}
    run.finish_model(model, path, run.state, "reference", record)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log(f"  dense reference: validation accuracy {val:.4f}, test accuracy "
        f"{record['test_accuracy']:.4f}")
    return model, record


def compare_speed(run_path: Path, files: dict[str, dict[str, Path]], log,
                  seconds: float) -> dict:
    """Median latency of each file on this machine and the speed-up over the reference.

    Args:
        run_path: The run directory (journal in ``RUN/speed/``).
        files: ``{"chosen": {"float32": path, "int8": path}, "reference": {...}}``.
        log: Message printer.
        seconds: Measured time per file (``SearchConfig.bench_seconds``).

    Returns:
        ``{quantization: {"chosen_us", "reference_us", "speedup"}}`` plus
        ``target`` and ``settings``; a file that failed to run is left out
        with its error under ``errors``.
    """
    target = get_target("local")
    settings = BenchSettings(**SPEED_SETTINGS, min_secs=seconds)
    folder = run_path / "speed"
    folder.mkdir(exist_ok=True)
    models = [({"role": who, "quantization": q}, path)
              for q in ("float32", "int8") for who, paths in files.items()
              if (path := paths.get(q)) is not None]
    try:
        rows = measure_models(target, models, Journal(folder / "latency-local.jsonl"), settings,
                              log=lambda *_: None)
    except TargetError as err:  # the timing is a report, not a step the result depends on
        log(f"  timing on this machine failed: {err}; rerun the search to try again "
            "(nothing else is redone)")
        return {"target": target.name, "settings": settings.to_dict(), "errors": {"all": str(err)}}
    medians, errors = {}, {}
    for (labels, _), row in zip(models, rows):  # rows come in the order of models
        key = (labels["role"], labels["quantization"])
        if row["status"] == "ok":
            medians[key] = row["stats"]["median_us"]
        else:
            errors[f"{key[0]} {key[1]}"] = row.get("error")
    out = {"target": target.name, "settings": settings.to_dict(), "errors": errors}
    for q in ("float32", "int8"):
        if ("chosen", q) in medians and ("reference", q) in medians:
            chosen, reference = medians[("chosen", q)], medians[("reference", q)]
            out[q] = {"chosen_us": chosen, "reference_us": reference,
                      "speedup": reference / chosen}
    for what, error in errors.items():
        log(f"  timing {what} failed: {error}")
    return out


def compare_on_tflm(run_path: Path, files: dict[str, Path], target: str, log) -> dict:
    """The chosen model's and the dense reference's int8 files on a TFLM target.

    On ``tflm:CORE`` each file is also prepared and run on the host's TFLM
    interpreter (``tflm``), so the record says whether TFLM prepares both
    and whether their outputs match LiteRT's there as well as on the core.

    Args:
        run_path: The run directory (journals in ``RUN/speed/``).
        files: ``{"chosen": path, "reference": path}`` (int8 files for TFLM).
        target: ``tflm`` or ``tflm:CORE``.
        log: Message printer.

    Returns:
        ``{"target", "unit", "chosen": row summary, "reference": ...,
        "ratio": reference cost / chosen cost, "host": {...} or None,
        "errors": {...}}``; a row summary has ``cost``, ``arena_bytes``,
        ``flash_bytes``, ``flash_bytes_no_metadata`` and ``parity``.
    """
    folder = run_path / "speed"
    folder.mkdir(exist_ok=True)
    settings = BenchSettings(warmup_runs=2, warmup_min_secs=0.0, runs=200, min_secs=0.5,
                             timeout_s=300.0)
    models = [({"role": who, "quantization": "int8"}, path) for who, path in files.items()]

    def measure(name: str) -> tuple[dict, dict]:
        bench_target = get_target(name)
        rows = measure_models(bench_target, models,
                              Journal(folder / f"latency-{target_slug(name)}.jsonl"), settings,
                              log=lambda *_: None)
        found, errors = {}, {}
        for (labels, _), row in zip(models, rows):
            if row["status"] == "ok":
                found[labels["role"]] = summary(row)
            else:
                errors[labels["role"]] = row.get("error")
                log(f"  {labels['role']} on {name}: FAILED: {row.get('error')}")
        return found, errors

    out = {"target": target, "errors": {}, "host": None}
    try:
        found, out["errors"] = measure(target)
        if target != "tflm":
            host, host_errors = measure("tflm")
            out["host"] = {**host, "errors": host_errors}
    except TargetError as err:  # a report after the search; the files are kept
        log(f"  measuring on {target} failed: {err}")
        out["errors"]["all"] = str(err)
        return out
    out.update(found)
    if "chosen" in found:
        out["unit"] = found["chosen"]["unit"]
    if "chosen" in found and "reference" in found:
        out["ratio"] = found["reference"]["cost"] / found["chosen"]["cost"]
    return out
