"""Export for TensorFlow Lite for Microcontrollers (TFLM).

A microcontroller project compiles the model in: ``c_array_source`` writes
the ``.tflite`` as an aligned C array with its length (as TFLM's examples
do) and ``op_resolver_source`` the ``MicroMutableOpResolver`` that registers
exactly the ops the file uses. ``tflm_convert`` picks the lowering for a TFLM
target from that target's calibration table and never returns a file TFLM
refuses: each candidate is prepared in TFLM's own interpreter
(``tflm_refusal``) and a refused one (for example a CONCATENATION with more
inputs than TFLM's limit of 10, which ``batch_matmul`` makes at more than 10
distinct path widths) gives way to the next cheapest by the table, ending
with ``per_path`` (FULLY_CONNECTED per path, CONCATENATIONs of at most 5
inputs).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from mpath_tf.errors import ConfigError
from mpath_tf.storage import atomic_write_text

CALIBRATION_DIR = Path(__file__).parent / "calibration"

# Builtin op names whose MicroMutableOpResolver method is not the CamelCase of the name.
_RESOLVER_NAMES = {"BATCH_MATMUL": "AddBatchMatMul", "LOG_SOFTMAX": "AddLogSoftmax",
                   "RELU6": "AddRelu6", "L2_NORMALIZATION": "AddL2Normalization",
                   "SPLIT_V": "AddSplitV", "SELECT_V2": "AddSelectV2",
                   "PADV2": "AddPadV2", "REVERSE_V2": "AddReverseV2"}


def is_tflm_target(target: str | None) -> bool:
    """Whether ``target`` names a TFLM runtime (``tflm`` or ``tflm:CORE``).

    Example:
        >>> is_tflm_target("tflm:cortex-m4"), is_tflm_target("local")
        (True, False)
    """
    return bool(target) and (target == "tflm" or target.startswith("tflm:"))


def target_calibration(target: str) -> Path | None:
    """The bundled calibration table measured on ``target``: its own
    (``converters/calibration/tflm-cortex-m4.json`` for ``tflm:cortex-m4``),
    else, for another Cortex-M core, the Cortex-M4's (the same CMSIS-NN
    kernels, counted the same way); None if neither exists.

    Example:
        >>> target_calibration("tflm:cortex-m4").name
        'tflm-cortex-m4.json'
    """
    for name in (target.replace(":", "-"), "tflm-cortex-m4" if target.startswith("tflm:")
                 else None):
        if name and (CALIBRATION_DIR / f"{name}.json").is_file():
            return CALIBRATION_DIR / f"{name}.json"
    return None


def op_names(content: bytes) -> list[str]:
    """The builtin op names a ``.tflite`` file uses, sorted.

    Raises:
        ConfigError: ``tflite-micro`` is not installed.
    """
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(content, 0)
    used = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        used.add(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return sorted(used)


def _schema():
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
    except ImportError:
        raise ConfigError("Exporting for TFLM needs the tflite-micro package: pip install "
                          "'mpath-tf[mcu]'.") from None
    return schema_py_generated


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers builtin ``op``.

    Example:
        >>> resolver_method("FULLY_CONNECTED"), resolver_method("CONV_2D")
        ('AddFullyConnected', 'AddConv2D')
    """
    if op in _RESOLVER_NAMES:
        return _RESOLVER_NAMES[op]
    return "Add" + "".join(part.capitalize() if not part[0].isdigit() else part.upper()
                           for part in op.split("_"))


def op_resolver_source(ops: list[str], name: str = "model") -> str:
    """C++ that registers exactly ``ops`` with TFLM (paste into the project).

    Example:
        >>> print(op_resolver_source(["FULLY_CONNECTED", "SOFTMAX"]).splitlines()[-2])
          resolver.AddSoftmax();
    """
    lines = [f"// The ops of {name}.tflite, for tflite::MicroInterpreter.",
             '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"', "",
             f"using {_camel(name)}OpResolver = tflite::MicroMutableOpResolver<{len(ops)}>;", "",
             f"inline void Register{_camel(name)}Ops({_camel(name)}OpResolver& resolver) {{"]
    lines += [f"  resolver.{resolver_method(op)}();" for op in ops]
    lines += ["}", ""]
    return "\n".join(lines)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part)


def c_array_source(content: bytes, name: str = "model") -> tuple[str, str]:
    """The model as C source that a microcontroller project compiles in.

    Args:
        content: The ``.tflite`` bytes.
        name: The symbol stem: ``g_<name>`` and ``g_<name>_len``.

    Returns:
        ``(header, source)``: ``extern`` declarations, and the definitions
        with the array aligned to 16 bytes (TFLM reads the flatbuffer in place).

    Example:
        >>> header, source = c_array_source(b"\\x01\\x02", "tiny")
        >>> "alignas(16) const unsigned char g_tiny[]" in source, "g_tiny_len = 2;" in source
        (True, True)
    """
    if not name.isidentifier():
        raise ConfigError(f"The C array name must be an identifier. Received: name={name!r}")
    guard = f"MPATH_TF_{name.upper()}_H_"
    header = (f"// Generated by mpath-tf: {name}.tflite as a C array.\n#ifndef {guard}\n"
              f"#define {guard}\n\nextern const unsigned char g_{name}[];\n"
              f"extern const unsigned int g_{name}_len;\n\n#endif  // {guard}\n")
    rows = [", ".join(f"0x{b:02x}" for b in content[i:i + 12]) for i in range(0, len(content), 12)]
    source = (f'// Generated by mpath-tf: {name}.tflite ({len(content)} bytes).\n'
              f'#include "{name}_model_data.h"\n\n'
              f"alignas(16) const unsigned char g_{name}[] = {{\n  "
              + ",\n  ".join(rows) + f"\n}};\nconst unsigned int g_{name}_len = {len(content)};\n")
    return header, source


def strip_metadata(content: bytes) -> bytes:
    """The file without its metadata (labels, descriptions, the converter's
    records): what TFLM does not read, so not worth flash.

    Example:
        >>> from mpath_tf import build_mlp
        >>> from converters import convert
        >>> content = convert(build_mlp((4,), 2, 2, 3))
        >>> len(strip_metadata(content)) < len(content)
        True
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    dropped = {m.buffer for m in (model.metadata or [])}
    model.metadata = None  # (signature defs stay: interpreters look tensors up by them)
    for index in dropped:  # emptied, not removed: tensors refer to buffers by index
        model.buffers[index].data = None
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflm_refusal(content: bytes, python: str = sys.executable) -> str | None:
    """Why TFLM refuses to prepare this file (the op and reason it logged), or None.

    The file is prepared in the ``tflite-micro`` package's interpreter in a
    separate process (``edge_bench.tflm.TflmTarget.refusal``: a TFLM abort
    cannot take the caller down; a crash counts as a refusal).

    Raises:
        ConfigError: ``tflite-micro`` is not installed.
    """
    from edge_bench.tflm import TflmTarget
    from mpath_tf.errors import ModelError

    _schema()  # the install hint, before a subprocess fails on it
    with tempfile.TemporaryDirectory(prefix="mpath-tflm-") as work:
        path = Path(work) / "model.tflite"
        path.write_bytes(content)
        try:
            return TflmTarget(python).refusal(path)
        except ModelError as err:
            return str(err)


def tflm_convert(model, quantization, representative_data=None, lowering: str = "auto",
                 target: str = "tflm:cortex-m4", calibration=None, log=None) -> tuple[bytes, dict]:
    """Convert ``model`` for a TFLM target, never to a file TFLM refuses.

    Args:
        model: A Keras model (a derived multipath model or any other).
        quantization: A scheme from ``converters.quantization`` (int8 for
            microcontrollers).
        representative_data: Calibration examples for int8.
        lowering: ``auto`` (by the target's calibration table, then the
            refusal check) or one lowering (refused: ``ConfigError``).
        target: ``tflm`` or ``tflm:CORE``: whose calibration table ``auto``
            reads (``target_calibration``; default the bundled LiteRT one
            when the target has none).
        calibration: A table (or path) instead of the target's.
        log: Optional printer for a lowering that was refused and replaced.

    Returns:
        ``(content, record)``: the file and ``{"lowering": asked,
        "lowerings": {layer: lowering}, "refused": [(lowering, reason)],
        "calibration": table path or None}``.

    Raises:
        ConfigError: An explicit lowering, or every candidate, is refused
            by TFLM (the op and reason named).
    """
    from converters.tflite import LOWERINGS, choose_lowerings, convert

    table = calibration or target_calibration(target)
    refused: list[tuple[str, str]] = []
    excluded: set[str] = set()
    while True:
        if lowering != "auto":
            candidate = lowering
        else:  # the cheapest by the target's table among those not refused yet
            chosen = choose_lowerings(model, quantization.name, "auto", table, excluded)
            dense_lowerings = {v for v in chosen.values() if v in LOWERINGS}
            candidate = (dense_lowerings.pop() if len(dense_lowerings) == 1
                         else "auto" if not excluded else "per_path")
        content = convert(model, quantization, representative_data, candidate, table)
        reason = tflm_refusal(content)
        if reason is None:
            kept = choose_lowerings(model, quantization.name, candidate, table, excluded)
            return content, {"lowering": lowering, "lowerings": kept, "refused": refused,
                             "calibration": None if isinstance(table, dict) else
                             (str(table) if table else None)}
        refused.append((candidate, reason))
        if log:
            log(f"TFLM refuses the {candidate} lowering: {reason}; trying the next")
        if lowering != "auto" or candidate in ("per_path", "auto"):
            break
        excluded.add(candidate)
    raise ConfigError(
        f"TFLM refuses the file with lowering {candidate}: {refused[-1][1]}. "
        + ("Use --lowering per_path (FULLY_CONNECTED per path), which TFLM prepares."
           if lowering != "auto" else "No lowering gave a file TFLM prepares."))


def write_mcu_sources(content: bytes, directory: str | os.PathLike, name: str = "model") -> dict:
    """Write ``<name>_model_data.h/.cc`` and ``<name>_op_resolver.h`` (atomically).

    Returns:
        ``{"header": path, "source": path, "op_resolver": path, "ops": [...]}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header, source = c_array_source(content, name)
    ops = op_names(content)
    paths = {"header": directory / f"{name}_model_data.h",
             "source": directory / f"{name}_model_data.cc",
             "op_resolver": directory / f"{name}_op_resolver.h"}
    atomic_write_text(paths["header"], header)
    atomic_write_text(paths["source"], source)
    atomic_write_text(paths["op_resolver"], op_resolver_source(ops, name))
    return {**{k: str(v) for k, v in paths.items()}, "ops": ops}
