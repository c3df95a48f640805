"""Training and evaluation helpers shared by one-shot training and fine-tuning.

Adam with sparse categorical cross-entropy, as in the paper. One-shot training
keeps the weights of the epoch with the best validation accuracy (the paper
selects the best model on the validation set); fine-tuning keeps the last epoch.
"""

from __future__ import annotations

import keras
import numpy as np

from mpath_tf.data import Dataset


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
            appended to it (a learning curve, see ``mpath_tf.curves``).
        checkpoint_dir: If given, the weights and optimizer state are saved
            there atomically after every epoch (``EpochCheckpoint``), and a
            training killed earlier resumes from its last finished epoch.
        callbacks: More Keras callbacks (for example ``Progress.callback()``).

    Returns:
        Validation accuracy of the weights the model ends with.

    Raises:
        ValueError: If ``epochs`` < 1.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    compile_model(model, learning_rate)
    checkpoint = EpochCheckpoint(checkpoint_dir)
    start = checkpoint.restore(model)
    if start < epochs:
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            initial_epoch=start,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=[checkpoint, *(callbacks or [])],
            verbose=verbose,
        )
    if keep_best and checkpoint.best_weights is not None:
        model.set_weights(checkpoint.best_weights)
    if history is not None:
        history.extend(checkpoint.curve)
    return accuracy(model, data.x_val, data.y_val)


class EpochCheckpoint(keras.callbacks.Callback):
    """Remembers the best epoch's weights and, with a folder, makes training resumable.

    After every epoch it records the validation accuracy and keeps the
    weights of the best epoch. Given ``folder``, it also writes there,
    atomically and in this order: ``best.weights.h5`` (when the epoch is the
    best so far), ``latest.weights.h5`` (weights and optimizer state) and
    ``state.json`` (epochs finished, accuracy curve, best epoch). ``restore``
    reads them back before training, so a process killed at any moment
    resumes from its last finished epoch and loses at most the one running.

    Args:
        folder: Checkpoint folder, or None to keep everything in memory.
    """

    def __init__(self, folder=None):
        super().__init__()
        from pathlib import Path

        self.folder = Path(folder) if folder is not None else None
        self.curve: list[float] = []
        self.best_epoch: int | None = None
        self.best_weights = None

    def restore(self, model) -> int:
        """Load the last finished epoch into ``model``; return the epoch to start at."""
        import json

        if self.folder is None or not (self.folder / "state.json").is_file():
            return 0
        state = json.loads((self.folder / "state.json").read_text())
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / "latest.weights.h5")
        self.curve = list(state["curve"])
        self.best_epoch = state["best_epoch"]
        if self.best_epoch is not None:
            model.load_weights(self.folder / "best.weights.h5")
            self.best_weights = model.get_weights()
            model.load_weights(self.folder / "latest.weights.h5")  # back to the last epoch
        return int(state["epochs_done"])

    def _save_weights(self, name: str) -> None:
        import os

        tmp = self.folder / f".{name}.tmp.weights.h5"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.folder / f"{name}.weights.h5")

    def on_epoch_end(self, epoch, logs=None):
        from mpath_tf.io import atomic_write_json

        value = float((logs or {}).get("val_accuracy", float("nan")))
        self.curve.append(value)
        improved = self.best_epoch is None or value > self.curve[self.best_epoch]
        if improved:
            self.best_epoch = len(self.curve) - 1
            self.best_weights = self.model.get_weights()
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if improved:
            self._save_weights("best")
        self._save_weights("latest")
        atomic_write_json(self.folder / "state.json", {
            "epochs_done": epoch + 1, "curve": self.curve, "best_epoch": self.best_epoch})


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))
