"""Training and evaluation helpers shared by one-shot training and fine-tuning.

Adam with sparse categorical cross-entropy, as in the paper. Training keeps
the weights of the epoch with the best validation accuracy (the paper selects
the best model on the validation set). A fine-tuning also scores the model it
starts from (``score_start``), so it never ends below the derived model.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import keras
import numpy as np

from mpath_tf.data import Dataset
from mpath_tf.errors import DamagedFileError, TrainingError
from mpath_tf.storage import atomic_write_record, read_json, set_aside


# Training examples whose statistics ``train(recalibrate=True)`` gives the
# batch normalizations (one forward pass).
RECALIBRATION_ROWS = 2048


def compile_model(
    model: keras.Model, learning_rate: float = 1e-3, jit_compile: bool | str = "auto"
) -> keras.Model:
    """Compile ``model`` with Adam and sparse categorical cross-entropy.

    Args:
        model: A classifier with softmax outputs.
        learning_rate: Adam learning rate.
        jit_compile: XLA-compile the train step (Keras's ``jit_compile``).

    Returns:
        The same model, compiled.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def train(
    model: keras.Model,
    data: Dataset,
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    keep_best: bool = True,
    verbose: int = 0,
    history: list | None = None,
    checkpoint_dir=None,
    callbacks: list | None = None,
    score_start: bool = False,
    summary: dict | None = None,
    log=None,
    recalibrate: bool = False,
) -> float:
    """Train ``model`` on ``data.x_train`` and return its validation accuracy.

    Args:
        model: The model to train (compiled here).
        data: The dataset; its validation split scores each epoch.
        epochs: Number of epochs (>= 1).
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        keep_best: Restore the weights of the best validation epoch at the end.
        verbose: Keras verbosity.
        history: If given, the validation accuracy of every epoch is
            appended to it (a learning curve, see ``mpath_tf.pipeline.curves``).
        checkpoint_dir: If given, the weights and optimizer state are saved
            there atomically after every epoch (``EpochCheckpoint``), and a
            training killed earlier resumes from its last finished epoch.
        callbacks: More Keras callbacks (for example ``Progress.callback()``).
        score_start: Score the weights before the first epoch too (as
            "epoch 0"), so with ``keep_best`` the model never ends below
            where it started (fine-tuning a derived model).
        summary: If given, receives ``start_accuracy`` (with ``score_start``)
            and ``best_epoch`` (0: the start, k: after epoch k).
        log: Where notices go (a damaged checkpoint set aside); default stderr.
        recalibrate: At the end, set the batch normalizations' statistics
            from the first ``RECALIBRATION_ROWS`` training examples
            (``recalibrate_batch_norms``; no-op without batch normalization).

    Returns:
        Validation accuracy of the weights the model ends with.

    Raises:
        ValueError: If ``epochs`` < 1.
        TrainingError: The loss stopped being finite (the epoch is not
            checkpointed; earlier epochs are).
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    compile_model(model, learning_rate)
    checkpoint = EpochCheckpoint(checkpoint_dir)
    start_weights = model.get_weights() if checkpoint_dir is not None else None
    try:
        start = checkpoint.restore(model)
    except DamagedFileError as err:  # set aside: train from the start, as if never begun
        (log or _stderr)(f"  checkpoint {err}: set aside as {checkpoint.folder.name}.damaged; "
                         "training again from the start")
        model.set_weights(start_weights)
        compile_model(model, learning_rate)  # a fresh optimizer
        checkpoint, start = EpochCheckpoint(checkpoint_dir), 0
    if score_start and start == 0 and checkpoint.best_value is None:
        checkpoint.set_start(model, accuracy(model, data.x_val, data.y_val))
    if start < epochs:
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            initial_epoch=start,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=[StopOnNonFinite(learning_rate), checkpoint, *(callbacks or [])],
            verbose=verbose,
        )
    if keep_best and checkpoint.best_weights is not None:
        model.set_weights(checkpoint.best_weights)
    if recalibrate:
        recalibrate_batch_norms(model, data.x_train[:RECALIBRATION_ROWS])
    if history is not None:
        history.extend(checkpoint.curve)
    if summary is not None:
        best = checkpoint.best_epoch
        summary.update(start_accuracy=checkpoint.start_value,
                       best_epoch=None if best is None else best + 1)
    return accuracy(model, data.x_val, data.y_val)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first epoch whose loss is NaN or infinite, before it is
    checkpointed, with what was tried and the usual causes.

    Args:
        learning_rate: The rate being used (named in the message).
    """

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = learning_rate

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"Training diverged: the loss became {loss} in epoch {epoch + 1} at learning "
                f"rate {self.learning_rate:g}. Usual causes: a learning rate too high (try "
                f"{self.learning_rate / 10:g}), or input features of huge scale with "
                "--no-normalize. Earlier finished steps are kept; start again with other "
                "settings in a new --run-dir.")


class EpochCheckpoint(keras.callbacks.Callback):
    """Remembers the best epoch's weights and, with a folder, makes training resumable.

    After every epoch it records the validation accuracy and keeps the
    weights of the best epoch (highest validation accuracy; among equal ones
    the lowest validation loss), or of the start (see ``set_start``). Given
    ``folder``, it also writes there, atomically and in this order:
    ``best.weights.h5`` (when the epoch is the best so far),
    ``latest.weights.h5`` (weights and optimizer state) and ``state.json``
    (epochs finished, accuracy curve, best epoch, best value). ``restore``
    reads them back before training, so a process killed at any moment
    resumes from its last finished epoch and loses at most the one running.

    Args:
        folder: Checkpoint folder, or None to keep everything in memory.
    """

    START = -1  # best_epoch of the weights training started from

    def __init__(self, folder=None):
        super().__init__()

        self.folder = Path(folder) if folder is not None else None
        self.curve: list[float] = []
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.best_loss: float | None = None  # validation loss of the best epoch
        self.start_value: float | None = None
        self.best_weights = None

    def restore(self, model) -> int:
        """Load the last finished epoch into ``model``; return the epoch to start at.

        Raises:
            DamagedFileError: The checkpoint (state or weights) cannot be read
                back; it has been set aside (``<folder>.damaged``), and the
                model and its optimizer may hold part of it (``train``
                starts them over).
        """
        if self.folder is None or not (self.folder / "state.json").is_file():
            return 0
        try:
            return self._restore(model)
        except Exception as err:  # JSON, checksum, h5py and shape errors alike
            if not isinstance(err, DamagedFileError):
                err = DamagedFileError(self.folder, f"{type(err).__name__}: {str(err)[:120]}")
            set_aside(self.folder)
            raise err

    def _restore(self, model) -> int:
        state = read_json(self.folder / "state.json")
        model.optimizer.build(model.trainable_variables)
        self.curve = list(state["curve"])
        self.best_epoch = state["best_epoch"]
        self.start_value = state.get("start_value")
        self.best_value = state.get("best_value")
        self.best_loss = state.get("best_loss")
        if self.best_value is None and self.best_epoch is not None:  # written before best_value
            self.best_value = self.curve[self.best_epoch]
        if self.best_epoch is not None:
            model.load_weights(self.folder / "best.weights.h5")
            self.best_weights = model.get_weights()
        if state["epochs_done"]:
            model.load_weights(self.folder / "latest.weights.h5")  # back to the last epoch
        return int(state["epochs_done"])

    def set_start(self, model, value: float) -> None:
        """The weights training starts from score ``value``: the best so far."""
        self.start_value = self.best_value = float(value)
        self.best_epoch = self.START
        self.best_weights = model.get_weights()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._save_weights("best", model)
            self._write_state(0)

    def _save_weights(self, name: str, model=None) -> None:
        tmp = self.folder / f".{name}.tmp.weights.h5"
        (model or self.model).save_weights(tmp, overwrite=True)
        os.replace(tmp, self.folder / f"{name}.weights.h5")

    def _write_state(self, epochs_done: int) -> None:
        atomic_write_record(self.folder / "state.json", {
            "epochs_done": epochs_done, "curve": self.curve, "best_epoch": self.best_epoch,
            "best_value": self.best_value, "best_loss": self.best_loss,
            "start_value": self.start_value})

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get("val_accuracy", float("nan")))
        loss = float((logs or {}).get("val_loss", float("nan")))
        self.curve.append(value)
        # Keras averages the metric in float32: a tie with the start's score
        # (computed in float64) must not count as an improvement. A tie in
        # accuracy is broken by the validation loss: on a small validation
        # split the accuracy saturates within a few epochs, and keeping the
        # first epoch that reached it would keep an undertrained model.
        improved = self.best_value is None or value > self.best_value + 1e-6 or (
            value >= self.best_value - 1e-6 and loss < (self.best_loss or float("inf")))
        if improved:
            self.best_epoch = len(self.curve) - 1
            self.best_value = max(value, self.best_value or value)
            self.best_loss = loss
            self.best_weights = self.model.get_weights()
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if improved:
            self._save_weights("best")
        self._save_weights("latest")
        self._write_state(epoch + 1)


def epochs_done(folder) -> int:
    """Epochs a killed training checkpointed in ``folder`` had finished (0:
    none, or a damaged checkpoint, which ``EpochCheckpoint.restore`` sets aside).

    Example:
        >>> import tempfile
        >>> epochs_done(tempfile.mkdtemp())
        0
    """
    try:
        return int(read_json(Path(folder) / "state.json")["epochs_done"])
    except (FileNotFoundError, DamagedFileError, KeyError, TypeError, ValueError):
        return 0


def recalibrate_batch_norms(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> int:
    """Set every batch normalization's moving mean and variance to the
    statistics of its inputs on ``x`` (a forward pass in training mode, the
    batches' means and variances averaged).

    A derived network's batch normalizations hold the supernet's statistics,
    but cutting membranes changes what reaches them; and a short training
    leaves moving averages far from the data (at momentum 0.99 a few hundred
    steps still carry the initial 0 and 1). Re-estimating them from the data
    is the usual fix (precise batch norm, or the subnet recalibration of
    one-shot architecture search).

    Args:
        model: A Keras model; its other layers run in training mode for the
            pass (dropout too), and nothing else is changed.
        x: Examples whose statistics to take (a few thousand are enough).
        batch_size: Examples per forward pass (bounds the memory it takes).

    Returns:
        How many batch normalizations were set.

    Example:
        >>> bn = keras.layers.BatchNormalization()
        >>> model = keras.Sequential([keras.Input((2,)), bn])
        >>> recalibrate_batch_norms(model, np.array([[1.0, 2.0], [3.0, 6.0]], "float32"))
        1
        >>> keras.ops.convert_to_numpy(bn.moving_mean).tolist()
        [2.0, 4.0]
    """
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in norms]
    try:
        for i, start in enumerate(range(0, len(x) if norms else 0, batch_size)):
            for bn in norms:  # moving = (i * moving + this batch's) / (i + 1): the average
                bn.momentum = i / (i + 1)
            model(np.asarray(x[start:start + batch_size], "float32"), training=True)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    return len(norms)

def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def top1(probabilities, labels) -> float:
    """Top-1 accuracy of class probabilities (batch, classes) against labels
    (batch,): the one definition every step, report and check uses.

    Example:
        >>> top1(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]))
        0.666...
    """
    return float(np.mean(np.argmax(np.asarray(probabilities), axis=-1) == np.asarray(labels)))


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return top1(model.predict(x, batch_size=batch_size, verbose=0), y)
