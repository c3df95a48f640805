"""The KerasTuner extensions of the sample fine-tuning: ``ListOracle`` and
``AdaptiveOracle`` (which path count next) and ``SampleTuner`` (fine-tune
one path count per trial), importable and subclassable like any KerasTuner
extension. The resumable and distributed machinery around them is
``mpath_tf.pipeline.tuning``; this module imports KerasTuner (and so
TensorFlow), so TF-free callers import it inside the functions that need it.

Both oracles decide the next path count from the saved trials alone (each
``trial_*/trial.json``), holding no state of their own: a search killed
between KerasTuner's write of a trial and of ``oracle.json`` resumes with
the same answer. (KerasTuner's ``GridSearchOracle`` keeps its order in
memory only and crashed with ``KeyError`` on such a resume.) A path count
counts as taken when its trial completed or is running on a live tuner; one
left RUNNING by a killed process is handed out again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras_tuner as kt
from keras_tuner.engine.base_tuner import BaseTuner
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.errors import FatalError

from mpath_tf.core.derivation import path_widths
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.pipeline.sampling import initial_path_counts, next_path_count
from mpath_tf.pipeline.steps import finetune, load_data, sample_path_counts
from mpath_tf.storage import atomic_save_model, atomic_write_record, read_json
from mpath_tf.training.loop import accuracy, epochs_done

PROJECT = "samples"  # RUN/tuner/samples: KerasTuner's project folder


class PathOracle(kt.Oracle):
    """An oracle over one hyperparameter, ``paths`` (1 .. ``width``); a
    subclass says which path count comes next (``next_paths``).

    Args:
        width: The widest layer (the most paths).
        max_trials: How many path counts the oracle hands out.
        objective: A ``keras_tuner.Objective`` (``val_accuracy``, max).
    """

    def __init__(self, width: int, max_trials: int, objective):
        hp = kt.HyperParameters()
        hp.Int("paths", 1, max(width, 2))
        # max_trials=None: an orphaned RUNNING trial is one more trial
        # entry, so the trial count cannot be the stopping rule.
        super().__init__(objective=objective, max_trials=None, hyperparameters=hp,
                         allow_new_entries=False, tune_new_entries=False)
        self.width, self.wanted_trials = width, max_trials

    def next_paths(self, done: dict[int, float], running: set[int]) -> int | None:
        """The next path count, given the finished ones (with their scores)
        and the running ones; None: no more trials."""
        raise NotImplementedError

    def _done(self) -> dict[int, float]:
        return {int(t.hyperparameters.get("paths")): t.score for t in self.trials.values()
                if t.status == TrialStatus.COMPLETED and t.score is not None}

    def _running(self) -> set[int]:
        return {int(t.hyperparameters.get("paths")) for t in self.ongoing_trials.values()}

    def populate_space(self, trial_id):
        b = self.next_paths(self._done(), self._running())
        if b is None:
            return {"status": TrialStatus.STOPPED, "values": None}
        return {"status": TrialStatus.RUNNING, "values": {"paths": b}}


class ListOracle(PathOracle):
    """The given path counts, in order.

    Example:
        >>> oracle = ListOracle([1, 4, 16], kt.Objective("val_accuracy", "max"))
        >>> oracle.next_paths({1: 0.9}, {4})
        16
    """

    def __init__(self, path_counts, objective):
        self.path_counts = [int(b) for b in path_counts]
        super().__init__(max(self.path_counts), len(self.path_counts), objective)

    def next_paths(self, done, running):
        return next((b for b in self.path_counts if b not in done and b not in running), None)


class AdaptiveOracle(PathOracle):
    """The start set (``initial_path_counts``), then where the fitted
    accuracy curve is least certain (``next_path_count``); path counts
    being fine-tuned by other workers are skipped."""

    def next_paths(self, done, running):
        if len(done) + len(running) >= self.wanted_trials:
            return None
        start = [b for b in initial_path_counts(self.width) if b not in set(done) | running]
        return start[0] if start else next_path_count(done, self.width, exclude=running)


def oracle_for(config) -> PathOracle:
    """The oracle of a run's settings: the evenly spaced path counts in order
    (``ListOracle``), or ``AdaptiveOracle`` (``config.sampling``)."""
    objective = kt.Objective("val_accuracy", "max")
    if config.sampling == "adaptive":
        return AdaptiveOracle(config.width, config.samples, objective)
    return ListOracle(sample_path_counts(config.width, config.samples), objective)


class SampleTuner(BaseTuner):
    """Runs one sampled path count per trial: fine-tunes the derived model
    (resuming its per-epoch checkpoint), saves it in the run directory and
    writes the sample's record (``mpath_tf.pipeline.tuning``).

    Args:
        run_path: The run directory, with a trained ``supernet.keras``.
        log: Progress printer.
        progress: A ``mpath_tf.progress.Progress`` for steps and epochs.
        **kwargs: Passed to ``BaseTuner`` (e.g. ``logger``).
    """

    def __init__(self, run_path, log=print, progress=None, **kwargs):
        self.run_path = Path(run_path)
        self.log = log
        self.progress = progress
        self.trials_begun = 0
        self._context = None
        config = RunDir.open(self.run_path).config
        super().__init__(oracle=oracle_for(config), directory=str(self.run_path / "tuner"),
                         project_name=PROJECT, overwrite=False, **kwargs)

    def _load(self):
        if self._context is None:
            run = RunDir.open(self.run_path)
            data = load_data(run.config)
            run.config = run.config.for_data(len(data.x_train))
            self._context = (run, run.load_supernet(), data)
        return self._context

    def run_trial(self, trial, *args, **kwargs):
        # KerasTuner would count an error as a failed trial and try the next
        # one; a fine-tuning that fails is a real error, so stop (a worker
        # process exits and is restarted by run_distributed).
        try:
            return self._run_sample(trial)
        except Exception as err:
            raise FatalError(f"{type(err).__name__}: {err}") from err

    def _run_sample(self, trial):
        run, supernet, data = self._load()
        b = int(trial.hyperparameters.get("paths"))
        record = run.sample_path(b)
        if record.is_file():  # finished before the oracle heard of it
            return {"val_accuracy": read_json(record)["val_accuracy"]}
        checkpoints = run.path / "checkpoints" / f"paths-{b}"
        resumed = epochs_done(checkpoints)
        if resumed:
            self.log(f"  {b} paths: resuming after epoch {resumed}")
        start = time.perf_counter()
        curve: list[float] = []
        scores: dict = {}
        if self.progress is not None:
            self.trials_begun += 1
            self.progress.step(self.trials_begun, f"{b} paths")
        model = finetune(supernet, b, data, run.config, history=curve,
                         checkpoint_dir=checkpoints, summary=scores, log=self.log,
                         callbacks=[self.progress.callback()] if self.progress else None)
        if self.progress is not None:
            self.progress.done()
        atomic_save_model(model, run.model_path(b))
        val = accuracy(model, data.x_val, data.y_val)
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_record(record, {
            "val_accuracy": val, "val_curve": curve, "parameters": model.count_params(),
            "derived_val_accuracy": scores.get("start_accuracy"),
            "best_epoch": scores.get("best_epoch"),
            "path_widths": path_widths(supernet, b), "seconds": time.perf_counter() - start,
            "tuner_id": self.tuner_id,
        })
        shutil.rmtree(checkpoints, ignore_errors=True)
        start_note = ("" if scores.get("start_accuracy") is None else
                      f" (derived {scores['start_accuracy']:.4f}, best epoch "
                      f"{scores['best_epoch']})")
        self.log(f"  fine-tuned {b} paths: validation accuracy {val:.4f}{start_note}")
        return {"val_accuracy": val}

    def save_model(self, trial_id, model, step=0):
        """Models are saved by ``run_trial`` into the run directory."""

    def load_model(self, trial):
        """Not used: the search reads the models from the run directory."""


def make_tuner(run_path, log=print, progress=None) -> SampleTuner:
    """The KerasTuner tuner of a run's sample fine-tuning (``RUN/tuner/samples``).

    Its oracle follows the run's ``sampling`` setting (``even``: the evenly
    spaced path counts in order; ``adaptive``: ``AdaptiveOracle``).

    Args:
        run_path: The run directory, with a trained ``supernet.keras``.
        log: Progress printer.
        progress: A ``mpath_tf.progress.Progress`` for steps and epochs.

    Returns:
        The tuner; ``tuner.search(verbose=0)`` runs (or resumes) the trials.
    """
    return SampleTuner(run_path, log=log, progress=progress)
