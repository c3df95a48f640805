"""Measuring lowerings on a device: the tables ``converters.profiles`` reads.

``profile_lowerings`` times a stack of ``STACK_DEPTH`` block-diagonal layers (W
neurons, b paths, ReLU), lowered as exports lower them, in each lowering and
quantization on a grid of path counts with ``edge_bench``, and returns a
table (format: ``converters.profiles``). ``profile_this_cpu`` is the
short local profile cached per CPU kind (``mpath-tf export
--profile-cpu``); ``ensure_own_table`` runs it when this CPU has no table.
``profile_conv`` times stages of path convolutions (``conv_stack_model``)
in both conv lowerings: a table's ``conv_layers``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from converters import profiles
from converters.profiles import (PROFILED, PROFILE_PATHS, CONV_LOWERINGS, FORMAT,
                                    MAX_PER_PATH_PROFILE, STACK_DEPTH, VERSION,
                                    profiled_mode, cpu_key)
from converters.quantization import get_quantization
from edge_bench.stats import row_cost, row_unit
from converters.tflite import AUTO_EXCLUDED, export_tflite
from mpath_tf.core.permeability import widths_from_cuts
from mpath_tf.errors import ConfigError
from edge_bench import BenchSettings, Journal, LocalTarget, get_target, measure_models
from mpath_tf.storage import atomic_write_json
import keras
from mpath_tf.core.conv import PathConv2D
from mpath_tf.core.layers import PathDense


def equal_widths(width: int, paths: int) -> list[int]:
    """``paths`` widths as equal as possible, summing to ``width``.

    Example:
        >>> equal_widths(10, 4)
        [3, 3, 2, 2]
    """
    return [width // paths + (1 if i < width % paths else 0) for i in range(paths)]


def irregular_widths(width: int, paths: int, seed: int = 0) -> list[int]:
    """``paths`` widths from random cut points, as derived models have them.

    Example:
        >>> sum(irregular_widths(100, 7)), len(irregular_widths(100, 7))
        (100, 7)
    """
    membranes = np.random.default_rng(seed).choice(width - 1, paths - 1, replace=False)
    return widths_from_cuts(membranes, width)


def width_variants(width: int, paths: int) -> dict[str, list[int]]:
    """The path widths profiled for ``paths`` paths over ``width``: equal,
    and (for 2 < paths < width) the sorted irregular widths of random cuts,
    so that the cost of each op group can be told apart from each path's.

    Example:
        >>> width_variants(8, 2)
        {'equal': [4, 4]}
        >>> sorted(width_variants(8, 3))
        ['equal', 'irregular']
    """
    variants = {"equal": equal_widths(width, paths)}
    if 2 < paths < width:
        variants["irregular"] = sorted(irregular_widths(width, paths))
    return variants


def _exported(model, path: Path, quantization: str, representative, lowering: str, log) -> bool:
    """Export ``model`` to ``path`` unless it is there; False (and a line)
    if this mode cannot convert it."""
    if path.is_file():
        return True
    try:
        export_tflite(model, path, get_quantization(quantization), representative, lowering)
    except ConfigError as err:  # one stack the mode cannot run
        log(f"skipped {path.name}: {err}")
        return False
    return True


def stack_model(path_widths: list[int], depth: int = STACK_DEPTH):
    """``depth`` block-diagonal layers with ReLU: the unit that is profiled.

    The widths are sorted so that equal widths sit side by side, as
    ``group_paths`` arranges them in exported models.
    """
    widths = sorted(path_widths)
    width = sum(widths)
    inputs = keras.Input((width,))
    rng = np.random.default_rng(len(widths))
    h = inputs
    for i in range(depth):
        layer = PathDense(widths, activation="relu", name=f"blocks_{i + 1}")
        h = layer(h)
        layer.set_blocks([rng.normal(0, 0.1, (w, w)) for w in widths])
    return keras.Model(inputs, h, name=f"stack-{depth}x{width}-b{len(widths)}")


# Path convolutions per profiled conv stage, and the feature-map sides timed
# (ResNet-8's stages run 28 / 14 / 7 pixels a side on Fashion-MNIST, 32 / 16 / 8
# on CIFAR-10).
CONV_DEPTH = 2
CONV_SIDES = (8, 16)
CONV_PATHS = (1, 2, 4, 8, 16, 32, 64)


def conv_stack_model(path_widths: list[int], side: int, depth: int = CONV_DEPTH):
    """``depth`` 3x3 path convolutions with ReLU on ``side`` x ``side`` maps:
    the conv unit that is profiled (widths sorted, as ``group_conv_paths``
    arranges a derived stage)."""
    widths = sorted(path_widths)
    inputs = keras.Input((side, side, sum(widths)))
    rng = np.random.default_rng(len(widths))
    h = inputs
    for i in range(depth):
        layer = PathConv2D(widths, 3, padding="same", activation="relu", name=f"paths_{i + 1}")
        h = layer(h)
        layer.set_blocks([rng.normal(0, 0.2, (3, 3, w, w)) for w in widths])
    return keras.Model(inputs, h, name=f"conv-{depth}x{sum(widths)}-{side}px-b{len(widths)}")


def profile_conv(target, channels: int, quantizations=("float32", "dynamic", "int8"),
                   paths=None, sides=CONV_SIDES, workdir: str | os.PathLike = "profiles",
                   settings=None, repeats: int = 1, log=print) -> list[dict]:
    """Time a stage of path convolutions of ``channels`` in each conv lowering
    (``CONV_LOWERINGS``) on ``target``: the ``conv_layers`` of a table.

    For each path count and feature-map side, equal widths and the irregular
    widths of random cuts, so that ops, paths and multiply-adds can be told
    apart; the settings (XNNPACK or the built-in kernels) decide which wins.

    Args:
        target: An ``edge_bench`` target (or its name).
        channels: Channels C of the stage.
        quantizations: Modes to profile.
        paths: Path counts (default: ``CONV_PATHS`` up to C).
        sides: Feature-map sides.
        workdir: Exports and the measurement journal (resumable).
        settings: ``edge_bench.BenchSettings``.
        repeats: Tries per model.
        log: Progress printer.

    Returns:
        ``[{"quantization", "lowering", "depth", "path_widths", "pixels",
        "kernel", "us"}, ...]``.
    """
    target = get_target(target) if isinstance(target, str) else target
    paths = [b for b in (paths or CONV_PATHS) if 1 <= b <= channels]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for side in sides:
        representative = np.random.default_rng(0).normal(
            size=(50, side, side, channels)).astype("float32")
        for b in paths:
            for variant, widths in width_variants(channels, b).items():
                model = conv_stack_model(widths, side)
                for lowering in CONV_LOWERINGS if b > 1 else CONV_LOWERINGS[:1]:
                    for quantization in quantizations:
                        path = workdir / (f"conv-{CONV_DEPTH}x{channels}-{side}px-b{b}-{variant}_"
                                          f"{lowering}_{quantization}.tflite")
                        if not _exported(model, path, quantization, representative, lowering,
                                         log):
                            continue
                        jobs.append(({"quantization": quantization, "lowering": lowering,
                                      "depth": CONV_DEPTH, "path_widths": widths,
                                      "pixels": side * side, "kernel": 9}, path))
    log(f"profiling {len(jobs)} conv stages on {target.name}")
    rows = measure_models(target, jobs, Journal(workdir / "conv_profile.jsonl"), settings,
                          repeats=repeats, log=log)
    return [{**labels, "us": row_cost(row)}
            for (labels, _), row in zip(jobs, rows) if row["status"] == "ok"]


def profile_lowerings(target, width: int, quantizations=("float32", "dynamic", "int8", "int16x8"),
              paths=None, workdir: str | os.PathLike = "profiles", settings=None,
              repeats: int = 1, log=print) -> dict:
    """Time a stack of block-diagonal layers of ``width`` in every lowering on ``target``.

    For each path count, two layers are timed: equal path widths, and the
    irregular widths of random cuts (several distinct widths, as in derived
    models), so the cost of each op group can be told apart from the cost of
    each path.

    Args:
        target: An ``edge_bench`` target (or its name).
        width: Layer width W.
        quantizations: Modes to profile.
        paths: Path counts (default: ``PROFILE_PATHS`` up to W).
        workdir: Exports and the measurement journal (resumable).
        settings: ``edge_bench.BenchSettings``.
        repeats: Tries per model.
        log: Progress printer.

    Returns:
        The table (see the module docstring).
    """
    target = get_target(target) if isinstance(target, str) else target
    paths = [b for b in (paths or PROFILE_PATHS) if 1 <= b <= width]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    representative = np.random.default_rng(0).normal(size=(200, width)).astype("float32")
    jobs = []
    for b in paths:
        for variant, widths in width_variants(width, b).items():
            model = stack_model(widths)
            for lowering in PROFILED if b > 1 else ["per_path"]:
                if lowering == "per_path" and b > MAX_PER_PATH_PROFILE:
                    continue
                for quantization in quantizations:
                    if b > 1 and lowering in AUTO_EXCLUDED.get(quantization, ()):
                        continue
                    path = workdir / (f"stack-{STACK_DEPTH}x{width}-b{b}-{variant}_{lowering}_"
                                      f"{quantization}.tflite")
                    if not _exported(model, path, quantization, representative, lowering, log):
                        continue
                    jobs.append(({"path_widths": widths, "depth": STACK_DEPTH,
                                  "quantization": quantization, "lowering": lowering}, path))
    log(f"profiling {len(jobs)} stacks on {target.name}")
    rows = measure_models(target, jobs, Journal(workdir / "profile.jsonl"), settings,
                          repeats=repeats, log=log)
    ok = [(labels, row) for (labels, _), row in zip(jobs, rows) if row["status"] == "ok"]
    # An entry's "us" is its cost in the table's unit: microseconds, or
    # instructions per inference on a counting target (tflm:cortex-m4).
    layers = [{**labels, "us": row_cost(row)} for labels, row in ok]
    refused = sorted({f"{labels['lowering']} at {len(labels['path_widths'])} paths"
                      for (labels, _), row in zip(jobs, rows) if row["status"] != "ok"})
    return {"format": FORMAT, "version": VERSION, "target": target.name, "device": target.describe(),
            "unit": row_unit(ok[0][1]) if ok else "us", "refused": refused,
            "settings": (settings.to_dict() if settings else None), "layers": layers}


def ensure_own_table(quantization: str, log=print, conv: bool = False) -> None:
    """Profile ``quantization`` on this CPU (``profile_this_cpu``) unless
    this CPU kind already has a table with it (and, with ``conv``, with conv
    entries in it: a table cached before they existed is measured again)."""
    mode = profiled_mode(quantization)
    own = profiles.own_table_path(mode)
    if own is None or (conv and not profiles.has_conv_entries(
            profiles.load_profile(own), mode)):
        log(f"profiling the {mode} lowerings on this CPU (about a minute, once)")
        profile_this_cpu(mode, log=log)


def profile_this_cpu(quantization: str = "int8", width: int = 64,
                       paths=(1, 2, 4, 8, 16, 64), conv_channels: int = 16,
                       conv_paths=(1, 2, 4, 16), log=print) -> Path:
    """A short profile of one mode on this CPU (about a minute on 2
    cores), added to this CPU kind's cached table (``cache_dir() /
    <cpu_key>.json``) for ``load_profile``.

    Args:
        quantization: The mode to profile (``float16`` uses float32's).
        width: Layer width of the profiled stacks.
        paths: Path counts (equal and irregular widths each).
        conv_channels: Channels of the profiled conv stages (8 x 8
            maps; 0: no conv entries).
        conv_paths: Their path counts.
        log: Progress printer.

    Returns:
        The cached table's path.
    """
    mode = profiled_mode(quantization)
    key = cpu_key(profiles.this_cpu())
    out = profiles.cache_dir() / f"{key}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(min_secs=0.1, warmup_min_secs=0.05, runs=20)
    with tempfile.TemporaryDirectory() as workdir:
        table = profile_lowerings(LocalTarget(), width, (mode,), paths, workdir, settings,
                          log=lambda *_: None)
        if conv_channels:
            table["conv_layers"] = profile_conv(
                LocalTarget(), conv_channels, (mode,), conv_paths, (8,), workdir, settings,
                log=lambda *_: None)
    table["device"] = {k: v for k, v in table["device"].items() if k != "state"}
    try:  # keep the modes profiled before
        old = json.loads(out.read_text())
        if cpu_key(old.get("device") or {}) == key:
            for part in ("layers", "conv_layers"):
                table[part] = table.get(part, []) + [
                    l for l in old.get(part, []) if l["quantization"] != mode]
    except (OSError, ValueError, KeyError):
        pass
    atomic_write_json(out, table)
    log(f"profiled the {mode} lowerings on this CPU ({key}): {out}")
    return out
