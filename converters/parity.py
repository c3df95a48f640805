"""Parity check of an exported ``.tflite`` file against its Keras model.

``verify`` runs the file in the LiteRT interpreter and the Keras model on the
same held-out examples and holds the differences to the bounds of the
quantization scheme (attributes of the scheme objects in
``converters.quantization``, explained there):

=========  ==============================================================
float32    largest absolute difference <= 1e-5
float16    every output within 1e-3 + 1e-3 * |Keras output| (the
           ``np.allclose`` form, atol = rtol = 1e-3)
dynamic    largest absolute difference <= 1e-1
int8       test accuracy >= 99% of the Keras model's when labels are given
           (MLPerf Tiny's and Mobile's rule); top-1 agreement >= 97% (below:
           a broken calibration); output differences reported, not gated
int16x8    as int8
=========  ==============================================================

Every number is reported whether or not it is bounded, so a user sees the
largest int8 difference too. A non-finite output (NaN or inf) in either the
Keras model or the file fails every scheme: NaN compares false against any
bound, so it is checked first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from converters.quantization import Float32
from converters.tflite import load_interpreter, run_tflite

# Top-1 margin (probability points) below which an example is a near-tie:
# rounding may flip its class without anything being wrong.
CONFIDENT_MARGIN = 0.1


@dataclass(frozen=True)
class Verification:
    """How closely a ``.tflite`` file reproduces its Keras model.

    Attributes:
        quantization: Scheme name.
        examples: Number of examples compared.
        max_abs_diff: Largest absolute difference of any output value.
        max_excess: Largest ``|diff| - rtol * |Keras output|`` (the quantity
            bounded by the scheme's ``max_abs_diff`` when it sets ``rtol``).
        p99_abs_diff: 99th percentile of the absolute differences of all output values.
        mean_abs_diff: Mean absolute difference.
        agreement: Fraction of examples with the same top-1 class.
        near_ties: Examples whose Keras top-1 leads by less than ``CONFIDENT_MARGIN``.
        output_step: The output's quantization step (int8 files; else None).
        keras_accuracy: Keras top-1 accuracy (None without labels).
        tflite_accuracy: LiteRT top-1 accuracy (None without labels).
        bounds: The scheme's bounds, by name.
        failures: One line per bound that does not hold (empty: passed).
    """

    quantization: str
    examples: int
    max_abs_diff: float
    max_excess: float
    p99_abs_diff: float
    mean_abs_diff: float
    agreement: float
    near_ties: int
    output_step: float | None = None
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    bounds: dict = field(default_factory=dict)
    failures: tuple = ()

    @property
    def passed(self) -> bool:
        """True when every bound of the scheme holds."""
        return not self.failures

    def to_dict(self) -> dict:
        """The fields plus ``passed``, JSON-ready."""
        return {**self.__dict__, "failures": list(self.failures), "passed": self.passed}

    def summary(self) -> str:
        """One line with the numbers that the bounds apply to."""
        parts = [f"{self.quantization}: max |diff| {self.max_abs_diff:.2e}",
                 f"p99 {self.p99_abs_diff:.2e}"]
        if self.output_step:
            parts.append(f"p99 {self.p99_abs_diff / self.output_step:.2f} output steps (not gated)")
        parts.append(f"top-1 agreement {self.agreement:.4f}")
        if self.keras_accuracy is not None:
            parts.append(f"accuracy {self.keras_accuracy:.4f} -> {self.tflite_accuracy:.4f}")
        return ", ".join(parts) + (" [FAILED: " + "; ".join(self.failures) + "]"
                                    if self.failures else " [passed]")


def output_step(path: str | os.PathLike) -> float | None:
    """The quantization step of an int8 model's output (None for float models).

    With float32 I/O the output comes from a DEQUANTIZE of an int8 tensor:
    its scale is the step. With int8 I/O it is the output tensor's own scale.
    """
    interpreter = load_interpreter(path)
    output = interpreter.get_output_details()[0]
    scale = output["quantization"][0]
    if scale:
        return float(scale)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if op["op_name"] == "DEQUANTIZE" and output["index"] in list(op["outputs"]):
            source = tensors[op["inputs"][0]]
            if np.dtype(source["dtype"]) == np.int8:
                return float(source["quantization"][0])
    return None


def compare_outputs(expected: np.ndarray, got: np.ndarray, quantization=None,
                    labels: np.ndarray | None = None, step: float | None = None) -> Verification:
    """Compare Keras outputs with ``.tflite`` outputs on the same examples.

    Args:
        expected: Keras outputs (probabilities), (batch, classes).
        got: LiteRT outputs for the same inputs.
        quantization: The scheme used for export (sets the bounds).
        labels: True classes, for the accuracy-drop bound (optional).
        step: The output's quantization step (``output_step``), for int8.

    Returns:
        A ``Verification``; check ``.passed``.
    """
    quantization = quantization or Float32()
    bounds = quantization.parity_bounds()
    diff = np.abs(np.asarray(got, "float64") - np.asarray(expected, "float64"))
    same = got.argmax(-1) == expected.argmax(-1)
    top2 = np.sort(expected, axis=-1)[:, -2:]
    confident = (top2[:, 1] - top2[:, 0]) >= CONFIDENT_MARGIN
    accuracy = {}
    if labels is not None:
        accuracy = {"keras_accuracy": float(np.mean(expected.argmax(-1) == labels)),
                    "tflite_accuracy": float(np.mean(got.argmax(-1) == labels))}
    numbers = dict(
        quantization=quantization.name,
        examples=int(len(diff)),
        max_abs_diff=float(diff.max()),
        max_excess=float(np.max(diff - bounds.get("rtol", 0.0) * np.abs(expected))),
        p99_abs_diff=float(np.quantile(diff, 0.99)),
        mean_abs_diff=float(diff.mean()),
        agreement=float(np.mean(same)),
        near_ties=int(np.sum(~confident)),
        output_step=step,
        **accuracy,
    )
    failures = []
    for what, values in (("Keras model", expected), ("file", got)):
        bad = int(np.sum(~np.isfinite(np.asarray(values, "float64"))))
        if bad:
            failures.append(f"the {what} gives {bad} non-finite output values (NaN or inf)")
    for name, bound in bounds.items():
        if name == "max_abs_diff" and numbers["max_excess"] > bound:
            rtol = f" + {bounds['rtol']:g} * |output|" if bounds.get("rtol") else ""
            failures.append(f"largest difference {numbers['max_abs_diff']:.2e} > {bound:g}{rtol}")
        elif name == "p99_output_steps":
            steps = numbers["p99_abs_diff"] / (step or 1 / 256)
            if steps > bound:
                failures.append(f"99th percentile difference {steps:.2f} output steps > {bound:g}")
        elif name == "min_agreement" and numbers["agreement"] < bound:
            failures.append(f"top-1 agreement {numbers['agreement']:.4f} < {bound:g} (the "
                            "calibration is broken: check the representative data)")
        elif name == "min_relative_accuracy" and accuracy:
            keras_accuracy, tflite_accuracy = accuracy["keras_accuracy"], accuracy["tflite_accuracy"]
            if tflite_accuracy < bound * keras_accuracy:
                failures.append(f"accuracy {tflite_accuracy:.4f} < {bound:.0%} of the Keras "
                                f"model's {keras_accuracy:.4f}")
    return Verification(**numbers, bounds=bounds, failures=tuple(failures))


def verify(path: str | os.PathLike, model, x: np.ndarray, quantization=None,
           labels: np.ndarray | None = None, expected: np.ndarray | None = None) -> Verification:
    """Run the ``.tflite`` file and the Keras model on ``x`` and compare.

    Args:
        path: The exported file.
        model: The Keras model it came from.
        x: Held-out examples to compare on.
        quantization: The scheme used for export (sets the bounds).
        labels: True classes of ``x`` (enables the int8 accuracy-drop bound).
        expected: The Keras outputs on ``x`` if already computed (several files
            of one model are then checked against one prediction).

    Returns:
        A ``Verification``; check ``.passed``.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from mpath_tf import build_mlp
        >>> from converters import export_tflite
        >>> model = build_mlp((4,), 2, 2, 3)
        >>> path = export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "m.tflite")
        >>> verify(path, model, np.ones((8, 4), "float32")).passed
        True
    """
    if expected is None:
        expected = np.asarray(model.predict(x, batch_size=1024, verbose=0))
    return compare_outputs(expected, run_tflite(path, x), quantization, labels,
                           output_step(path))
