"""Export mpath-tf models to TFLite (LiteRT) and verify them against Keras."""

from converters.quantization import (
    QUANTIZATIONS,
    DynamicRange,
    Float16,
    Float32,
    Int8,
    Int16x8,
    get_quantization,
)
from converters.profiling import profile_lowerings
from converters.profiles import choose_lowering, load_profile
from converters.equalize import equalize_ranges
from converters.metadata import read_labels, with_labels
from converters.tflite import (
    LOWERINGS,
    choose_lowerings,
    convert,
    export_tflite,
    lowering_plan,
    op_summary,
    run_tflite,
)
from converters.tflm import c_array_source, strip_metadata, tflm_convert, write_mcu_sources
from converters.parity import Verification, compare_outputs, output_step, verify

__all__ = [
    "LOWERINGS",
    "QUANTIZATIONS",
    "c_array_source",
    "profile_lowerings",
    "choose_lowering",
    "choose_lowerings",
    "load_profile",
    "DynamicRange",
    "Float16",
    "Float32",
    "Int8",
    "Int16x8",
    "Verification",
    "compare_outputs",
    "convert",
    "equalize_ranges",
    "export_tflite",
    "get_quantization",
    "lowering_plan",
    "op_summary",
    "read_labels",
    "run_tflite",
    "strip_metadata",
    "tflm_convert",
    "output_step",
    "verify",
    "with_labels",
    "write_mcu_sources",
]
