"""The run directory: settings, versions, resumable state and artifacts.

Layout::

    run.json          format version, settings, class names, library versions (written once)
    state.json        finished steps and their numbers (rewritten after each step)
    supernet.keras    the one-shot trained supernet
    models/paths-<b>.keras   fine-tuned derived models
    log.txt           every message the search printed, with its time (appended)
    results.json, results.csv, results.png   written last: the run is complete
    model.keras, model_float32.tflite, model_int8.tflite   the chosen model

Every file is written atomically, so an interrupted run leaves only complete
files and ``state.json`` never claims a step whose file is missing.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from mpath_tf.config import SearchConfig
from mpath_tf.errors import ConfigError, RunDirError
from mpath_tf.io import atomic_write_json, library_versions, load_model

FORMAT = "mpath-tf-run"
FORMAT_VERSION = 1
LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # run directories this process has locked -> descriptor


def _refuse_foreign(path: Path) -> None:
    """Refuse a directory that holds files but no run: it is not ours to write."""
    if (path.is_dir() and not (path / "run.json").exists()
            and any(p.name != LOCK_FILE for p in path.iterdir())):
        raise RunDirError(f"{path} exists, is not empty and holds no run.json; choose an "
                          "empty or new --run-dir.")


@contextlib.contextmanager
def lock_run_dir(path: str | os.PathLike) -> Iterator[None]:
    """Hold the run directory's lock (``RUN/.lock``) for the ``with`` block.

    An OS file lock (``flock``): the kernel releases it when the process
    ends, however it ends, so a killed run never leaves a stale lock. The
    file records the holder's PID, host and start time for the message a
    second process gets. Re-entrant within one process.

    Args:
        path: The run directory (created if missing).

    Raises:
        RunDirError: Another process holds the lock, or the directory
            cannot be written.

    Example:
        >>> import tempfile
        >>> with lock_run_dir(tempfile.mkdtemp()):
        ...     pass
    """
    path = Path(path).resolve()
    if path in _held:
        yield
        return
    _refuse_foreign(path)  # leave no lock file in a directory that is not a run's
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunDirError(f"Cannot write the run directory {path}: {err.strerror or err}. "
                          "Choose a writable --run-dir.") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{path} is in use by another mpath-tf process ({holder}); wait for it to "
            "finish (or stop it: a stopped run resumes where it was), or choose another "
            "--run-dir.") from None
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0)
    _held[path] = fd
    try:
        yield
    finally:
        del _held[path]
        os.close(fd)  # releases the lock


def _empty_state() -> dict:
    return {"supernet": None, "samples": {}, "final": {}}


class RunDir:
    """One search's directory. Use ``RunDir.create`` or ``RunDir.open``.

    Args:
        path: The directory.
        config: The run's settings.
        state: The run's state (see ``_empty_state``).
    """

    def __init__(self, path: Path, config: SearchConfig, state: dict, meta: dict | None = None):
        self.path = Path(path)
        self.config = config
        self.state = state
        self.meta = meta or {}

    @classmethod
    def create_or_resume(cls, path: str | os.PathLike, config: SearchConfig,
                         classes: list | None = None) -> "RunDir":
        """Open ``path`` to resume it, or start a new run there.

        Args:
            path: The run directory.
            config: The run's settings.
            classes: The dataset's class names by index, recorded in
                ``run.json`` (``classes``); a resumed run must see the same.

        Raises:
            ConfigError: If the directory holds a run with different settings
                or data of other classes.
            RunDirError: If it holds something that is not a run of this version,
                or cannot be written.
        """
        path = Path(path)
        if (path / "run.json").exists():
            run = cls.open(path)
            differing = config.differences(run.config)
            if differing:
                details = ", ".join(
                    f"{name}={getattr(config, name)!r} (run has {getattr(run.config, name)!r})"
                    for name in differing
                )
                raise ConfigError(
                    f"{path} holds a run with other settings: {details}. Resume it with "
                    "its own settings, or choose a new --run-dir."
                )
            recorded = run.meta.get("classes")
            if classes is not None and recorded is not None and recorded != list(classes):
                raise ConfigError(
                    f"{path} was trained on data with the classes {recorded[:10]}, but the data "
                    f"now has {list(classes)[:10]}: the data file changed. Resume with the "
                    "original data, or choose a new --run-dir.")
            run.config = config  # take the new selection settings and data_dir
            return run
        _refuse_foreign(path)
        try:
            (path / "models").mkdir(parents=True, exist_ok=True)
            run = cls(path, config, _empty_state())
            atomic_write_json(
                path / "run.json",
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "settings": config.to_dict(),
                    "classes": None if classes is None else list(classes),
                    "versions": library_versions(),
                },
            )
            run.save_state()
        except OSError as err:
            raise RunDirError(
                f"Cannot write the run directory {path}: {err.strerror or err}. Choose a "
                "writable --run-dir."
            ) from err
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """Open an existing run directory.

        Raises:
            RunDirError: If it is missing, not a run, or from another format version.
        """
        path = Path(path)
        meta_path = path / "run.json"
        if not meta_path.is_file():
            raise RunDirError(
                f"{path} is not an mpath-tf run directory (no run.json); pass the "
                "directory that `mpath-tf search` wrote."
            )
        state_path = path / "state.json"
        try:
            meta = json.loads(meta_path.read_text())
            # A run killed right after run.json was written has no state yet.
            state = json.loads(state_path.read_text()) if state_path.exists() else _empty_state()
        except (OSError, json.JSONDecodeError) as err:
            raise RunDirError(f"{path}: cannot read run.json/state.json ({err}).") from err
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise RunDirError(
                f"{path} was written by another mpath-tf version (format "
                f"{meta.get('format')!r} version {meta.get('format_version')!r}, this "
                f"version reads {FORMAT!r} version {FORMAT_VERSION}); rerun the search "
                "with this version."
            )
        return cls(path, SearchConfig.from_dict(meta["settings"]), state, meta)

    def logger(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log``, which also appends each message with its UTC time to ``log.txt``.

        The log is the run's own record of what each invocation did (a
        resumed run says which steps were done earlier), kept apart from
        TensorFlow's output.
        """
        def log_and_keep(message: str) -> None:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                with open(self.path / "log.txt", "a", encoding="utf-8") as f:
                    f.write(f"{stamp} {message}\n")
            except OSError:
                pass  # the log is a convenience; a full disk shows in the real writes
            log(message)

        return log_and_keep

    def save_state(self) -> None:
        """Write ``state.json`` atomically."""
        atomic_write_json(self.path / "state.json", self.state)

    @property
    def supernet_path(self) -> Path:
        return self.path / "supernet.keras"

    def model_path(self, paths: int) -> Path:
        return self.path / "models" / f"paths-{paths}.keras"

    def results(self) -> dict:
        """The content of ``results.json`` (the finished search).

        Raises:
            RunDirError: The search has not finished.
        """
        path = self.path / "results.json"
        if not path.is_file():
            raise RunDirError(f"{self.path} has no results.json: the search has not finished; "
                              "run `mpath-tf search` on it again to finish it.")
        return json.loads(path.read_text())

    def path_table(self, command: str) -> dict:
        """``results()`` of a ``--method rank`` run, whose rows are path counts.

        Raises:
            RunDirError: The search has not finished.
            ConfigError: The run used another method (its results hold one model).
        """
        results = self.results()
        method = results.get("method", "rank")
        if method != "rank":
            raise ConfigError(
                f"`mpath-tf {command}` reads the table of path counts of a --method rank run; "
                f"{self.path} is a --method {method} run: its chosen model is model.keras "
                "(model_float32.tflite, model_int8.tflite) and results.json holds its numbers.")
        return results

    def load_supernet(self):
        """Load the trained supernet.

        Raises:
            RunDirError: If one-shot training has not finished in this run.
        """
        if self.state.get("supernet") is None or not self.supernet_path.is_file():
            raise RunDirError(
                f"{self.path} has no trained supernet yet; finish the search with "
                f"`mpath-tf search --run-dir {self.path}` (same settings) first."
            )
        return load_model(self.supernet_path)
