"""The exception hierarchy of mpath-tf.

Each class says how far a failure reaches, so callers can decide what to keep:

- ``ConfigError``: a bad setting or argument; the whole run stops (CLI exit 2).
- ``DataError``: a dataset that is missing, corrupt or malformed (CLI exit 2).
- ``RunDirError``: a run directory that is missing, incomplete or from another
  format version (CLI exit 2). ``DamagedFileError``, one of them, names a
  file that cannot be read back (garbage, truncated, checksum mismatch).
- ``TargetError``: a benchmark target (board, phone) that cannot be reached or
  used; that target stops, results measured before are kept (CLI exit 2).
- ``ClusterError``: a distributed training cluster that cannot be formed
  (the chief cannot be reached); the chief's checkpoints are kept (CLI exit 2).
- ``RuntimeFailure``: something failed while the run was going, through no
  fault of the input (CLI exit 1, the cause named); finished steps are kept.
  ``TrainingError`` (a training diverged) and ``WorkerError`` (a worker
  process died or was lost, a sample or measurement did not finish) are two.
- ``ModelError``: one model that a target cannot load or run (corrupt file,
  wrong input shape, runtime crash); it is recorded as a failed row and the
  benchmark goes on with the next model.

All of them derive from ``MpathError`` and from ``ValueError`` so that code
written against plain Python conventions still catches them.
"""

from __future__ import annotations


class MpathError(ValueError):
    """Base class of every error mpath-tf raises on purpose."""


class ConfigError(MpathError):
    """A setting or argument is invalid; the run cannot start."""


class DataError(MpathError):
    """A dataset cannot be loaded as asked."""


class RunDirError(MpathError):
    """A run directory is missing, incomplete, or from another version."""


class DamagedFileError(RunDirError):
    """A file mpath-tf wrote (or reads) cannot be read back: truncated,
    garbage, or its checksum does not match.

    Args:
        path: The file.
        reason: What is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged ({reason})")


class TargetError(MpathError):
    """A benchmark target cannot be reached or used; that target stops."""


class RuntimeFailure(MpathError):
    """A failure at run time, not a problem with the input: the run stops
    (CLI exit 1) and what it finished is kept."""


class TrainingError(RuntimeFailure):
    """A training diverged (its loss is no longer finite); the run stops."""


class WorkerError(RuntimeFailure):
    """A worker process died or was lost, or a step it ran did not finish."""


class ModelError(MpathError):
    """One model cannot be loaded or run on a target; only that model fails."""


class ClusterError(MpathError):
    """A ``tf.distribute`` cluster cannot be formed or lost a worker; the
    chief's checkpoints are kept, so restarting every worker resumes."""
