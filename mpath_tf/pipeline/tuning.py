"""Sample fine-tuning as KerasTuner trials: resumable, and distributable.

Each sampled path count is one KerasTuner trial of an oracle over the
path counts ("what to try next" is KerasTuner's oracle; "run one trial" is
``SampleTuner.run_trial``; both in ``mpath_tf.pipeline.tuners``). The oracle's state lives in ``RUN/tuner/`` and
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
from mpath_tf.pipeline.rundir import RunDir

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
        raise ConfigError(f"`workers` must be >= 1. Received: workers={workers}")
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
    from mpath_tf.pipeline.tuners import make_tuner  # KerasTuner, TensorFlow: in the process

    argv = sys.argv[1:] if argv is None else argv
    tuner = make_tuner(RunDir.open(argv[0]).path, log=lambda m: print(m, flush=True))
    tuner.search(verbose=0)


if __name__ == "__main__":
    main()
