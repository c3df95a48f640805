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
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.errors import ConfigError, DamagedFileError, RunDirError
from mpath_tf.storage import (atomic_save_model, atomic_write_json, atomic_write_record, library_versions, read_json, set_aside)
from mpath_tf.core.saving import load_model
from mpath_tf.pipeline.results import SearchResults

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
        self.notices: list[str] = []  # repairs made on opening, for the run's log

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
            run = cls.open(path, repair=True)
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
    def open(cls, path: str | os.PathLike, repair: bool = False) -> "RunDir":
        """Open an existing run directory.

        Args:
            path: The run directory.
            repair: The caller is the run's writer (it holds the lock): a
                damaged ``state.json`` is set aside and the run starts from
                its files again (``notices`` says so). Readers get an error.

        Raises:
            RunDirError: If it is missing, not a run, from another format
                version, or its ``run.json`` (or, for a reader, its
                ``state.json``) is damaged.
        """
        path = Path(path)
        meta_path = path / "run.json"
        if not meta_path.is_file():
            raise RunDirError(
                f"{path} is not an mpath-tf run directory (no run.json); pass the "
                "directory that `mpath-tf search` wrote."
            )
        try:
            meta = read_json(meta_path)
            if not isinstance(meta, dict):
                raise DamagedFileError(meta_path, "not a JSON object")
        except DamagedFileError as err:
            raise RunDirError(
                f"{err}: it holds the run's settings, so the run cannot be resumed or read; "
                "restore it from a copy, or start again with a new --run-dir.") from err
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise RunDirError(
                f"{path} was written by another mpath-tf version (format "
                f"{meta.get('format')!r} version {meta.get('format_version')!r}, this "
                f"version reads {FORMAT!r} version {FORMAT_VERSION}); rerun the search "
                "with this version."
            )
        try:
            config = SearchConfig.from_dict(meta["settings"])
        except (KeyError, TypeError, ValueError) as err:
            raise RunDirError(
                f"{meta_path} is damaged (its settings cannot be read: {err}); restore it from "
                "a copy, or start again with a new --run-dir.") from err
        notices = []
        state_path = path / "state.json"
        try:
            # A run killed right after run.json was written has no state yet.
            state = read_json(state_path) if state_path.exists() else _empty_state()
            if not isinstance(state, dict) or not {"supernet", "samples", "final"} <= set(state):
                raise DamagedFileError(state_path, "not a run state")
        except DamagedFileError as err:
            if not repair:
                raise RunDirError(f"{err}; run `mpath-tf search --run-dir {path}` with the "
                                  "run's settings to repair it.") from err
            set_aside(state_path)
            state = _empty_state()
            notices.append(f"{err}: set aside as state.json.damaged; the run starts again "
                           "from its files (finished samples are kept)")
        run = cls(path, config, state, meta)
        run.notices = notices
        return run

    def done_model(self, record, path: Path, log, what: str) -> object | None:
        """The model of a step this run finished: loaded when the step is
        recorded (``record`` not None) and its file exists, else None (the
        caller computes it); a damaged file is set aside and None returned.

        Args:
            record: The step's record in ``state`` (None: not done).
            path: The step's model file.
            log: Message printer.
            what: The step, as the "done earlier" message names it.
        """
        if record is None or not path.is_file():
            return None
        log(f"{what}: done earlier, loading {path.name}")
        return self.load_or_set_aside(path, log)

    def finish_model(self, model, path: Path, records: dict, key: str, record: dict) -> None:
        """Save a step's model (atomically), then record the step as done in
        ``records[key]`` and save the state: a record always has its file."""
        atomic_save_model(model, path)
        records[key] = record
        self.save_state()

    def load_or_set_aside(self, path: Path, log) -> object | None:
        """Load a model this run wrote, or, if it is damaged, set it aside
        (``<name>.damaged``), say so and return None: the caller computes it again."""
        try:
            return load_model(path)
        except DamagedFileError as err:
            set_aside(path)
            log(f"  {err}: set aside as {path.name}.damaged; computing it again")
            return None

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
        """Write ``state.json`` atomically, with its checksum."""
        atomic_write_record(self.path / "state.json", self.state)

    @property
    def supernet_path(self) -> Path:
        return self.path / "supernet.keras"

    def model_path(self, paths: int) -> Path:
        return self.path / "models" / f"paths-{paths}.keras"

    def sample_path(self, paths: int) -> Path:
        """Where the sample trial of ``paths`` writes its result (JSON)."""
        return self.path / "samples" / f"paths-{paths}.json"

    def results(self) -> dict:
        """The content of ``results.json`` (the finished search), read through
        its schema (``mpath_tf.pipeline.results.SearchResults``).

        Raises:
            RunDirError: The search has not finished.
        """
        path = self.path / "results.json"
        if not path.is_file():
            raise RunDirError(f"{self.path} has no results.json: the search has not finished; "
                              "run `mpath-tf search` on it again to finish it.")
        try:
            return SearchResults.read(path).to_dict()
        except DamagedFileError as err:
            raise RunDirError(f"{err}; rerun `mpath-tf search --run-dir {self.path}` with the "
                              "run's settings to write it again.") from err

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
