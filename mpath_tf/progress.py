"""Progress of a search: phase, step k of n, epoch and time left.

On a terminal, one status line is rewritten in place
(``[sample fine-tuning] 3/10 (16 paths) epoch 4/10, about 0:42 left``) and
messages print above it. Elsewhere (a log file, CI) it degrades to plain
lines: every message, the start of every step, and an epoch line at most
every ``interval_s`` seconds. ``quiet`` prints nothing.
"""

from __future__ import annotations

import sys
import time

import keras


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Shows where a search is and how long it has left.

    Args:
        stream: Where to write (default ``sys.stderr``).
        live: Rewrite one status line in place (default: when ``stream`` is a terminal).
        quiet: Print nothing.
        interval_s: Least time between two epoch lines in plain mode.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(out, live=False)
        >>> p.phase("one-shot training", steps=1, epochs=2)
        >>> p.log("hello")
        >>> out.getvalue().splitlines()
        ['[one-shot training] 1 step x 2 epochs', 'hello']
    """

    def __init__(self, stream=None, live: bool | None = None, quiet: bool = False,
                 interval_s: float = 15.0):
        self.stream = stream or sys.stderr
        self.live = (hasattr(self.stream, "isatty") and self.stream.isatty()) if live is None \
            else live
        self.quiet = quiet
        self.interval_s = interval_s
        self.name, self.steps, self.epochs = "", 1, 1
        self.step_index, self.label = 0, ""
        self.epochs_done = 0
        self.started = time.monotonic()
        self.last_line = 0.0
        self.status = ""

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        if self.live and self.status:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.live and self.status:
            self.stream.write(self.status)
        self.stream.flush()

    def log(self, message: str) -> None:
        """A message (the search's log lines)."""
        self._write(message)

    def phase(self, name: str, steps: int, epochs: int) -> None:
        """A phase of ``steps`` trainings of ``epochs`` epochs each begins."""
        self.name, self.steps, self.epochs = name, max(steps, 1), max(epochs, 1)
        self.step_index, self.label, self.epochs_done = 0, "", 0
        self.started = time.monotonic()
        self._write(f"[{name}] {steps} step{'s' if steps != 1 else ''} x {epochs} epochs")

    def step(self, index: int, label: str) -> None:
        """Step ``index`` (1-based) of the phase begins."""
        self.step_index, self.label = index, label
        if not self.live:
            self._write(f"[{self.name}] {index}/{self.steps} ({label})")

    def epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) of the current step finished."""
        self.epochs_done += 1
        total = self.steps * self.epochs
        done = (self.step_index - 1) * self.epochs + epoch if self.step_index else epoch
        elapsed = time.monotonic() - self.started
        left = elapsed / self.epochs_done * max(total - done, 0)
        step = f" {self.step_index}/{self.steps} ({self.label})" if self.step_index else ""
        text = f"[{self.name}]{step} epoch {epoch}/{self.epochs}, about {_duration(left)} left"
        if self.quiet:
            return
        if self.live:
            self.status = text
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif time.monotonic() - self.last_line >= self.interval_s or done == total:
            self.last_line = time.monotonic()
            self._write(text)

    def done(self) -> None:
        """Clear the status line."""
        if self.live and self.status and not self.quiet:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.status = ""

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that reports every finished epoch."""
        progress = self

        class _Epochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                progress.epoch(epoch + 1)

        return _Epochs()
