"""Quantization schemes for TFLite export, one small object per scheme.

Each scheme configures a ``tf.lite.TFLiteConverter`` and carries the bounds
that ``converters.parity`` holds the exported file to (``parity_bounds``). Inputs and outputs of every
exported model stay float32 (except ``Int8(int8_io=True)``), so a caller feeds
the same arrays to every file; only weights (dynamic range) or weights and
activations (int8, int16x8) are quantized. Schemes whose activation ranges
are calibrated on representative data say so with ``calibrated = True``.

Quantization-aware training is in ``converters.qat``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from mpath_tf.errors import ConfigError


@dataclass(frozen=True)
class Float32:
    """No quantization: float32 weights and activations.

    Bound: the LiteRT kernels compute the same float32 maths as Keras in a
    different order, so every output (softmax probability) agrees to 1e-4.
    The rounding of a logit is about float32's epsilon times the sum of the
    magnitudes of its terms, which for trained models on unscaled features
    reaches 1e-5 of an output (a dense digits MLP: 1.14e-5 on one of 360
    outputs, the 99th percentile 5e-17); a wrong weight or op moves outputs
    by 1e-2 and more.
    """

    name = "float32"
    calibrated = False

    def parity_bounds(self) -> dict:
        return {"max_abs_diff": 1e-4}

    def configure(self, converter, representative_data) -> None:
        """Float32 needs no converter setting."""

    def get_config(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Float16:
    """float16 weights, float32 activations (LiteRT dequantizes the weights
    once at load, or XNNPACK computes in fp16 where the CPU has it).

    Bound: TensorFlow's converter tests hold float16 weight quantization to
    1e-3. Weight rounding (11-bit mantissa, relative error up to 4.9e-4 per
    weight) adds up over the layers, so the bound is taken in
    ``np.allclose`` form: every output within 1e-3 + 1e-3 * |Keras output|.
    (Measured on MNIST models: largest differences 1.25e-3-1.31e-3 on
    outputs near 0.5, 5e-4 elsewhere.)
    """

    name = "float16"
    calibrated = False

    def parity_bounds(self) -> dict:
        return {"max_abs_diff": 1e-3, "rtol": 1e-3}

    def configure(self, converter, representative_data) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]

    def get_config(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DynamicRange:
    """Dynamic-range quantization: int8 weights, float32 activations.

    Weights are stored as int8 with per-channel scales; activations are
    quantized on the fly. Bound: TensorFlow's converter tests hold
    dynamic-range models to 1e-1 of the float model's output; every output
    probability stays within that (measured on MNIST models: at most 0.038).
    """

    name = "dynamic"
    calibrated = False

    def parity_bounds(self) -> dict:
        return {"max_abs_diff": 1e-1}

    def configure(self, converter, representative_data) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def get_config(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Calibrated:
    """Shared by the schemes whose activation ranges are calibrated on
    ``num_samples`` examples of the training data, picked with ``seed``."""

    num_samples: int = 200
    seed: int = 0
    calibrated = True

    def __post_init__(self):
        if self.num_samples < 1:
            raise ConfigError(
                f"{self.name} calibration needs num_samples >= 1. "
                f"Received: num_samples={self.num_samples}"
            )

    def calibration_samples(self, representative_data, count: int | None = None) -> np.ndarray:
        """The examples that calibrate activation ranges.

        Args:
            representative_data: The training examples.
            count: How many to take (default ``num_samples``; at most all).

        Returns:
            ``count`` examples picked with ``seed``, in their original order.

        Raises:
            ConfigError: If there is no representative data.
        """
        if representative_data is None or len(representative_data) == 0:
            raise ConfigError(
                f"{self.name} quantization needs representative data to calibrate "
                "activation ranges: pass representative_data (CLI: --dataset)."
            )
        rng = np.random.default_rng(self.seed)
        count = min(count or self.num_samples, len(representative_data))
        picks = rng.choice(len(representative_data), size=count, replace=False)
        return np.asarray(representative_data, dtype="float32")[np.sort(picks)]

    def _calibrate(self, converter, representative_data, ops) -> None:
        """Set the converter's representative dataset and integer op set."""
        samples = self.calibration_samples(representative_data)

        def dataset():
            for example in samples:
                yield [example[None, ...]]  # (1, *input_shape)

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [ops]

    def get_config(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Int8(_Calibrated):
    """Full-integer post-training quantization: int8 weights and activations.

    Activation ranges are calibrated on ``num_samples`` examples of the
    representative data (the training set), taken with a fixed seed. Every
    op must have an int8 kernel (``TFLITE_BUILTINS_INT8``); the float32 input
    is quantized and the output dequantized inside the model.

    Gates, as MLPerf Tiny and MLPerf Mobile gate quantized models: the
    file's test accuracy is at least 99% of the Keras model's (relative;
    when labels are given), and its top-1 predictions agree with Keras on
    at least 97% of the examples (below that the calibration is broken, not
    a borderline example rounding the other way). Both figures are always
    reported. Output differences, also in steps of the output
    tensor's quantization (1/256 for a softmax), are reported but gate
    nothing: the logits are one int8 tensor, so at a near-tie a logit rounding
    error e moves a probability by about e/4, and on MNIST models the largest
    difference reaches 14-35 output steps (the 99th percentile 2-5) while
    top-1 agreement stays above 99.5% (docs/results.md, "Parity").

    Args:
        num_samples: Number of calibration examples (>= 1).
        seed: Seed that picks the calibration examples.
        int8_io: Make the input and output tensors int8 too (no QUANTIZE /
            DEQUANTIZE in the file; the caller quantizes inputs with the input
            tensor's scale and zero point, as ``run_tflite`` does). Default:
            float32 input and output.
        equalize: Strength in [0, 1] of the activation-range equalization
            applied to the Keras model before conversion
            (``converters.equalize``: the float function is unchanged, int8
            rounding error falls); 0 turns it off.
    """

    int8_io: bool = False
    equalize: float = 0.5
    name = "int8"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.equalize <= 1.0:
            raise ConfigError(
                f"Int8 range equalization strength must be in [0, 1] (0 turns it off). "
                f"Received: equalize={self.equalize}"
            )

    def configure(self, converter, representative_data) -> None:
        self._calibrate(converter, representative_data, tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
        if self.int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8

    def parity_bounds(self) -> dict:
        return {"min_relative_accuracy": 0.99, "min_agreement": 0.97}


@dataclass(frozen=True)
class Int16x8(_Calibrated):
    """Full-integer quantization with int16 activations and int8 weights
    (TFLite's "16x8" mode).

    Activation ranges are calibrated as for ``Int8``, but each activation
    tensor gets 65,536 levels instead of 256, so activation rounding all but
    vanishes and what remains is the int8 rounding of the weights (per output
    channel), as in dynamic-range quantization. For targets whose integer
    accelerators run 16x8 kernels, and for users who need int8 weights with
    closer parity than full int8 gives. Most CPU runtimes have no fast 16x8
    kernels (XNNPACK has none), so on a phone or Pi CPU it runs the reference
    kernels: slower than int8 and float32 (see ``benchmarks/lowering.py``).
    No range equalization: with per-channel int8 weights and fine activation
    steps it only adds weight rounding error.

    Gates: as ``Int8``, test accuracy >= 99% of the Keras model's when labels
    are given and top-1 agreement >= 97%; output differences are reported
    but gate nothing.

    Args:
        num_samples: Number of calibration examples (>= 1).
        seed: Seed that picks the calibration examples.
    """

    name = "int16x8"

    def configure(self, converter, representative_data) -> None:
        self._calibrate(converter, representative_data,
                        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)

    def parity_bounds(self) -> dict:
        return {"min_relative_accuracy": 0.99, "min_agreement": 0.97}


QUANTIZATIONS = {cls.name: cls for cls in (Float32, Float16, DynamicRange, Int8, Int16x8)}


def get_quantization(name: str):
    """Return the default scheme object for ``name``.

    Args:
        name: ``float32``, ``float16``, ``dynamic``, ``int8`` or ``int16x8``.

    Returns:
        A quantization object.

    Raises:
        ConfigError: If the name is unknown.

    Example:
        >>> get_quantization("int8")
        Int8(num_samples=200, seed=0, int8_io=False, equalize=0.5)
    """
    if name not in QUANTIZATIONS:
        raise ConfigError(
            f"Unknown quantization '{name}'. Choose one of: {', '.join(QUANTIZATIONS)}."
        )
    return QUANTIZATIONS[name]()
