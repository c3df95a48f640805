"""A journal of benchmark results: JSON lines, rewritten atomically per row.

Each row is keyed by target, model sha256 and settings, so a killed benchmark
resumes where it stopped and never times a finished model again, and results
measured with other settings stay apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mpath_tf.errors import RunDirError
from mpath_tf.storage import atomic_write_text


def result_key(target: str, sha256: str, settings: dict) -> str:
    """The identity of one measurement: where, what, and how.

    Example:
        >>> result_key("local", "ab" * 32, {"threads": 1})[:6]
        'local|'
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{target}|{sha256}|{digest}"


class Journal:
    """Result rows in a ``.jsonl`` file.

    Args:
        path: The journal file; read if it exists.

    Raises:
        RunDirError: The file exists but a line is not JSON.

    Example:
        >>> import tempfile, pathlib
        >>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "latency.jsonl")
        >>> journal.add({"key": "k", "status": "ok"})
        >>> Journal(journal.path).get("k")["status"]
        'ok'
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._rows: dict[str, dict] = {}
        if self.path.exists():
            text = self.path.read_bytes().decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise RunDirError(
                        f"{self.path} line {number} is not JSON; fix or delete that line "
                        "(its model will be measured again)."
                    ) from None
                self._rows[row["key"]] = row

    def get(self, key: str) -> dict | None:
        """The row with this key, or None."""
        return self._rows.get(key)

    def add(self, row: dict) -> None:
        """Add (or replace) a row and rewrite the file atomically."""
        self._rows[row["key"]] = row
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self._rows.values()))

    def rows(self) -> list[dict]:
        """Every row, in the order first added."""
        return list(self._rows.values())
