"""Export mpath-tf models to TFLite (LiteRT) and verify them against Keras."""

from converters.quantization import QUANTIZATIONS, DynamicRange, Float32, Int8, get_quantization
from converters.tflite import (
    Verification,
    compare_outputs,
    convert,
    export_tflite,
    op_summary,
    run_tflite,
    verify_tflite,
)

__all__ = [
    "QUANTIZATIONS",
    "DynamicRange",
    "Float32",
    "Int8",
    "Verification",
    "compare_outputs",
    "convert",
    "export_tflite",
    "get_quantization",
    "op_summary",
    "run_tflite",
    "verify_tflite",
]
