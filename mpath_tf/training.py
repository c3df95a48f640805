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

    Returns:
        Validation accuracy of the weights the model ends with.

    Raises:
        ValueError: If ``epochs`` < 1.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    compile_model(model, learning_rate)
    callbacks = []
    if keep_best:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=epochs + 1,  # never stop early; only remember the best
                restore_best_weights=True,
            )
        )
    fitted = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    if history is not None:
        history.extend(float(a) for a in fitted.history["val_accuracy"])
    return accuracy(model, data.x_val, data.y_val)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))
