"""Export Keras models to ``.tflite`` and check the file against Keras.

The model is traced with a dynamic batch axis and converted with the TensorFlow
Lite converter. ``PathDense`` layers lower to ops that hold only their blocks
of weights (see ``LOWERINGS``), so the file has no dense kernel full of zeros.
The file is run with the LiteRT interpreter (``ai-edge-litert``), never with
the deprecated ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from converters.quantization import Float32
from edge_bench.quantized_io import dequantize_output, quantize_input
from mpath_tf.errors import ConfigError
from mpath_tf.storage import atomic_write_bytes
from mpath_tf.core import graph
from mpath_tf.core.models import NORMALIZATION, normalization_layer
from mpath_tf.core.conv import PathConv2D
from mpath_tf.core.derivation import with_conv_implementation, with_implementation
from mpath_tf.core.layers import PathDense
from converters.equalize import RANGE_SAMPLES, equalize_ranges
from converters.lowering import (
    chain_paths,
    fold_batch_norms,
    group_conv_paths,
    group_paths,
    neighbour_weights,
    pad_paths,
    paddable,
    path_stack,
    stack_padding,
)
from converters.metadata import LABEL_FILE, label_file_text, with_labels
from converters.profiles import (
    CONV_LOWERINGS,
    bucket_plan,
    choose_conv_lowering,
    choose_lowering,
    has_conv_entries,
    load_profile,
    profile_source,
    profiled_mode,
)


# How block-diagonal (``PathDense``) layers become TFLite ops: lowering name ->
# the PathDense implementation traced for conversion. A one-path layer is a
# plain FULLY_CONNECTED under every lowering.
LOWERINGS = {
    "per_path": "per_path",  # FULLY_CONNECTED per path + tree of <= 5-input CONCATENATIONs
    "batch_matmul": "batch_matmul",  # one BATCH_MATMUL (+ 2 TRANSPOSEs) per distinct path width
    "conv": "conv",  # one grouped 1x1 CONV_2D per distinct path width
    # paths padded with zero neurons to a few bucket widths, then conv: one grouped
    # CONV_2D per bucket (``converters.lowering.pad_paths``; stacks only)
    "bucketed": "conv",
}
# (``group_paths`` first renumbers the neurons, so the batched lowerings need no GATHER.)

# Lowerings that ``auto`` never picks (and ``profile_lowerings`` does not time) for a
# quantization. In int16x8, CONCATENATION requantizes its inputs, so each
# per-path op keeps its own output range: a path that never activates on the
# calibration data gets an empty range that the next layer's 16x8 op refuses
# (the batched lowerings requantize each width group's output before the
# next layer; tests/test_int16x8.py).
AUTO_EXCLUDED = {"int16x8": {"per_path"}}


def choose_lowerings(model, quantization_name: str = "float32", lowering: str = "per_path",
                     profile=None, excluded=()) -> dict[str, str]:
    """The lowering of each ``PathDense`` and ``PathConv2D`` layer of ``model``.

    Args:
        model: A Keras model.
        quantization_name: ``float32``, ``float16``, ``dynamic``, ``int8`` or ``int16x8``.
        lowering: One of ``LOWERINGS`` (path convolutions keep their
            implementation),
            one of ``CONV_LOWERINGS`` (for path convolutions; block-diagonal
            Dense layers keep ``per_path``), or ``auto``: for the
            block-diagonal Dense layers the lowering whose cost, fitted to the
            lowering profile, is lowest for the stack (one choice for a
            stack that shares its paths, so it is chained; else one per
            layer), among those not in ``AUTO_EXCLUDED`` for the
            quantization; for each path convolution the conv lowering
            whose cost, fitted to the table's conv entries, is lowest
            (``grouped`` if the table has none in this mode).
        profile: A table or its path for ``auto`` (default: the bundled
            table, measured on this project's x86 machine).
        excluded: Lowerings of block-diagonal Dense layers that ``auto``
            must not pick (a runtime refuses them; ``converters.tflm``).

    Returns:
        ``{layer name: lowering}``.

    Raises:
        ConfigError: Unknown lowering, or an unreadable lowering profile.
    """

    if lowering != "auto" and lowering not in LOWERINGS and lowering not in CONV_LOWERINGS:
        raise ConfigError(f"Unknown lowering '{lowering}'. Choose one of: {', '.join(LOWERINGS)}, "
                          f"{', '.join(CONV_LOWERINGS)} (path convolutions), auto.")
    layers = [l for l in model.layers if isinstance(l, PathDense)]
    convs = [l for l in model.layers if isinstance(l, PathConv2D)]
    stack = path_stack(model)
    if lowering != "auto":
        if lowering == "bucketed" and layers and not paddable(model):
            raise ConfigError("`lowering='bucketed'` pads a stack of block-diagonal layers with "
                              "the same paths (a derived model); this model has none. Use conv.")
        if lowering in CONV_LOWERINGS:
            return {l.name: "per_path" for l in layers} | {l.name: lowering for l in convs}
        return {l.name: lowering for l in layers} | {l.name: l.implementation for l in convs}
    mode = profiled_mode(quantization_name)
    table = profile if isinstance(profile, dict) else load_profile(profile, mode)
    conv_choices = {l.name: choose_conv_lowering(table, l.path_widths, _pixels(l), mode,
                                                 int(np.prod(l.kernel_size))) or "grouped"
                    for l in convs}
    excluded = AUTO_EXCLUDED.get(mode, set()) | set(excluded)
    if not paddable(model):
        excluded = excluded | {"bucketed"}
    if stack:
        choice = choose_lowering(table, stack[0].path_widths, mode, len(stack), excluded,
                                 neighbour_weights(model))
        return {l.name: choice for l in layers} | conv_choices
    return {l.name: choose_lowering(table, l.path_widths, mode, excluded=excluded)
            for l in layers} | conv_choices


def _pixels(layer) -> int:
    """Output positions of a convolution (its height x width; 64 when the
    layer has no known output shape)."""
    try:
        height, width = layer.output.shape[1:3]
    except (AttributeError, ValueError):
        return 64
    return int(height or 8) * int(width or 8)


def lowering_plan(model, quantization_name: str = "float32", lowering: str = "per_path",
                  profile=None) -> dict:
    """How ``convert`` lowers ``model``'s block-diagonal layers, for the record.

    Returns:
        ``{"lowerings": {layer: lowering}, "bucket_edges": [...] or None,
        "padding_weights": n, "profile_source": {...} or None}``: with
        ``bucketed``, the bucket widths the paths are padded to and the zero
        weights that adds to the file (the only zeros a lowering puts there);
        else None and 0; the lowering profile consulted (``auto``,
        ``bucketed``) and whether it was measured on this CPU kind.

    Raises:
        ConfigError: As ``choose_lowerings``.
    """

    mode = profiled_mode(quantization_name)
    table = profile
    if lowering == "auto" and not isinstance(profile, dict):
        table = load_profile(profile, mode)  # read once for every choice below
    lowerings = choose_lowerings(model, quantization_name, lowering, table)
    edges = _bucket_edges(model, lowerings, quantization_name, table)
    uses_table = lowering == "auto" or edges is not None
    measured = None
    if lowering == "auto" and any(isinstance(l, PathConv2D) for l in model.layers):
        measured = has_conv_entries(table, mode)
    return {"lowerings": lowerings, "bucket_edges": edges,
            "padding_weights": stack_padding(model, edges) if edges else 0,
            "profile_source": (profile_source(profile, mode) if uses_table
                                   else None),
            "conv_lowerings_measured": measured}


def _bucket_edges(model, lowerings: dict[str, str], quantization_name: str, profile):
    """The bucket edges of a ``bucketed`` stack (None for other lowerings)."""
    lowerings = {name: l for name, l in lowerings.items() if l in LOWERINGS}
    if not lowerings or set(lowerings.values()) != {"bucketed"}:
        return None
    stack = path_stack(model)
    mode = profiled_mode(quantization_name)
    table = profile if isinstance(profile, dict) else load_profile(profile, mode)
    return bucket_plan(table, stack[0].path_widths, mode, len(stack), neighbour_weights(model))


def _lowered(model, lowerings: dict[str, str], chain: bool = True, edges=None):
    """The model to trace: a CNN stage's channels grouped by path width,
    paths padded to ``edges`` (bucketed), neurons regrouped and, when every block-diagonal layer has the same lowering (and
    ``chain``), the stack chained path by path."""
    model = group_conv_paths(model)  # a CNN stage: one convolution per distinct path width
    model = fold_batch_norms(model)  # (the converter folds none into a path convolution)
    convs = {name: l for name, l in lowerings.items() if l not in LOWERINGS}
    if convs:
        model = with_conv_implementation(model, convs)
    lowerings = {name: l for name, l in lowerings.items() if l in LOWERINGS}
    if edges:
        padded = pad_paths(model, edges)
        renamed = {l.name: lowerings[old.name] for l, old in zip(
            [l for l in padded.layers if isinstance(l, PathDense)],
            [l for l in model.layers if isinstance(l, PathDense)])}
        model, lowerings = padded, renamed
    if any(lowering != "per_path" for lowering in lowerings.values()):
        model = group_paths(model)  # equal widths side by side: no GATHER
    if chain and len(set(lowerings.values())) == 1:
        chained = chain_paths(model, LOWERINGS[next(iter(lowerings.values()))])
        if chained is not model:
            return chained
    return with_implementation(model, {name: LOWERINGS[l] for name, l in lowerings.items()})


def convert(model, quantization=None, representative_data=None, lowering: str = "per_path",
            profile=None) -> bytes:
    """Convert a Keras model to TFLite flatbuffer bytes.

    Args:
        model: A built Keras model with one input.
        quantization: A scheme from ``converters.quantization``; default
            ``Float32()``.
        representative_data: Training examples, required by ``Int8`` (which
            also equalizes activation ranges on them first; see
            ``converters.equalize``) and ``Int16x8``.
        lowering: How block-diagonal layers become ops: ``per_path``,
            ``batch_matmul``, ``conv`` (see ``LOWERINGS``) or ``auto`` (see
            ``choose_lowerings``).
        profile: The lowering profile for ``auto``.

    Returns:
        The ``.tflite`` file contents.

    Raises:
        ConfigError: If the scheme needs representative data and none is
            given, the lowering is unknown, or a path never activates on the
            representative data and the file cannot run.
    """
    quantization = quantization or Float32()
    if representative_data is not None and len(representative_data) and (
            tuple(np.shape(representative_data)[1:]) != tuple(model.input_shape[1:])):
        raise ConfigError(
            f"The representative dataset has examples of shape "
            f"{tuple(np.shape(representative_data)[1:])} but the model takes "
            f"{tuple(model.input_shape[1:])}; pass the training data of this model."
        )
    lowerings = choose_lowerings(model, quantization.name, lowering, profile)
    if getattr(quantization, "equalize", 0.0):
        samples = quantization.calibration_samples(
            representative_data, max(RANGE_SAMPLES, quantization.num_samples))
        per_tensor = {name for name, choice in lowerings.items() if choice == "batch_matmul"}
        model = equalize_ranges(model, samples, quantization.equalize, keep=per_tensor)

    def run(lowered):
        spec = tf.TensorSpec((None, *lowered.input_shape[1:]), tf.float32, name="input")
        function = tf.function(lambda x: lowered(x, training=False), input_signature=[spec])
        # Freeze the variables into constants: the converter then folds each weight
        # into its op (FULLY_CONNECTED filters) instead of emitting resource reads.
        frozen = convert_variables_to_constants_v2(function.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
        quantization.configure(converter, representative_data)
        try:
            content = converter.convert()
            if quantization.name == "int8" and normalization_layer(lowered) is not None:
                content = _float_normalization(content, converter)
            return content
        except Exception as err:  # the converter raises ConverterError and others
            raise _conversion_error(err, lowered, quantization) from err

    edges = _bucket_edges(model, lowerings, quantization.name, profile)
    content = run(_lowered(model, lowerings, edges=edges))
    if getattr(quantization, "calibrated", False) and _has_empty_range(content):
        # A path that never activates on the representative data gets the
        # range [0, 0] (scale 0), which the integer kernels cannot run. Joining
        # the paths after every layer gives it the range of the whole layer
        # in int8 (CONCATENATION's inputs share its output's scale); in 16x8
        # CONCATENATION requantizes its inputs, so an op's own output keeps it.
        content = run(_lowered(model, lowerings, chain=False, edges=edges))
        _check_runnable(content, model, quantization)
    return content


def _float_normalization(content: bytes, converter) -> bytes:
    """Convert again with the input normalization's ops kept in float32.

    Full int8 gives the input one scale; raw sensor features of mixed scales
    (0.1 next to 50, offsets of 100) would lose the small ones to it. Kept in
    float (TFLite's selective quantization, ``QuantizationDebugger`` with the
    normalization's SUB and MUL denied), the file takes raw float readings,
    standardizes them in float, and quantizes the standardized features, which
    share one scale well. Every other op stays int8.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    # tensor names are "<model>/<layer>[_k]/<op>" (Keras adds _k to traced names)
    ours = re.compile(rf"/{NORMALIZATION}(_\d+)?/")
    deny = [names[i] for op in interpreter._get_ops_details()
            for i in op["outputs"] if ours.search(names.get(i, ""))]
    if not deny:
        return content
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
    with warnings.catch_warnings():  # it runs TF's deprecated interpreter inside
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=options)
        return debugger.get_nondebug_quantized_model()


def _check_runnable(content: bytes, model, quantization) -> None:
    """Raise a ConfigError if LiteRT cannot prepare and run the file's ops."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    try:  # ops are prepared on the first run (the batch axis is dynamic)
        interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], np.zeros([1, *detail["shape"][1:]], detail["dtype"]))
        interpreter.invoke()
    except (RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [repr(err)])[0].rstrip(".")
        raise ConfigError(
            f"Some paths of {model.name} never activate on the representative data, and the "
            f"{quantization.name} file cannot run ({reason}). Export with --lowering "
            "batch_matmul (all paths of one width share one tensor there), or calibrate on "
            "more examples."
        ) from None


def _layers_with_ops(model, op_types: set[str]) -> list[str]:
    """Names of the layers of ``model`` whose traced graph holds one of ``op_types``."""
    names = []
    for layer in model.layers:
        if not graph.calls(layer) or isinstance(layer.input, list):
            continue
        try:
            spec = tf.TensorSpec((1, *layer.input.shape[1:]), tf.float32)
            traced = tf.function(layer).get_concrete_function(spec).graph
        except Exception:  # a layer that cannot be traced alone is skipped
            continue
        if op_types & {op.type for op in traced.get_operations()}:
            names.append(layer.name)
    return names


def _conversion_error(err: Exception, model, quantization) -> ConfigError:
    """A ConfigError naming the op and the layers the converter could not lower."""
    text = str(err)
    op_types = set(re.findall(r"'tf\.(\w+)' op", text))
    layers = _layers_with_ops(model, op_types) if op_types else []
    where = f"layer {', '.join(repr(n) for n in layers)}" if layers else "the model"
    what = f" (TensorFlow op {', '.join(sorted(op_types))})" if op_types else ""
    found = re.search(r"error: (.+)", text)
    reason = found.group(1).strip() if found else (text.strip().splitlines() or [repr(err)])[0]
    return ConfigError(
        f"TensorFlow Lite cannot convert {where}{what} with --quantize {quantization.name}: "
        f"{reason}. Build that layer from ops TFLite has built in, or try another "
        "--quantize mode."
    )


# Quantization range (scale * levels) below which a tensor never varied during
# calibration; real activation ranges of trained or random MLPs are >= 1e-3.
EMPTY_RANGE = 1e-5
_LEVELS = {np.dtype(np.int8): 255, np.dtype(np.int16): 65535}


def _has_empty_range(content: bytes) -> bool:
    """True if an int8 or int16 activation tensor of the flatbuffer has an empty range.

    The converter gives a tensor that was always 0 during calibration a
    range of about 2e-6 (int8 scale 7.8e-9; int16 scale 2e-38), which
    XNNPACK (int8) and the 16x8 kernels refuse to prepare.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for tensor in interpreter.get_tensor_details():
        scales = tensor["quantization_parameters"]["scales"]
        # Activations have one scale per tensor (weights one per channel).
        levels = _LEVELS.get(np.dtype(tensor["dtype"]))
        if levels and scales.size == 1 and scales[0] * levels < EMPTY_RANGE:
            return True
    return False


def export_tflite(
    model,
    path: str | os.PathLike,
    quantization=None,
    representative_data=None,
    lowering: str = "per_path",
    profile=None,
    labels: list | None = None,
) -> Path:
    """Convert ``model`` and write it to ``path`` atomically.

    With ``labels``, the class names are embedded in the file as TFLite
    model metadata (``converters.metadata``) and also written beside it as
    ``labels.txt``, one name a line in class-index order.

    Args:
        model: A built Keras model with one input.
        path: Destination ``.tflite`` file.
        quantization: A scheme from ``converters.quantization``; default float32.
        representative_data: Training examples, required by ``Int8`` and ``Int16x8``.
        lowering: How block-diagonal layers become ops (see ``convert``).
        profile: The lowering profile for ``lowering="auto"``.
        labels: Class names by output index (any values; written as text).

    Returns:
        The path written.

    Raises:
        ConfigError: If the scheme needs representative data and none is given.
        OSError: If the destination cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> from mpath_tf import build_mlp
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "m.tflite"
        >>> export_tflite(build_mlp((4,), 2, 2, 3), out).stat().st_size > 0
        True
    """
    content = convert(model, quantization, representative_data, lowering, profile)
    return write_tflite(content, path, labels)


def write_tflite(content: bytes, path: str | os.PathLike, labels: list | None = None) -> Path:
    """Write ``.tflite`` bytes to ``path`` atomically; with ``labels``, the
    class names are embedded as metadata and written beside as ``labels.txt``
    (one a line, in class-index order).

    Returns:
        The path written.
    """
    path = Path(path)
    if labels is not None:
        names = [str(label) for label in labels]
        content = with_labels(content, names)
        atomic_write_bytes(path.with_name(LABEL_FILE), label_file_text(names).encode())
    atomic_write_bytes(path, content)
    return path


def load_interpreter(path: str | os.PathLike, num_threads: int = 1):
    """Open a ``.tflite`` file in the LiteRT interpreter.

    Args:
        path: The ``.tflite`` file.
        num_threads: CPU threads for the interpreter.

    Returns:
        An ``ai_edge_litert.interpreter.Interpreter`` (tensors not allocated).
    """
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=num_threads)


def run_tflite(path: str | os.PathLike, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a ``.tflite`` model on a batch with the LiteRT interpreter.

    Args:
        path: The ``.tflite`` file (single input and output, float32 or int8;
            int8 tensors are quantized / dequantized with their own scale and
            zero point).
        x: Input batch, shape (batch, *input_shape), float32.
        num_threads: CPU threads for the interpreter.

    Returns:
        The output batch as float32.
    """
    interpreter = load_interpreter(path, num_threads)
    detail = interpreter.get_input_details()[0]
    x = quantize_input(detail, x)  # int8 input: quantized as the file says
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return dequantize_output(output, interpreter.get_tensor(output["index"]).copy())


def op_summary(path: str | os.PathLike) -> dict:
    """Ops and weight sizes of a ``.tflite`` model.

    Args:
        path: The ``.tflite`` file.

    Returns:
        ``{"ops": {op_name: count}, "fully_connected_weights": n,
        "conv_weights": m}`` where ``n`` is the number of filter and bias
        elements over all FULLY_CONNECTED ops and ``m`` over all CONV_2D and
        DEPTHWISE_CONV_2D ops (the flatbuffer audit: a derived model holds
        its diagonal blocks only).
    """
    interpreter = load_interpreter(path)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops: dict[str, int] = {}
    weights = {"FULLY_CONNECTED": 0, "CONV_2D": 0, "DEPTHWISE_CONV_2D": 0}
    for op in interpreter._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
        if op["op_name"] in weights:
            for index in op["inputs"][1:]:  # filter, bias (-1 when absent)
                if index >= 0:
                    weights[op["op_name"]] += int(np.prod(tensors[index]["shape"]))
    return {"ops": ops, "fully_connected_weights": weights["FULLY_CONNECTED"],
            "conv_weights": weights["CONV_2D"] + weights["DEPTHWISE_CONV_2D"]}
