"""A ``.tflite`` file's int8 input and output, as float32 callers see them:
quantized and dequantized with the tensor's own scale and zero point
(``converters.tflite.run_tflite`` on this machine, ``edge_bench.emulated``
on an emulated core)."""

from __future__ import annotations

import numpy as np


def quantize_input(detail: dict, x: np.ndarray) -> np.ndarray:
    """``x`` (float32) as the input tensor of ``detail`` (an interpreter's
    input details) takes it: unchanged for a float input, quantized for int8.

    Example:
        >>> detail = {"dtype": np.int8, "quantization": (0.5, -3)}
        >>> quantize_input(detail, np.array([[0.0, 1.0, 100.0]])).tolist()
        [[-3, -1, 127]]
    """
    x = np.asarray(x, dtype="float32")
    if np.dtype(detail["dtype"]) == np.int8:
        scale, zero_point = detail["quantization"]
        x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    return x


def dequantize_output(detail: dict, y: np.ndarray) -> np.ndarray:
    """The output tensor ``y`` of ``detail`` in float32 (dequantized when int8).

    Example:
        >>> detail = {"dtype": np.int8, "quantization": (0.5, -3)}
        >>> dequantize_output(detail, np.array([[-3, -1]], np.int8)).tolist()
        [[0.0, 1.0]]
    """
    if np.dtype(detail["dtype"]) == np.int8:
        scale, zero_point = detail["quantization"]
        y = (y.astype(np.float32) - zero_point) * scale
    return y
