"""Sample fine-tuning as KerasTuner trials: resumable, and distributable.

Each sampled path count is one KerasTuner trial of a grid oracle over the
path counts ("what to try next" is KerasTuner's oracle; "run one trial" is
``SampleTuner.run_trial``). The oracle's state lives in ``RUN/tuner/`` and
KerasTuner writes it after every trial, so a killed search reloads it and
never runs a finished trial again (an interrupted trial goes back to the
queue, and its per-epoch checkpoint lets it continue where it stopped).

Distributed: KerasTuner's chief/worker mode. The chief runs the oracle as a
gRPC server (``KERASTUNER_TUNER_ID=chief``); each worker
(``KERASTUNER_TUNER_ID=tuner<i>``) asks it for trials at
``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT``, reads the supernet from the
shared run directory and writes its fine-tuned model and result there.
``run_distributed`` starts a chief and N workers on this machine and
restarts a worker that dies (with the same tuner ID, so the oracle hands the
new process the dead one's trial). The multi-machine recipe is in the README.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mpath_tf.errors import ConfigError, WorkerError
from mpath_tf.storage import atomic_save_model, atomic_write_record, read_json
from mpath_tf.pipeline.rundir import RunDir

PROJECT = "samples"


def sample_record_path(run_path, paths: int) -> Path:
    """Where one sample trial writes its result (JSON)."""
    return Path(run_path) / "samples" / f"paths-{paths}.json"


def _oracle(config):
    """The oracle of a run's settings: the evenly spaced path counts in order
    (``ListOracle``), or ``AdaptiveOracle`` (``config.sampling``)."""
    import keras_tuner as kt

    from mpath_tf.pipeline.steps import sample_path_counts

    objective = kt.Objective("val_accuracy", "max")
    if config.sampling == "adaptive":
        return _oracle_classes()[1](config.width, config.samples, objective)
    return _oracle_classes()[0](sample_path_counts(config.width, config.samples), objective)


def _oracle_classes():
    """``ListOracle`` and ``AdaptiveOracle``.

    Both decide the next path count from the saved trials alone (each
    ``trial_*/trial.json``), holding no state of their own: a search killed
    between KerasTuner's write of a trial and of ``oracle.json`` resumes
    with the same answer. (KerasTuner's ``GridSearchOracle`` keeps its
    order in memory only and crashed with ``KeyError`` on such a resume.)
    A path count counts as taken when its trial completed or is running on
    a live tuner; one left RUNNING by a killed process is handed out again.
    """
    import keras_tuner as kt
    from keras_tuner.engine.trial import TrialStatus

    class _PathOracle(kt.Oracle):
        def __init__(self, width, max_trials, objective):
            hp = kt.HyperParameters()
            hp.Int("paths", 1, max(width, 2))
            # max_trials=None: an orphaned RUNNING trial is one more trial
            # entry, so the trial count cannot be the stopping rule.
            super().__init__(objective=objective, max_trials=None, hyperparameters=hp,
                             allow_new_entries=False, tune_new_entries=False)
            self.width, self.wanted_trials = width, max_trials

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

    class ListOracle(_PathOracle):
        """The given path counts, in order."""

        def __init__(self, path_counts, objective):
            self.path_counts = [int(b) for b in path_counts]
            super().__init__(max(self.path_counts), len(self.path_counts), objective)

        def next_paths(self, done, running):
            return next((b for b in self.path_counts if b not in done and b not in running),
                        None)

    class AdaptiveOracle(_PathOracle):
        """The start set (``initial_path_counts``), then where the fitted
        accuracy curve is least certain (``next_path_count``); path counts
        being fine-tuned by other workers are skipped."""

        def next_paths(self, done, running):
            from mpath_tf.pipeline.sampling import initial_path_counts, next_path_count

            if len(done) + len(running) >= self.wanted_trials:
                return None
            start = [b for b in initial_path_counts(self.width) if b not in set(done) | running]
            return start[0] if start else next_path_count(done, self.width, exclude=running)

    return ListOracle, AdaptiveOracle


def _tuner_class():
    from keras_tuner.engine.base_tuner import BaseTuner

    class SampleTuner(BaseTuner):
        """Runs one sampled path count per trial (see the module docstring)."""

        def __init__(self, run_path, log=print, progress=None, **kwargs):
            self.run_path = Path(run_path)
            self.log = log
            self.progress = progress
            self.trials_begun = 0
            self._context = None
            config = RunDir.open(self.run_path).config
            super().__init__(oracle=_oracle(config), directory=str(self.run_path / "tuner"),
                             project_name=PROJECT, overwrite=False, **kwargs)

        def _load(self):
            if self._context is None:
                from mpath_tf.pipeline.steps import load_data

                run = RunDir.open(self.run_path)
                data = load_data(run.config)
                run.config = run.config.for_data(len(data.x_train))
                self._context = (run, run.load_supernet(), data)
            return self._context

        def run_trial(self, trial, *args, **kwargs):
            from keras_tuner.errors import FatalError

            # KerasTuner would count an error as a failed trial and try the next
            # one; a fine-tuning that fails is a real error, so stop (a worker
            # process exits and is restarted by run_distributed).
            try:
                return self._run_sample(trial)
            except Exception as err:
                raise FatalError(f"{type(err).__name__}: {err}") from err

        def _run_sample(self, trial):
            import shutil

            from mpath_tf.core.derivation import path_widths
            from mpath_tf.pipeline.steps import finetune
            from mpath_tf.training.loop import accuracy, epochs_done

            run, supernet, data = self._load()
            b = int(trial.hyperparameters.get("paths"))
            record = sample_record_path(run.path, b)
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

    return SampleTuner


def make_tuner(run_path, log=print, progress=None):
    """The KerasTuner tuner of a run's sample fine-tuning (``RUN/tuner/samples``).

    Its oracle follows the run's ``sampling`` setting (``even``: a grid over
    the evenly spaced path counts; ``adaptive``: ``AdaptiveOracle``).

    Args:
        run_path: The run directory, with a trained ``supernet.keras``.
        log: Progress printer.
        progress: A ``mpath_tf.progress.Progress`` for steps and epochs.

    Returns:
        The tuner; ``tuner.search(verbose=0)`` runs (or resumes) the trials.
    """
    return _tuner_class()(run_path, log=log, progress=progress)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(role_id: str, run_path: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "KERASTUNER_TUNER_ID": role_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    with open(log_path, "a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "mpath_tf.pipeline.tuning", str(run_path)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def run_distributed(run_path, workers: int, log=print, max_restarts: int = 3,
                    timeout_s: float | None = None) -> None:
    """Run the sample trials on a local chief and ``workers`` worker processes.

    A worker that exits with an error or is killed is started again with
    the same tuner ID (the oracle gives it back its unfinished trial), at
    most ``max_restarts`` times per worker.

    Args:
        run_path: The run directory (one-shot training finished).
        workers: Number of worker processes (>= 1).
        log: Progress printer.
        max_restarts: Restarts allowed per worker.
        timeout_s: Give up after this long (None: never).

    Raises:
        ConfigError: ``workers`` < 1, or a worker kept dying.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1. Received: workers={workers}")
    run_path = Path(run_path)
    logs = run_path / "tuner" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    chief = _process("chief", run_path, port, logs / "chief.log")
    processes = {f"tuner{i}": _process(f"tuner{i}", run_path, port, logs / f"tuner{i}.log")
                 for i in range(workers)}
    restarts = {name: 0 for name in processes}
    log(f"sample trials on a chief and {workers} worker(s), oracle on 127.0.0.1:{port}")
    started = time.monotonic()
    try:
        while processes:
            time.sleep(0.5)
            for name, process in list(processes.items()):
                code = process.poll()
                if code is None:
                    continue
                if code == 0:
                    del processes[name]
                    continue
                if restarts[name] >= max_restarts:
                    raise WorkerError(
                        f"Worker {name} died {restarts[name] + 1} times (last exit code {code}); "
                        f"see {logs / (name + '.log')}.")
                restarts[name] += 1
                log(f"  worker {name} died (exit code {code}); restarting it")
                processes[name] = _process(name, run_path, port, logs / f"{name}.log")
            if chief.poll() not in (None, 0):
                raise WorkerError(f"The tuner chief exited with code {chief.returncode}; see "
                                  f"{logs / 'chief.log'}.")
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise WorkerError(f"The distributed trials did not finish in {timeout_s} s.")
        chief.wait(timeout=120)
    finally:
        for process in [chief, *processes.values()]:
            if process.poll() is None:
                process.kill()
                process.wait()


def main(argv=None) -> None:
    """Entry point of a chief or worker process: ``python -m mpath_tf.pipeline.tuning RUN``."""
    argv = sys.argv[1:] if argv is None else argv
    tuner = make_tuner(RunDir.open(argv[0]).path, log=lambda m: print(m, flush=True))
    tuner.search(verbose=0)


if __name__ == "__main__":
    main()
