"""The steps of a search, each done once per run directory and recorded.

``run`` orchestrates them; ``tuning`` (a sample as a KerasTuner trial) and
``mpath_tf.pipeline.tradeoff`` (the cost-regularized methods) reuse them:
loading the data, building and training the supernet, fine-tuning a path
count, the final model, the result rows and the choice by accuracy, the
int8 files of a budget, and the verified exports.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.data import Dataset, load_dataset, load_file
from mpath_tf.core.conv import PathConv2D
from mpath_tf.core.derivation import derive, parameter_counts, with_conv_implementation
from mpath_tf.training.distributed import cluster_from_env, train_distributed
from mpath_tf.errors import ConfigError, DamagedFileError, WorkerError
from mpath_tf.storage import atomic_save_model, atomic_write_bytes
from mpath_tf.core.models import adapt_normalization, image_shape
from mpath_tf.core.saving import load_model
from mpath_tf.core.supernet import build_supernet, to_supernet
from mpath_tf.progress import Progress
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.training.loop import (RECALIBRATION_ROWS, accuracy, epochs_done,
                                    recalibrate_batch_norms, train)
from edge_bench import Journal, get_target, measure_models
from edge_bench.arm64 import is_built
from edge_bench.stats import row_cost, row_unit
from edge_bench.targets import target_slug
from mpath_tf.pipeline.curves import gains_by_paths
from mpath_tf.pipeline.objective import measured_on
from mpath_tf.core.layers import PathDense
from converters import Float32, Int8, export_tflite, lowering_plan, verify
from converters.parity import compare_outputs, output_step
from converters.profiles import foreign_table_notice, profile_source, target_profile
from converters.tflite import run_tflite, write_tflite
from converters.tflm import is_tflm_target, tflm_convert, write_mcu_sources


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
    """``runs/<dataset>-mpath-<depth>-<width>-seed<seed>`` (with ``--model``:
    ``runs/<dataset>-<model file stem>-seed<seed>``) under the current directory."""
    name = Path(config.data).stem if config.data else config.dataset
    return Path("runs") / f"{name}-{config.network()}-seed{config.seed}"


def finetune(
    supernet, paths: int, data: Dataset, config: SearchConfig, epochs: int | None = None,
    history: list | None = None, checkpoint_dir=None, callbacks: list | None = None,
    summary: dict | None = None, log=None,
) -> keras.Model:
    """Derive ``paths`` paths and fine-tune them, seeded by the run's seed and b.

    Its batch normalizations (if any) first get the statistics of the
    training data under the derived paths (``recalibrate_batch_norms``), and
    again after training. It is fine-tuned at ``config.tune_learning_rate``,
    scored before the first epoch, and the best validation epoch is kept:
    the result is never below the derived model on validation accuracy (up
    to the final re-estimate of batch-norm statistics, where there are any).

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
    return train_derived(model, data, epochs, batch_size=config.batch_size,
                         learning_rate=config.tune_learning_rate, keep_best=True,
                         score_start=True, history=history, checkpoint_dir=checkpoint_dir,
                         callbacks=callbacks, summary=summary, log=log)


def train_derived(model: keras.Model, data: Dataset, epochs: int, **train_args) -> keras.Model:
    """Train a derived network: its batch normalizations (if any) first get
    the statistics of the training data under its paths
    (``recalibrate_batch_norms``) and again after training, and its path
    convolutions train as one convolution per path (TensorFlow trains a
    grouped ``Conv2D`` slowly on CPU) and come back grouped (same function).

    Args:
        model: A derived network (``derive``).
        data: The dataset.
        epochs: Training epochs.
        **train_args: ``mpath_tf.training.loop.train``'s other arguments.

    Returns:
        The trained model (a new one when its convolutions were regrouped).
    """
    # the supernet's batch-norm statistics do not fit what the cut membranes leave
    recalibrate_batch_norms(model, data.x_train[:RECALIBRATION_ROWS])
    grouped = any(n > 1 and w > 1 for layer in model.layers if isinstance(layer, PathConv2D)
                  for _, n, w in layer.runs())
    if grouped:
        model = with_conv_implementation(model, "split")
    train(model, data, epochs, recalibrate=True, **train_args)
    return with_conv_implementation(model, "grouped") if grouped else model


def user_model(config: SearchConfig, data: Dataset) -> keras.Model:
    """The Keras model of ``config.model``, checked against the data.

    Raises:
        ConfigError: The file is not a loadable model, its input shape is not
            the data's, its output does not give one probability per class,
            or it has no stack to split (each message names the fix).
    """
    try:
        model = load_model(config.model)
    except (DamagedFileError, FileNotFoundError) as err:
        raise ConfigError(f"`model={str(config.model)!r}`: {err}") from None
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ConfigError(f"`model={str(config.model)!r}` is not a built Sequential or Functional "
                          "model; build it (keras.Input(...) first) and save it again.")
    shape = tuple(model.inputs[0].shape[1:])
    if shape != tuple(data.input_shape):
        raise ConfigError(
            f"--model {config.model} takes inputs of shape {shape}, but the data's examples "
            f"have shape {tuple(data.input_shape)}; start the model with "
            f"keras.Input({tuple(data.input_shape)}) (and a Reshape or Flatten if needed).")
    outputs = tuple(model.outputs[0].shape[1:])
    if outputs != (data.num_classes,):
        raise ConfigError(
            f"--model {config.model} outputs shape {outputs}, but the data has "
            f"{data.num_classes} classes; end it with Dense({data.num_classes}, "
            "activation='softmax').")
    last = model.layers[-1]
    if getattr(last, "activation", None) is not keras.activations.softmax:
        raise ConfigError(
            f"--model {config.model} must end in a softmax (mpath-tf trains with cross-entropy "
            f"on probabilities); its last layer {last.name} does not. Give it "
            "activation='softmax'.")
    return model


def build_supernet_for(config: SearchConfig, data: Dataset) -> keras.Model:
    """The run's untrained supernet: ``to_supernet`` of ``config.model``, or the
    built-in ``mpath-<depth>-<width>``, its input normalization adapted.

    Raises:
        ConfigError: As ``user_model``, or the user's model has no stack.
    """
    if config.model is None:
        supernet = build_supernet(data.input_shape, data.num_classes, config.depth,
                                  config.width, seed=config.seed, normalize=data.normalize,
                                  arch=config.arch)
    else:
        keras.utils.set_random_seed(config.seed)  # the membranes' initial values
        supernet = _user_supernet(config, data)
    return adapt_normalization(supernet, data.x_train)


def _user_supernet(config: SearchConfig, data: Dataset):
    try:
        return to_supernet(user_model(config, data), name=f"{Path(config.model).stem}-supernet")
    except ValueError as err:  # no stack to split
        raise ConfigError(f"`model={str(config.model)!r}`: {err}") from None


def with_model_shape(config: SearchConfig, data: Dataset) -> SearchConfig:
    """``config`` with ``depth`` and ``width`` of its ``--model``'s first
    stack and the file's SHA-256 (unchanged without ``--model``).

    Raises:
        ConfigError: As ``build_supernet_for``, or ``--arch cnn|resnet8`` on
            data whose examples are not images.
    """
    if config.arch != "mlp":
        try:
            image_shape(data.input_shape)
        except ValueError:
            raise ConfigError(
                f"--arch {config.arch} needs image-shaped examples, (height, width) or "
                f"(height, width, channels) of at least 3 x 3 pixels; {config.data or config.dataset} has "
                f"examples of shape {tuple(data.input_shape)}. Use --arch mlp for flat "
                "features, or save the images with their shape (an .npz x of shape "
                "(n, height, width[, channels])).") from None
    if config.model is None:
        return config
    supernet = _user_supernet(config, data)  # its shape only: no seed, no normalization
    digest = hashlib.sha256(Path(config.model).read_bytes()).hexdigest()
    return replace(config, depth=supernet.depth, width=supernet.width, model_sha256=digest)


def train_supernet(run: RunDir, data: Dataset, log, progress: Progress,
                    strategy=None) -> keras.Model:
    config = run.config
    supernet = run.done_model(run.state["supernet"], run.supernet_path, log, "one-shot training")
    if supernet is not None:
        if strategy is not None:  # the other workers wait to hear that
            train_distributed(lambda: build_supernet_for(config, data), data, config.epochs,
                              strategy, finished=True)
        return supernet
    checkpoints = run.path / "checkpoints" / "supernet"
    done = epochs_done(checkpoints)
    log(f"one-shot training {config.network()} for {config.epochs} epochs"
        + (f" (resuming after epoch {done})" if done else ""))
    start = time.perf_counter()
    progress.phase("one-shot training", 1, config.epochs)
    if strategy is None:
        supernet = build_supernet_for(config, data)
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
            lambda: build_supernet_for(config, data), data, config.epochs, strategy,
            batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
            checkpoint_dir=checkpoints, on_epoch=lambda epoch, _: progress.epoch(epoch))
    progress.done()
    run.finish_model(supernet, run.supernet_path, run.state, "supernet", {
        "val_accuracy": val,
        "test_accuracy": accuracy(supernet, data.x_test, data.y_test),
        "seconds": time.perf_counter() - start,
    })
    shutil.rmtree(checkpoints, ignore_errors=True)  # supernet.keras holds the result now
    log(f"  one-shot validation accuracy {val:.4f}")
    return supernet


def worker_one_shot(config: SearchConfig, data: Dataset, strategy, log,
                     progress: Progress) -> dict:
    """A non-chief task of ``--strategy multiworker``: take part in the
    one-shot training, then leave the rest of the search to the chief."""
    cluster = cluster_from_env()
    log(f"{cluster.describe()}: one-shot training with the chief at {cluster.chief_address}; "
        "the chief writes the run directory")
    progress.phase("one-shot training", 1, config.epochs)
    model, _ = train_distributed(
        lambda: build_supernet_for(config, data), data, config.epochs, strategy,
        batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
        on_epoch=lambda epoch, _: progress.epoch(epoch))
    progress.done()
    log("one-shot training " + ("finished" if model is not None else "was finished earlier")
        + "; the chief goes on with the search")
    return {"role": "worker", "task": f"{cluster.task_type}:{cluster.index}",
            "chief": cluster.chief_address, "trained": model is not None}


def result_rows(supernet, measured: dict[int, float], predictor) -> list[dict]:
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


def resolution_notice(validation_examples: int, max_accuracy_drop: float) -> str | None:
    """A line saying that the validation split is too small to resolve the
    allowed drop (one example is worth more than it), else None.

    Example:
        >>> "one example is 2.17 points" in resolution_notice(46, 0.01)
        True
        >>> resolution_notice(144, 0.01) is None
        True
    """
    step = 1 / max(1, validation_examples)
    if step <= max_accuracy_drop:
        return None
    return (f"note: the validation split has {validation_examples} examples, so one example "
            f"is {100 * step:.2f} points, more than --max-accuracy-drop {max_accuracy_drop:g} "
            f"({100 * max_accuracy_drop:g} points): the choice cannot tell the allowed drop "
            "from one more error, and path counts that tie on validation count as within it. "
            "Compare the chosen model's test accuracy with the dense reference's, or choose "
            "with --paths.")


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


def final_model(run: RunDir, supernet, paths: int, data: Dataset, log,
                 progress: Progress) -> keras.Model:
    config = run.config
    epochs = config.final_budget
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
    same_budget = final if final and final.get("epochs", config.finetune_epochs) == epochs else None
    model = run.done_model(same_budget, path, log, f"final fine-tuning ({paths} paths)")
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
    run.finish_model(model, path, run.state["final"], str(paths),
                     {"val_accuracy": accuracy(model, data.x_val, data.y_val), "epochs": epochs})
    shutil.rmtree(checkpoints, ignore_errors=True)
    return model


def budget_gains_of(run: RunDir, config: SearchConfig, paths) -> dict[int, float]:
    """The accuracy the final budget adds over the samples' at each path
    count (``mpath_tf.pipeline.curves.gains_by_paths``); empty with the same
    budget, or samples from before curves were recorded."""
    if config.final_budget <= config.finetune_epochs:
        return {}
    curves = {int(b): s["val_curve"] for b, s in run.state["samples"].items() if s.get("val_curve")}
    if len(curves) != len(run.state["samples"]) or not curves:
        return {}
    return gains_by_paths(curves, config.final_budget, paths)


def raise_predictions(rows: list[dict], gains: dict[int, float],
                      best_measured: float) -> None:
    """Add each path count's budget gain to its predicted accuracy, and hold
    every prediction at most the predictor's stated +- above the best
    validation accuracy measured in the run (a prediction above anything
    measured is not one a user can trust). Rows get ``budget_gain`` and
    ``capped`` (True where the ceiling applied).

    Example:
        >>> rows = [{"paths": 1, "predicted_val_accuracy": 0.90, "predicted_std": 0.01},
        ...         {"paths": 2, "predicted_val_accuracy": 0.80, "predicted_std": None}]
        >>> raise_predictions(rows, {1: 0.05, 2: 0.02}, best_measured=0.9)
        >>> [(r["predicted_val_accuracy"], r["capped"]) for r in rows]
        [(0.91, True), (0.82, False)]
    """
    for row in rows:
        gain = gains.get(row["paths"], 0.0)
        raised = min(1.0, row["predicted_val_accuracy"] + gain)
        ceiling = best_measured + (row.get("predicted_std") or 0.0)
        row["budget_gain"] = gain
        row["capped"] = raised > ceiling
        row["predicted_val_accuracy"] = round(min(raised, ceiling), 12)


class TargetFiles:
    """The int8 files of path counts (weights of the supernet: cost does not
    depend on fine-tuning) and of the dense reference, exported once under
    ``RUN/budget/`` and measured once per target (a journal per target), for
    budgets (``mpath_tf.pipeline.budget``) and objectives
    (``mpath_tf.pipeline.objective``).

    A key is a path count, or ``"dense"`` for the dense reference. Files for
    LiteRT are ``<key>_int8.tflite`` lowered by ``auto`` (for an ARM core
    ``<key>_int8_arm64-CORE.tflite``, by the core's table); files for a TFLM
    target ``<key>_int8_tflm.tflite``, lowered for that target's table and
    never in a way TFLM refuses (``converters.tflm.tflm_convert``).
    """

    def __init__(self, run: RunDir, supernet, data: Dataset, log, reference_model=None):
        self.run, self.supernet, self.data, self.log = run, supernet, data, log
        self.reference_model = reference_model
        self.folder = run.path / "budget"
        self.folder.mkdir(exist_ok=True)
        self.targets: dict = {}  # one per name: a target describes its device once

    def _model(self, key):
        if key == "dense":
            return self.reference_model
        return derive(self.supernet, key)

    @staticmethod
    def _stem(key) -> str:
        return "dense" if key == "dense" else f"paths-{key}"

    def _what(self, key) -> str:
        return "the dense reference" if key == "dense" else f"{key} paths"

    def file(self, key, target: str = "local") -> Path:
        """The key's int8 file for LiteRT (on an ARM core ``target``:
        lowered by that core's bundled table)."""
        table = target_profile(target, "int8") if target.startswith("arm64:") else None
        suffix = f"_{target_slug(target)}" if table else ""
        path = self.folder / f"{self._stem(key)}_int8{suffix}.tflite"
        if not path.is_file():
            self.log(f"  exporting {self._what(key)} (int8{', for ' + target if table else ''}) "
                     "to measure it")
            export_tflite(self._model(key), path, Int8(), self.data.x_train, lowering="auto",
                          profile=table, labels=self.data.class_names)
        return path

    def tflm_file(self, key, target: str) -> Path:
        """The key's int8 file lowered for the TFLM ``target``."""
        suffix = "" if target == "tflm" else "-" + target.split(":", 1)[1]
        path = self.folder / f"{self._stem(key)}_int8_tflm{suffix}.tflite"
        if not path.is_file():
            self.log(f"  exporting {self._what(key)} (int8, for {target}) to measure it")
            content, _ = tflm_convert(self._model(key), Int8(), self.data.x_train, target=target,
                                      log=self.log)
            atomic_write_bytes(path, content)
        return path

    def row(self, target_name: str, key) -> dict:
        """The key's int8 file measured on ``target_name`` (a TFLM target
        measures the file lowered for it).

        Raises:
            WorkerError: The target could not run it.
        """
        path = (self.tflm_file(key, target_name) if is_tflm_target(target_name)
                else self.file(key, target_name))
        target = self.targets.setdefault(target_name, get_target(target_name))
        journal = Journal(self.folder / f"latency-{target_slug(target.name)}.jsonl")
        row = measure_models(target, [({"paths": 0 if key == "dense" else key,
                                        "quantization": "int8"}, path)], journal,
                             log=lambda *_: None)[0]
        if row["status"] != "ok":
            raise WorkerError(f"Cannot measure {self._what(key)} on {target_name}: "
                              f"{row.get('error')}")
        return row

    def size_kb(self, b: int) -> float:
        """The int8 file's size in KB (1000 bytes)."""
        return self.file(b).stat().st_size / 1000

    def latency_ms(self, b: int) -> float:
        """The median latency of the int8 file on the run's target, in ms."""
        row = self.row(self.run.config.target, b)
        self.log(f"  budget: {b} paths run in {row['stats']['median_us'] / 1000:.4f} ms on "
                 f"{self.run.config.target}")
        return row["stats"]["median_us"] / 1000

    def tflm_row(self, b: int) -> dict:
        """The TFLM measurement (arena, flash) of the file lowered for the
        run's TFLM target, or for ``tflm`` when the target is not one."""
        target = measured_on("ram", self.run.config.target)
        row = self.row(target, b)
        self.log(f"  budget: {b} paths: arena {row['arena_bytes']:,} bytes, flash "
                 f"{row['flash_bytes_no_metadata']:,} bytes on {target}")
        return row

    def cost(self, key, objective: str) -> float:
        """The key's measured cost for ``objective``: latency (us, or
        instructions on a counting target) on the run's target; the TFLM
        arena (``ram``) or the file without metadata (``flash``) in bytes."""
        target = measured_on(objective, self.run.config.target)
        row = self.row(target, key)
        value = {"latency": lambda: row_cost(row), "ram": lambda: float(row["arena_bytes"]),
                 "flash": lambda: float(row["flash_bytes_no_metadata"])}[objective]()
        unit = row_unit(row) if objective == "latency" else "bytes"
        self.log(f"  {objective}: {self._what(key)}: {value:,.6g} {unit} on {target}")
        return value


def export_run_model(run: RunDir, model: keras.Model, data: Dataset, log, name: str = "model",
                     expected: np.ndarray | None = None) -> dict:
    """Export ``model`` to float32 and int8 ``RUN/<name>_<q>.tflite`` (with
    ``labels.txt``), verified against ``expected`` (its Keras outputs on the
    test split; None: not verified); done once per model (``state["exports"]``).

    With a TFLM target (``run.config.target``: ``tflm`` or ``tflm:CORE``)
    the int8 file is lowered for that target, never in a way TFLM refuses
    (``converters.tflm.tflm_convert``), and its C array and op resolver are
    written to ``RUN/mcu/``. (A file outside a run is
    ``mpath_tf.pipeline.workflows.export_model``'s.)"""
    target = run.config.target
    on_arm = target.startswith("arm64:")
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes()
                                     for w in model.get_weights())).hexdigest()[:16]
    key = f"{name}:{model.name}:{digest}"  # the same weights: the same files
    if is_tflm_target(target) or on_arm:  # ... for the same runtime
        key += f":{target}"
    done = run.state.setdefault("exports", {}).get(key)
    if done and all((run.path / e["file"]).is_file() for e in done.values()):
        log(f"  {name} exports: done earlier")
        return done
    # an ARM core's files: lowered by its table (int8), checked on its kernels once set up
    check_on = target if on_arm and expected is not None and is_built() else None
    exports = {}
    for scheme in (Float32(), Int8()):
        path = run.path / f"{name}_{scheme.name}.tflite"
        table = target_profile(target, scheme.name) if on_arm else None
        if scheme.name == "int8" and is_tflm_target(target):
            exports[scheme.name] = _export_for_tflm(run, model, path, data, name, log)
        else:
            export_tflite(model, path, scheme, representative_data=data.x_train, lowering="auto",
                          profile=table, labels=data.class_names)
            plan = lowering_plan(model, scheme.name, "auto", table)
            exports[scheme.name] = {"file": path.name, "bytes": path.stat().st_size,
                                    "lowerings": plan["lowerings"],
                                    "conv_lowerings_measured": plan["conv_lowerings_measured"]}
            if table:
                exports[scheme.name].update(target=target, profile=table.name)
        if expected is not None:
            check = verify(path, model, data.x_test, scheme, data.y_test, expected=expected)
            exports[scheme.name].update(test_accuracy=check.tflite_accuracy,
                                        verification=check.to_dict())
            log(f"  {path.name}: {path.stat().st_size} bytes, {check.summary()}")
        if check_on:
            on = verify_on_target(path, expected, data.x_test, scheme, data.y_test, check_on)
            exports[scheme.name]["verification_on"] = {check_on: on}
            log(f"  {path.name} on {check_on}: top-1 agreement {on['agreement']:.4f}, "
                f"{on['identical_to_this_machine']:.1%} of outputs identical to this machine's"
                + (" [passed]" if on["passed"] else " [FAILED: " + "; ".join(on["failures"]) + "]"))
    run.state["exports"][key] = exports
    run.save_state()
    return exports


def verify_on_target(path: Path, expected: np.ndarray, x: np.ndarray, scheme, labels,
                     target: str) -> dict:
    """The parity check of ``path`` run on an emulated ARM core (the
    bounds of ``converters.parity``), and the share of its outputs
    identical to this machine's LiteRT outputs (``identical_to_this_machine``).

    Raises:
        TargetError: The ARM runtime is not set up (``mpath-tf setup arm64``).
    """
    got = get_target(target).run(path, x)
    check = compare_outputs(expected, got, scheme, labels, output_step(path))
    return {**check.to_dict(),
            "identical_to_this_machine": float(np.mean(got == run_tflite(path, x)))}


def _export_for_tflm(run: RunDir, model: keras.Model, path: Path, data: Dataset, name: str,
                     log) -> dict:
    """The int8 file lowered for the run's TFLM target, with its C sources."""
    content, record = tflm_convert(model, Int8(), data.x_train, target=run.config.target,
                                   log=lambda m: log(f"  {m}"))
    sources = write_mcu_sources(content, run.path / "mcu", name)  # no labels: C has no use
    write_tflite(content, path, data.class_names)
    return {"file": path.name, "bytes": path.stat().st_size, "target": run.config.target,
            "lowerings": record["lowerings"], "refused_lowerings": record["refused"],
            "profile": record["profile"], "conv_lowerings_measured": None,
            "mcu_sources": {k: str(Path(v).relative_to(run.path)) if k != "ops" else v
                            for k, v in sources.items()}}


def profile_notice(model: keras.Model, log) -> None:
    """Say so when ``auto`` lowered ``model``'s block-diagonal Dense layers
    with a lowering profile of another CPU (a CNN's path convolutions use
    the table's conv entries where it has them, else stay ``grouped``, the
    fast form with XNNPACK; each export records which:
    ``conv_lowerings_measured``)."""
    if not any(isinstance(layer, PathDense) for layer in model.layers):
        return
    notice = foreign_table_notice(profile_source(None, "int8"))
    if notice:
        log(f"  {notice}")


