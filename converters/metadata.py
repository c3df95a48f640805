"""Class names inside a ``.tflite`` file, as TFLite model metadata.

The standard place for a classifier's labels is the TFLite metadata schema
(``metadata_schema.fbs``, file identifier ``M001``): a ``ModelMetadata``
flatbuffer stored as the model's ``TFLITE_METADATA`` metadata entry, whose
output tensor names an associated file of type ``TENSOR_AXIS_LABELS``, and
that file (``labels.txt``, one class name a line, in class-index order)
packed into the model file as a zip archive appended to the flatbuffer. The
Task Library, MediaPipe's classifiers and Android Studio's ML binding read
labels from there. LiteRT ignores both parts when it runs the model.

The only maintained writer of that schema is the deprecated
``tflite-support`` package, so this module writes the few tables it needs
with ``flatbuffers`` directly; the field order below is the schema's
(version 1.0.1, unchanged since). The model flatbuffer itself is edited
with LiteRT's own generated schema (``ai_edge_litert.schema_py_generated``).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np
from flatbuffers.table import Table

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
LABEL_FILE = "labels.txt"
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_MIN_PARSER_VERSION = "1.0.0"


def _strings(builder: flatbuffers.Builder, *values: str) -> list[int]:
    return [builder.CreateString(v) for v in values]


def _table(builder, fields: list[tuple[int, str, object]]) -> int:
    """A table from ``(slot, kind, value)``: kind ``offset`` or ``int8``."""
    builder.StartObject(max(slot for slot, _, _ in fields) + 1)
    for slot, kind, value in fields:
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            builder.PrependInt8Slot(slot, value, 0)
    return builder.EndObject()


def _vector(builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def model_metadata(name: str, description: str, input_name: str = "features") -> bytes:
    """A ``ModelMetadata`` flatbuffer naming ``labels.txt`` as the output's axis labels.

    Args:
        name: Model name.
        description: One sentence on what the model does.
        input_name: Name of the input tensor in the metadata.

    Returns:
        The flatbuffer bytes (file identifier ``M001``).
    """
    b = flatbuffers.Builder(1024)
    # AssociatedFile: name 0, description 1, type 2 (byte), locale 3
    file_name, file_text = _strings(b, LABEL_FILE, "Class names, one a line, by output index.")
    label_file = _table(b, [(0, "offset", file_name), (1, "offset", file_text),
                            (2, "int8", _TENSOR_AXIS_LABELS)])
    # TensorMetadata: name 0, description 1, ..., associated_files 6
    in_name, in_text = _strings(b, input_name, "Raw input values; preprocessing is in the model.")
    input_meta = _table(b, [(0, "offset", in_name), (1, "offset", in_text)])
    files = _vector(b, [label_file])
    out_name, out_text = _strings(b, "probability", "Probability of each class.")
    output_meta = _table(b, [(0, "offset", out_name), (1, "offset", out_text), (6, "offset", files)])
    # SubGraphMetadata: name 0, description 1, inputs 2, outputs 3
    inputs, outputs = _vector(b, [input_meta]), _vector(b, [output_meta])
    subgraph = _table(b, [(2, "offset", inputs), (3, "offset", outputs)])
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, ...,
    # min_parser_version 7
    model_name, model_text, parser = _strings(b, name, description, _MIN_PARSER_VERSION)
    subgraphs = _vector(b, [subgraph])
    root = _table(b, [(0, "offset", model_name), (1, "offset", model_text),
                      (3, "offset", subgraphs), (7, "offset", parser)])
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def label_file_text(labels: list[str]) -> str:
    """The content of ``labels.txt``: one class name a line, in class-index order."""
    return "".join(f"{label}\n" for label in labels)


def with_labels(content: bytes, labels: list[str], name: str = "mpath-tf classifier",
                description: str = "A multipath classifier found by mpath-tf.") -> bytes:
    """``content`` (a ``.tflite`` flatbuffer) with its class names embedded.

    Adds the ``TFLITE_METADATA`` entry and appends ``labels.txt`` as a zip
    archive. The model's ops and weights are unchanged.

    Args:
        content: The model file's bytes (without metadata of this kind).
        labels: Class names in class-index order.
        name: Model name in the metadata.
        description: Model description in the metadata.

    Returns:
        The new file's bytes.

    Raises:
        ValueError: If a label holds a line break, or the model already has
            TFLite metadata.

    Example:
        >>> import tempfile, pathlib
        >>> from mpath_tf import build_mlp
        >>> from converters import convert
        >>> data = with_labels(convert(build_mlp((4,), 2, 2, 3)), ["cat", "dog"])
        >>> read_labels(data)
        ['cat', 'dog']
    """
    from ai_edge_litert import schema_py_generated as schema

    bad = [label for label in labels if "\n" in label or "\r" in label]
    if bad:
        raise ValueError(f"Class names cannot hold line breaks (one name a line in "
                         f"{LABEL_FILE}). Received: {bad[:3]}")
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    entries = list(model.metadata or [])
    if any(_name(m.name) == METADATA_NAME for m in entries):
        raise ValueError(f"The model already has a {METADATA_NAME} entry.")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(model_metadata(name, description), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, os.SEEK_END)
    # a fixed time stamp: the same model and labels give the same bytes
    entry = zipfile.ZipInfo(LABEL_FILE, date_time=(1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(out, "a") as archive:  # appended: the flatbuffer stays at offset 0
        archive.writestr(entry, label_file_text(labels))
    return out.getvalue()


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_labels(source: bytes | str | os.PathLike) -> list[str] | None:
    """The class names embedded in a ``.tflite`` file (None: none embedded).

    Reads the ``TFLITE_METADATA`` entry, takes the output tensor's
    ``TENSOR_AXIS_LABELS`` file name from it and reads that file from the
    appended zip archive.

    Args:
        source: The file's bytes or path.
    """
    from ai_edge_litert import schema_py_generated as schema

    content = source if isinstance(source, bytes) else Path(source).read_bytes()
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) != METADATA_NAME:
            continue
        meta = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
        if meta[4:8] != METADATA_IDENTIFIER:
            return None
        file_name = _output_label_file(meta)
        if file_name is None:
            return None
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return archive.read(file_name).decode("utf-8").splitlines()
    return None


def _output_label_file(meta: bytes) -> str | None:
    """The name of the first output tensor's TENSOR_AXIS_LABELS file."""
    def vector(buf_table: Table, slot: int) -> list[Table]:
        offset = buf_table.Offset(4 + 2 * slot)
        if not offset:
            return []
        start = buf_table.Vector(offset)
        return [Table(buf_table.Bytes, buf_table.Indirect(start + 4 * i))
                for i in range(buf_table.VectorLen(offset))]

    def string(buf_table: Table, slot: int) -> str | None:
        offset = buf_table.Offset(4 + 2 * slot)
        return buf_table.String(buf_table.Pos + offset).decode() if offset else None

    root = Table(bytearray(meta), flatbuffers.encode.Get(flatbuffers.packer.uoffset, meta, 0))
    for subgraph in vector(root, 3)[:1]:
        for output in vector(subgraph, 3)[:1]:
            for file in vector(output, 6):
                kind_offset = file.Offset(4 + 2 * 2)
                kind = file.Get(flatbuffers.number_types.Int8Flags, file.Pos + kind_offset) \
                    if kind_offset else 0
                if kind == _TENSOR_AXIS_LABELS:
                    return string(file, 0)
    return None
