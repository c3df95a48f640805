"""The work behind ``mpath-tf derive`` and ``mpath-tf export``."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mpath_tf.data import load_dataset
from mpath_tf.core.derivation import path_widths
from mpath_tf.errors import ConfigError, ModelError
from mpath_tf.storage import atomic_save_model, atomic_write_json, library_versions
from mpath_tf.core.saving import load_model
from mpath_tf.pipeline.steps import finetune, load_data, verify_on_target
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.training.loop import accuracy
from edge_bench import BenchSettings, arm64, get_target
from edge_bench.arm64 import CORES
from edge_bench.mcu import build as mcu_build
from edge_bench.tflm import summary
from mpath_tf.core.conv import PathConv2D
from converters import export_tflite, get_quantization, lowering_plan, verify as verify_file
from converters.profiles import foreign_table_notice, target_profile
from converters.profiling import ensure_own_table
from converters.qat import export_qat_int8
from converters.tflite import write_tflite
from converters.tflm import is_tflm_target, strip_metadata, tflm_convert, write_mcu_sources


def derive_from_run(
    run_dir: str | os.PathLike,
    paths: int,
    finetune_epochs: int = 0,
    data_dir: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
) -> dict:
    """Derive (and optionally fine-tune) a model from a finished one-shot training.

    Args:
        run_dir: A run directory written by ``search``.
        paths: Path count b in [1, W].
        finetune_epochs: Fine-tuning epochs on the run's dataset (0: none).
        data_dir: Dataset directory, if the run's dataset needs one.
        output: Destination ``.keras`` (default ``RUN/models/paths-<b>-derived.keras``).

    Returns:
        A report: output file, path widths, parameters, validation accuracy.

    Raises:
        RunDirError: The run is missing, from another version or unfinished.
        ConfigError: ``paths`` or ``finetune_epochs`` out of range.
    """
    run = RunDir.open(run_dir)
    config = run.config
    if not 1 <= paths <= config.width:
        raise ConfigError(
            f"`paths` must be in [1, {config.width}] for this run (width {config.width}). "
            f"Received: paths={paths}"
        )
    if finetune_epochs < 0:
        raise ConfigError(
            f"`finetune_epochs` must be >= 0. Received: finetune_epochs={finetune_epochs}"
        )
    supernet = run.load_supernet()
    data = load_data(replace(config, data_dir=data_dir or config.data_dir))
    model = finetune(supernet, paths, data, config, epochs=finetune_epochs)
    output = Path(output) if output else run.path / "models" / f"paths-{paths}-derived.keras"
    try:
        atomic_save_model(model, output)
    except OSError as err:
        raise ConfigError(f"Cannot write {output}: {err.strerror or err}; choose another "
                          "`output`.")
    return {
        "output": str(output),
        "paths": paths,
        "path_widths": path_widths(supernet, paths),
        "parameters": model.count_params(),
        "finetune_epochs": finetune_epochs,
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
    }


def _run_data(model_path: Path, data_dir):
    """The dataset of the run a model file sits in, if any."""
    for folder in (model_path.parent, model_path.parent.parent):
        if (folder / "run.json").is_file():
            config = RunDir.open(folder).config
            return load_data(replace(config, data_dir=data_dir or config.data_dir))
    return None


def export_model(
    model_path: str | os.PathLike,
    quantization: str = "float32",
    fmt: str = "tflite",
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    lowering: str = "auto",
    profile: str | os.PathLike | None = None,
    qat_epochs: int = 0,
    verify: bool = True,
    profile_cpu: bool = False,
    log=None,
    target: str | None = None,
    strip_metadata: bool = False,
    verify_on: str | None = None,
) -> dict:
    """Export a ``.keras`` model to ``.tflite`` and verify it in LiteRT.

    Args:
        model_path: The ``.keras`` file.
        quantization: A scheme of ``converters.quantization`` (``Float32()``,
            ``Int8(int8_io=True, equalize=0.3)``, ...) or its name
            (``float32``, ``float16``, ``dynamic``, ``int8``, ``int16x8``:
            the scheme's defaults).
        fmt: Export format; ``tflite`` is the one supported.
        dataset: Dataset for calibration and verification; default the dataset
            of the run the model belongs to. Without one, float32 and dynamic
            exports are verified on random inputs; int8 is refused.
        data_dir: Dataset directory, if needed.
        output: Destination (default ``<model>_<quantization>.tflite``).
        lowering: How block-diagonal layers become ops: ``per_path``,
            ``batch_matmul``, ``conv`` or ``auto`` (default: the lowering profile
            table's fastest for the stack of block-diagonal layers).
        profile: Lowering profile for ``auto`` (default: the bundled one).
        qat_epochs: With ``int8``: this many epochs of quantization-aware
            training (tfmot, through tf_keras) on the dataset before
            conversion; 0: post-training quantization. QAT keeps one
            FULLY_CONNECTED per path (``lowering`` does not apply).
        verify: Run the parity check (``converters.parity``) on held-out data
            (the test split, or random inputs without a dataset).
        profile_cpu: With ``auto`` or ``bucketed`` and no ``profile``: if
            this CPU kind has no table of its own for the mode, measure one
            first (about a minute) and cache it for every later export
            (``converters.profiling.profile_this_cpu``).
        log: Where notices go (which lowering profile ``auto`` used when it
            is not this CPU's); default stderr.
        target: ``tflm`` or ``tflm:CORE``: export for TensorFlow Lite for
            Microcontrollers. ``auto`` then reads that target's profile
            table, no lowering TFLM refuses is used
            (``converters.tflm.tflm_convert``), the C array
            (``<stem>_model_data.h/.cc``) and op resolver
            (``<stem>_op_resolver.h``) are written beside the file, and the
            report gives the arena TFLM needs (``tflm``, and the core's when
            its runner is built). ``arm64:CORE`` (``cortex-a53``,
            ``cortex-a55``, ``cortex-a72``, ``cortex-a76``): export for LiteRT
            on that ARM core, ``auto`` reading the core's bundled table
            (measured in instructions on the emulated core).
        strip_metadata: With a TFLM ``target``: leave the file's metadata
            out of the file and the C array (TFLM does not read it).
        verify_on: An emulated ARM core (``arm64:cortex-a76`` and so on,
            ``mpath-tf setup arm64``): the parity check also runs the file on
            that core's LiteRT kernels (``verification_on``: the same bounds,
            and the share of outputs identical to this machine's).

    Returns:
        A report with the output file, its size, the settings, the lowering of
        each layer and the verification numbers; it is also written beside
        the file as ``<output>.json``.

    Raises:
        ConfigError: Unknown format or quantization, int8 / int16x8 without data, unwritable output,
            or a model file that cannot be loaded.
    """

    if fmt != "tflite":
        raise ConfigError(f"Unknown export format '{fmt}'. Supported: tflite.")
    if verify_on is not None and not verify_on.startswith("arm64:"):
        raise ConfigError(f"`verify_on` runs the file on an emulated ARM core: arm64:cortex-a53, "
                          f"-a55, -a72 or -a76. Received: verify_on={verify_on!r}")
    if verify_on is not None and not verify:
        raise ConfigError("`verify_on` is a parity check; it needs `verify`.")
    scheme = get_quantization(quantization) if isinstance(quantization, str) else quantization
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ConfigError(f"Model file {model_path} does not exist; pass a .keras file.")
    try:
        model = load_model(model_path)
    except Exception as err:  # Keras raises many types for a bad file
        raise ConfigError(f"Cannot load {model_path} as a Keras model: {err}") from err
    data = load_dataset(dataset, data_dir) if dataset else _run_data(model_path, data_dir)
    if data is None and scheme.calibrated:
        raise ConfigError(
            f"{scheme.name} export needs representative data to calibrate activations: pass "
            "`dataset` (or export a model that sits in a run directory)."
        )
    if data is not None and tuple(data.input_shape) != tuple(model.input_shape[1:]):
        raise ConfigError(
            f"Dataset '{dataset}' has inputs of shape {data.input_shape} but the model "
            f"expects {tuple(model.input_shape[1:])}; pass the `dataset` it was trained on."
        )
    x_check = np.random.default_rng(0).random((256, *model.input_shape[1:]), dtype="float32")
    output = Path(output) if output else model_path.with_name(
        f"{model_path.stem}_{scheme.name}.tflite"
    )
    if qat_epochs and (scheme.name != "int8" or data is None):
        raise ConfigError(
            "`qat_epochs` needs `quantization` int8 and labelled training data (`dataset`, or "
            "a model inside a run directory)."
        )
    if qat_epochs:  # the ranges are learnt in training, not equalized (the record says so)
        scheme = replace(scheme, equalize=0.0)
    log = log or (lambda message: print(message, file=sys.stderr))
    for_tflm = False
    if target is not None:
        for_tflm = is_tflm_target(target)
        if not for_tflm and target.removeprefix("arm64:") not in CORES:
            raise ConfigError(f"`target` exports for a microcontroller runtime, tflm or tflm:CORE "
                              f"(cortex-m4, cortex-m4f, cortex-m7, cortex-m55), or for an ARM "
                              f"core, arm64:CORE ({', '.join(CORES)}). Received: target={target!r}")
        if qat_epochs:
            raise ConfigError(f"Target {target} chooses the lowering; `qat_epochs` keeps one "
                              "FULLY_CONNECTED per path. Drop one of them.")
        # a core's bundled table where it has the file's quantization (the
        # ARM cores' are int8's: a float file is lowered by this CPU's)
        profile = profile or target_profile(target, None if for_tflm
                                                        else scheme.name)
        if not for_tflm and verify and verify_on is None:
            if arm64.is_built():
                verify_on = target  # the file is checked on the core it is for
            else:
                log(f"{target}: the file is verified on this machine's LiteRT only; run "
                    "`mpath-tf setup arm64` to check it on the core's kernels too.")
    if strip_metadata and not for_tflm:
        raise ConfigError("`strip_metadata` applies to a TFLM `target` ('tflm...').")
    if profile_cpu and profile is None and lowering in ("auto", "bucketed") and not qat_epochs:
        ensure_own_table(scheme.name, log,
                         conv=any(isinstance(l, PathConv2D) for l in model.layers))
    plan = lowering_plan(model, scheme.name, "per_path" if qat_epochs else lowering, profile)
    tflm_report = {}
    if plan["profile_source"] and target is None:  # a target reads its own table

        notice = foreign_table_notice(plan["profile_source"], lowering)
        if notice:
            log(notice)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if qat_epochs:
            export_qat_int8(model, output, data.x_train, data.y_train, qat_epochs)
        elif for_tflm:
            tflm_report = _export_tflm(model, output, scheme, data, lowering, profile,
                                       target, strip_metadata, log)
        else:
            export_tflite(model, output, scheme, data.x_train if data is not None else None,
                          lowering=lowering, profile=profile,
                          labels=data.class_names if data is not None else None)
    except OSError as err:
        raise ConfigError(f"Cannot write {output}: {err.strerror or err}; choose another "
                          "`output`.")
    report = {
        "output": str(output),
        "bytes": output.stat().st_size,
        "source_model": str(model_path),
        "quantization": scheme.get_config() | {"name": scheme.name},
        "lowering": lowering,
        **plan,  # lowerings, bucket_edges, padding_weights
        "profile": str(profile) if profile else None,
        "qat_epochs": qat_epochs,
        "versions": library_versions(),
    }
    if target is not None:
        report |= tflm_report | {"target": target}
    if verify:
        # One Keras prediction and one LiteRT run over the test set give the
        # parity numbers and both accuracies.
        x_eval = data.x_test if data is not None else x_check
        labels = data.y_test if data is not None else None
        expected = np.asarray(model.predict(x_eval, batch_size=1024, verbose=0))
        check = verify_file(output, model, x_eval, scheme, labels, expected=expected)
        if verify_on is not None:
            report["verification_on"] = {verify_on: verify_on_target(
                output, expected, x_eval, scheme, labels, verify_on)}
        report |= {
            "keras_test_accuracy": check.keras_accuracy,
            "tflite_test_accuracy": check.tflite_accuracy,
            "verified_on": f"{data.name} test split" if data is not None else "random inputs",
            "verification": check.to_dict(),
        }
    atomic_write_json(output.with_name(output.name + ".json"), report)
    return report


def _export_tflm(model, output: Path, scheme, data, lowering: str, profile, target: str,
                 strip: bool, log) -> dict:
    """Write the file for a TFLM target and its C sources; measure its arena."""
    content, record = tflm_convert(model, scheme, data.x_train if data is not None else None,
                                   lowering, target, profile, log)
    labels = None if strip or data is None else data.class_names
    write_tflite(strip_metadata(content) if strip else content, output, labels)
    content = output.read_bytes()  # as written: the C array holds the same bytes
    name = "".join(c if c.isalnum() else "_" for c in output.stem).strip("_") or "model"
    name = name if name[0].isalpha() else f"m_{name}"
    sources = write_mcu_sources(content, output.parent, name)
    measured = {}
    built = target != "tflm" and mcu_build.is_built(get_target(target).core)
    names = ["tflm"] + ([target] if built else [])
    settings = BenchSettings(runs=20, min_secs=0.1, warmup_min_secs=0.0)
    for where in names:
        try:
            row = get_target(where).measure(output, settings)
        except ModelError as err:
            raise ConfigError(f"{err}") from None
        measured[where] = summary(row)
    return {"target": target, "lowerings": record["lowerings"],
            "refused_lowerings": record["refused"], "metadata_stripped": strip,
            "flash_bytes": len(content), "mcu_sources": sources, "tflm": measured,
            "arena_bytes": measured[names[-1]]["arena_bytes"],
            "arena_measured_on": names[-1]}
