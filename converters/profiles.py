"""Which lowering is fastest for a block-diagonal layer, measured per device.

``converters.profiling`` times a stack of ``STACK_DEPTH`` block-diagonal layers (W
neurons, b paths, ReLU), lowered as exports lower them (``PathChain``: the
paths run through the stack and are joined once), in each lowering and
quantization on a grid of path counts with ``edge_bench``, and returns a
table; ``choose_lowering`` fits a small cost model to it (a fixed part plus
costs per op group, per path and per weight, for each layer of the stack) and
predicts any stack, including the irregular path widths of derived models. The table of
this project's development machine is bundled (``profile/``); profile
your own device with ``mpath-tf profile --target ...``.

Lowering costs depend on the CPU (its SIMD features above all), so a table
records the CPU it was measured on (``device``: model, ``cpu_isa`` flags,
core count; ``settings``: threads) and ``cpu_key`` names it. With no table
given, ``load_profile`` takes this CPU's own: the bundled one if it was
measured on such a CPU, else one cached by ``profile_this_cpu`` (``mpath-tf
export --profile-cpu``, a short local profile) in the user's cache
directory, else the bundled table, and ``profile_source`` says which.

Table format (JSON)::

    {"format": "mpath-tf-lowering-profile", "version": 3, "target": ...,
     "device": {...}, "settings": {...},
     "layers": [{"quantization": "int8", "lowering": "conv", "depth": 3,
                 "path_widths": [...], "us": 1.23}, ...],
     "conv_layers": [{"quantization": "int8", "lowering": "grouped", "depth": 2,
                      "path_widths": [...], "pixels": 256, "kernel": 9, "us": 45.6}, ...]}

``conv_layers`` (optional) times stages of path convolutions
(``CONV_LOWERINGS``) for ``choose_conv_lowering``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from mpath_tf.errors import ConfigError
from edge_bench.agent import describe
from mpath_tf.core.costs import CostTable
from mpath_tf.core.conv import MembraneConv2D
from mpath_tf.core.supernet import run_chain
from converters.lowering import bucket_edges, padded_widths

FORMAT = "mpath-tf-lowering-profile"
# What these tables were called before they were profiles (read as they are).
OLD_FORMATS = ("mpath-tf-lowering-calibration",)
PROFILE_PATHS = (1, 2, 3, 5, 8, 13, 20, 32, 50, 80, 128, 200, 320, 500)
# per_path's cost is linear in the path count and its exports of hundreds of
# paths take minutes, so it is profiled up to here and extrapolated beyond.
MAX_PER_PATH_PROFILE = 128
PROFILES_DIR = Path(__file__).parent / "profiles"
BUNDLED = PROFILES_DIR / "local-x86_64.json"
VERSION = 3
# Block-diagonal layers per profiled stack (the upper layers of mpath-4-W).
STACK_DEPTH = 3
# Lowerings timed; bucketed is conv on padded widths, predicted from conv's costs.
PROFILED = ("per_path", "batch_matmul", "conv")


def target_profile(target: str, quantization: str | None = None) -> Path | None:
    """The bundled lowering profile measured on an emulated ``target``:
    its own (``converters/profiles/tflm-cortex-m4.json`` for
    ``tflm:cortex-m4``, ``arm64-cortex-a72.json`` for ``arm64:cortex-a72``),
    else, for another Cortex-M core, the Cortex-M4's (the same CMSIS-NN
    kernels, counted the same way); None if neither exists, or, with
    ``quantization``, if the table has no entries for it (the bundled
    tables of the emulated cores are int8's).

    Example:
        >>> target_profile("tflm:cortex-m4").name
        'tflm-cortex-m4.json'
        >>> target_profile("arm64:cortex-a72", "float32") is None
        True
    """
    for name in (target.replace(":", "-"), "tflm-cortex-m4" if target.startswith("tflm:")
                 else None):
        path = PROFILES_DIR / f"{name}.json" if name else None
        if path is not None and path.is_file():
            if quantization is None:
                return path
            mode = profiled_mode(quantization)
            with open(path) as handle:
                layers = json.load(handle).get("layers", [])
            return path if any(layer["quantization"] == mode for layer in layers) else None
    return None


def cpu_key(device: dict) -> str:
    """A file-name-safe name of a CPU kind: machine, model and SIMD features.

    Example:
        >>> cpu_key({"machine": "x86_64", "cpu_model": "AMD EPYC 7B13",
        ...          "cpu_isa": ["avx2", "fma"]})
        'x86_64-amd-epyc-7b13-avx2-fma'
    """
    parts = [device.get("machine") or "", device.get("cpu_model") or "",
             *(device.get("cpu_isa") or [])]
    return re.sub(r"[^a-z0-9_]+", "-", " ".join(parts).lower()).strip("-")


def cache_dir() -> Path:
    """Where per-CPU lowering profiles are cached: ``$MPATH_TF_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/mpath-tf``, else ``~/.cache/mpath-tf``; then
    ``profiles/`` (``calibration/`` before these tables were profiles: read too)."""
    root = os.environ.get("MPATH_TF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mpath-tf")
    return Path(root) / "profiles"


def profiled_mode(quantization: str) -> str:
    """The mode whose profiled costs a quantization uses (float16 runs
    float32 kernels on a CPU).

    Example:
        >>> profiled_mode("float16")
        'float32'
    """
    return "float32" if quantization == "float16" else quantization


@functools.cache
def _described_cpu() -> tuple:
    return tuple((k, v) for k, v in describe().items() if k != "state")


def this_cpu() -> dict:
    """This machine's CPU as a lowering profile records it (``edge_bench``'s
    device description, without the changing state; read once per process)."""
    return dict(_described_cpu())


def own_table_path(quantization: str | None = None) -> Path | None:
    """The table measured on this CPU kind (with entries for
    ``quantization``, if given): the bundled one if it matches, else the
    cached one, else None."""
    key = cpu_key(this_cpu())
    old_cache = cache_dir().with_name("calibration")  # where earlier versions cached them
    for path in (BUNDLED, cache_dir() / f"{key}.json", old_cache / f"{key}.json"):
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if cpu_key(table.get("device") or {}) == key and (
                quantization is None
                or any(l.get("quantization") == quantization for l in table.get("layers", []))):
            return path
    return None


def profile_source(profile=None, quantization: str | None = None) -> dict:
    """Which table ``auto`` uses, for the record and for a notice.

    Returns:
        ``{"table": path or "given", "cpu": this CPU's key, "own": whether
        the table was measured on this CPU kind, "table_cpu": its key}``.
    """
    here = cpu_key(this_cpu())
    if isinstance(profile, dict):
        table, path = profile, "given"
    else:
        path = Path(profile) if profile else (own_table_path(quantization) or BUNDLED)
        table = load_profile(path)
    theirs = cpu_key(table.get("device") or {})
    return {"table": str(path), "cpu": here, "table_cpu": theirs, "own": theirs == here}


def foreign_table_notice(source: dict, lowering: str = "auto") -> str | None:
    """The line that says ``auto`` used another CPU's table (None if it was
    this CPU's own); ``source`` from ``profile_source``."""
    if source["own"]:
        return None
    return (f"lowering {lowering}: no lowering profile of this CPU ({source['cpu']}); used "
            f"the table of {source['table_cpu']} (`mpath-tf export --profile-cpu` measures "
            "this CPU in about a minute, cached)")


def merge(tables: list[dict]) -> dict:
    """One table holding the layers of several profiles of one device."""
    merged = dict(tables[0])
    for part in ("layers", "conv_layers"):
        merged[part] = [layer for table in tables for layer in table.get(part, [])]
    return merged


def load_profile(path: str | os.PathLike | None = None,
                     quantization: str | None = None) -> dict:
    """Read a lowering profile (default: this CPU's own with entries for
    ``quantization``, see the module docstring, else the bundled one).

    Raises:
        ConfigError: Missing file or not a lowering profile.
    """
    path = Path(path) if path else (own_table_path(quantization) or BUNDLED)
    try:
        table = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"Cannot read the lowering profile {path}: {err}; run "
                          "`mpath-tf profile` to make one.") from None
    if not isinstance(table, dict):
        table = {}
    if table.get("format") not in (FORMAT, *OLD_FORMATS) or table.get("version") != VERSION:
        raise ConfigError(f"{path} is not a lowering profile of version {VERSION} (format "
                          f"{table.get('format')!r}, version {table.get('version')!r}); "
                          "profile again with `mpath-tf profile`.")
    _check_entries(table, path)
    return table


# The fields every entry of a table's parts needs (``kernel`` is optional).
_ENTRY_FIELDS = {"layers": ("quantization", "lowering", "depth", "path_widths", "us"),
                 "conv_layers": ("quantization", "lowering", "depth", "path_widths", "pixels",
                                 "us")}


def _check_entries(table: dict, path) -> None:
    """Refuse a table whose entries the cost models cannot read, naming the first.

    Raises:
        ConfigError: A part is not a list, or an entry lacks a field or has
            one of the wrong type.
    """
    for part, fields in _ENTRY_FIELDS.items():
        entries = table.get(part, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: '{part}' must be a list of measured entries; "
                              "profile again with `mpath-tf profile`.")
        for i, entry in enumerate(entries):
            ok = isinstance(entry, dict) and all(f in entry for f in fields) and (
                isinstance(entry["path_widths"], list) and entry["path_widths"]
                and all(isinstance(w, int) and w >= 1 for w in entry["path_widths"])
                and all(isinstance(entry[f], (int, float)) and not isinstance(entry[f], bool)
                        and entry[f] >= 0 for f in fields if f in ("depth", "pixels", "us")))
            if not ok:
                raise ConfigError(
                    f"{path}: entry {i} of '{part}' is not a measured entry (it needs "
                    f"{', '.join(fields)}; got {str(entry)[:120]}); profile again with "
                    "`mpath-tf profile` or fix that entry.")


def layer_features(path_widths: list[int], depth: int = 1) -> list[float]:
    """Cost features of a stack of ``depth`` block-diagonal layers:
    [1, depth * groups, depth * paths, depth * weights].

    ``groups`` is the number of distinct path widths (the batched lowerings
    emit one op per group and layer), ``paths`` the number of paths (per-path
    ops), ``weights`` the number of kernel weights of a layer, sum of w^2.

    Example:
        >>> layer_features([3, 3, 2], depth=2)
        [1.0, 4.0, 6.0, 44.0]
    """
    widths = np.asarray(path_widths, dtype=np.int64)
    return [1.0, float(depth * len(np.unique(widths))), float(depth * widths.size),
            float(depth * int((widths * widths).sum()))]


def fit_costs(table: dict, quantization: str) -> dict[str, np.ndarray]:
    """Per lowering, non-negative coefficients of ``layer_features`` fitted to
    every profiled layer of the table, minimizing relative error.

    Raises:
        ConfigError: The table has no entry for this quantization.
    """
    points: dict[str, list[tuple[list[float], float]]] = {}
    for layer in table["layers"]:
        if layer["quantization"] == quantization:
            points.setdefault(layer["lowering"], []).append(
                (layer_features(layer["path_widths"], layer["depth"]), layer["us"]))
    if not points:
        raise ConfigError(f"The lowering profile has no {quantization} entries; profile "
                          f"with --quantization {quantization}.")
    return {lowering: _fit(rows) for lowering, rows in points.items()}


def _fit(rows: list[tuple[list[float], float]]) -> np.ndarray:
    """Non-negative coefficients of a linear cost model over (features, us)
    points, minimizing relative error."""
    from scipy.optimize import nnls

    x = np.array([f for f, _ in rows])
    y = np.array([us for _, us in rows])
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((x / scale) / y[:, None], np.ones_like(y))
    return coef / scale


# How a stage's path convolutions (``PathConv2D``) become ops: ``grouped``, one
# grouped CONV_2D per distinct path width (DEPTHWISE_CONV_2D for single
# channels); ``split``, a STRIDED_SLICE and a CONV_2D per path, then a
# CONCATENATION. LiteRT's built-in kernels run a grouped CONV_2D on the
# reference path only (many times slower than dense), XNNPACK runs it fast:
# which wins is the target's.
CONV_LOWERINGS = ("grouped", "split")


def conv_features(path_widths: list[int], pixels: int, lowering: str = "grouped",
                  depth: int = 1, kernel: int = 9) -> list[float]:
    """Cost features of ``depth`` path convolutions of these widths on
    ``pixels`` output positions with ``kernel`` taps, lowered by ``lowering``:
    [1, depth * ops, depth * pixels * ops, depth * pixels * channels,
    multiply-adds of plain convolutions (one path), of grouped convolutions
    (several paths of one width > 1), of depthwise ones (several paths of
    width 1), depth * pixels * groups of the grouped convolutions], the
    multiply-adds counted as depth * pixels * kernel * sum w^2.

    ``grouped`` runs one op per distinct width, ``split`` one per path; each
    kind of convolution kernel gets its own cost per multiply-add and a
    grouped one a cost per group and position (a target may run grouped
    convolutions on slow reference kernels, which loop over the groups), the
    splits and joins a cost per channel moved (``benchmarks/conv_lowering.py``
    checks the picks against the measurements).

    Example:
        >>> conv_features([1, 1, 2, 2], pixels=4, depth=2)
        [1.0, 4.0, 16.0, 48.0, 0.0, 576.0, 144.0, 16.0]
        >>> conv_features([1, 1, 2, 2], pixels=4, lowering="split", depth=2)
        [1.0, 8.0, 32.0, 48.0, 720.0, 0.0, 0.0, 0.0]
    """
    widths = list(path_widths)
    runs = list(Counter(widths).items()) if lowering == "grouped" else [(w, 1) for w in widths]
    macs = depth * pixels * kernel
    return [1.0, float(depth * len(runs)), float(depth * pixels * len(runs)),
            float(depth * pixels * sum(widths)),
            float(macs * sum(w * w for w, n in runs if n == 1)),
            float(macs * sum(n * w * w for w, n in runs if n > 1 and w > 1)),
            float(macs * sum(n for w, n in runs if n > 1 and w == 1)),
            float(depth * pixels * sum(n for w, n in runs if n > 1 and w > 1))]


def has_conv_entries(table: dict, quantization: str) -> bool:
    """Whether ``table`` times path convolutions in this quantization.

    Example:
        >>> has_conv_entries({"conv_layers": [{"quantization": "int8"}]}, "float32")
        False
    """
    return any(layer["quantization"] == quantization for layer in table.get("conv_layers", []))


def fit_conv_costs(table: dict, quantization: str) -> dict[str, np.ndarray]:
    """Per conv lowering, coefficients of ``conv_features`` fitted to the
    table's ``conv_layers`` in this quantization ({} when it has none)."""
    points: dict[str, list[tuple[list[float], float]]] = {}
    for layer in table.get("conv_layers", []):
        if layer["quantization"] == quantization:
            points.setdefault(layer["lowering"], []).append(
                (conv_features(layer["path_widths"], layer["pixels"], layer["lowering"],
                               layer["depth"], layer.get("kernel", 9)), layer["us"]))
    return {lowering: _fit(rows) for lowering, rows in points.items()}


def choose_conv_lowering(table: dict, path_widths: list[int], pixels: int, quantization: str,
                         kernel: int = 9) -> str | None:
    """The conv lowering (``CONV_LOWERINGS``) with the lowest predicted cost
    for a path convolution, from the table's ``conv_layers``; None if the
    table has no conv entries in this quantization (the caller keeps
    ``grouped``, the exports' default).

    Example:
        >>> table = {"conv_layers": [
        ...     {"quantization": "int8", "lowering": lowering, "path_widths": [16 // b] * b,
        ...      "pixels": 64, "depth": 1, "us": 10.0 * b if lowering == "split" else 35.0}
        ...     for b in (1, 2, 4, 8) for lowering in CONV_LOWERINGS]}
        >>> choose_conv_lowering(table, [4, 4, 8], 64, "int8"), choose_conv_lowering(
        ...     table, [2] * 8, 64, "int8"), choose_conv_lowering(table, [2] * 8, 64, "float32")
        ('split', 'grouped', None)
    """
    if not has_conv_entries(table, quantization):
        return None
    if len(set(path_widths)) == len(path_widths):
        return "grouped"  # no two paths of one width: both lowerings are one CONV_2D per path
    coefficients = fit_conv_costs(table, quantization)
    costs = {lowering: float(np.array(conv_features(path_widths, pixels, lowering, 1, kernel))
                             @ coef) for lowering, coef in coefficients.items()}
    return min(costs, key=costs.get)


def predicted_costs(table: dict, path_widths: list[int], quantization: str,
                    depth: int = 1, coefficients: dict | None = None) -> dict[str, float]:
    """Predicted latency (us) of a stack of ``depth`` layers with these path
    widths, per lowering.

    The cost model is linear in ``layer_features`` (a fixed part, a cost per
    op group, per path and per weight), fitted per lowering on the table's
    profiled layers, so it applies to irregular path widths that were never
    profiled (a derived model's paths rarely have equal widths).
    ``coefficients``: ``fit_costs(table, quantization)`` when the caller has
    it (predicting many stacks from one table).
    """
    features = np.array(layer_features(path_widths, depth))
    return {lowering: float(features @ coef)
            for lowering, coef in (coefficients or fit_costs(table, quantization)).items()}


def choose_lowering(table: dict, path_widths: list[int], quantization: str,
                    depth: int = 1, excluded=(), neighbours: int = 0) -> str:
    """The lowering with the lowest predicted cost for a stack of ``depth``
    layers, other than those in ``excluded``.

    ``bucketed`` is weighed when ``conv`` is profiled: its cost is conv's
    on the padded widths plus the weights each padded neuron adds to the
    layers around the stack (``neighbours`` per neuron, see ``bucket_plan``).

    Example:
        >>> table = {"layers": [
        ...     {"quantization": "float32", "lowering": lowering, "path_widths": [8 // b] * b,
        ...      "depth": 1, "us": float(b) if lowering == "per_path" else 1.0}
        ...     for b in (1, 2, 4, 8) for lowering in ("per_path", "conv")]}
        >>> choose_lowering(table, [2, 2, 2, 2], "float32")
        'conv'
    """
    return auto_cost(table, path_widths, quantization, depth, excluded, neighbours)[0]


def auto_cost(table: dict, path_widths: list[int], quantization: str, depth: int = 1,
              excluded=(), neighbours: int = 0,
              coefficients: dict | None = None) -> tuple[str, float]:
    """The lowering ``choose_lowering`` picks for a stack and its predicted
    cost, in the table's unit (``unit``: us, or instructions on an emulated
    core): what the stack costs on the table's device once ``auto`` lowered it.
    ``coefficients``: ``fit_costs(table, quantization)``, fitted once by a
    caller that predicts many stacks.

    Example:
        >>> table = {"layers": [
        ...     {"quantization": "float32", "lowering": lowering, "path_widths": [8 // b] * b,
        ...      "depth": 1, "us": float(b) if lowering == "per_path" else 1.0}
        ...     for b in (1, 2, 4, 8) for lowering in ("per_path", "conv")]}
        >>> lowering, cost = auto_cost(table, [2, 2, 2, 2], "float32")
        >>> lowering, round(cost, 3)
        ('conv', 1.0)
    """
    coefficients = coefficients or fit_costs(table, quantization)
    costs = {lowering: cost for lowering, cost in
             predicted_costs(table, path_widths, quantization, depth, coefficients).items()
             if lowering not in excluded}
    if len(path_widths) == 1:
        return "per_path", costs.get("per_path", min(costs.values()))
    if "conv" in costs and "bucketed" not in excluded and len(set(path_widths)) > 1:
        cost = _bucketed_cost(table, quantization, depth, neighbours, path_widths,
                              coefficients["conv"])
        edges = bucket_edges(path_widths, cost)
        if edges != sorted(set(path_widths)):  # padding pays off
            costs["bucketed"] = cost(padded_widths(path_widths, edges))
    best = min(costs, key=costs.get)
    return best, costs[best]


# The most zero weights padding may add, as a share of the stack's own weights
# (blocks and the layers around it): a file a quarter larger at most, however
# much faster the cost model says a wider padding would run.
MAX_PADDING = 0.25


def _bucketed_cost(table: dict, quantization: str, depth: int, neighbours: int, path_widths,
                   coef: np.ndarray | None = None):
    """``cost(padded)``, for ``lowering.bucket_edges``: conv's profiled cost
    of the stack with each path widened to ``padded`` plus the neighbouring
    layers' extra weights at conv's cost per weight; infinite beyond
    ``MAX_PADDING`` (``coef``: conv's fitted coefficients, if known)."""
    coef = fit_costs(table, quantization)["conv"] if coef is None else coef
    widths = np.asarray(path_widths, dtype=np.int64)
    squares = int((widths * widths).sum())
    own = depth * squares + neighbours * int(widths.sum())

    def cost(padded) -> float:
        padded = np.asarray(padded, dtype=np.int64)
        extra = int(padded.sum() - widths.sum())
        added = depth * (int((padded * padded).sum()) - squares) + neighbours * extra
        if added > MAX_PADDING * own:
            return float("inf")
        return float(np.array(layer_features(padded, depth)) @ coef) + coef[3] * neighbours * extra

    return cost


def bucket_plan(table: dict, path_widths: list[int], quantization: str,
                depth: int = 1, neighbours: int = 0) -> list[int]:
    """Bucket edges for the ``bucketed`` lowering: the padding of the paths
    that the profiled cost of the ``conv`` lowering (one grouped op per
    distinct width and layer) predicts fastest (``lowering.bucket_edges``),
    counting that each padded neuron also adds ``neighbours`` weights to the
    layers before and after the stack (their fan-in + 1 + fan-out), and
    adding at most ``MAX_PADDING`` of the stack's own weights.

    Example:
        >>> table = {"layers": [
        ...     {"quantization": "float32", "lowering": "conv", "path_widths": ws, "depth": 1,
        ...      "us": 5.0 * len(set(ws)) + 0.01 * sum(w * w for w in ws)}
        ...     for ws in ([8] * 4, [4] * 8, [2] * 16, [1, 3] * 8, [2, 6] * 4, [1, 2, 5] * 4)]}
        >>> bucket_plan(table, [5, 6, 7, 8, 9, 10, 30], "float32")
        [10, 30]
        >>> bucket_plan(table, [5, 6, 7, 8, 9, 10, 30], "float32", neighbours=200)
        [6, 8, 10, 30]
    """
    return bucket_edges(path_widths,
                        _bucketed_cost(table, quantization, depth, neighbours, path_widths))


def latency_costs(width: int, depth: int, profile: dict | None = None,
                  quantization: str = "int8", lowering: str = "per_path"):
    """The latency ``CostTable`` of mpath-<depth>-<width> from a lowering profile.

    Args:
        width: Network width W.
        depth: Hidden layers.
        profile: A table of ``profile`` (default: the bundled one).
        quantization: ``float32``, ``dynamic`` or ``int8``.
        lowering: Lowering whose fitted costs are used.

    Returns:
        A ``mpath_tf.core.costs.CostTable`` of kind ``latency`` (us).

    Raises:
        ConfigError: The profile has no entry for this quantization or lowering.
    """
    profile = profile or load_profile()
    coefficients = fit_costs(profile, quantization)
    if lowering not in coefficients:
        raise ConfigError(f"The profile of {profile.get('target')} has no {lowering} "
                          f"{quantization} entries; choose one of {sorted(coefficients)}.")
    return CostTable.latency(width, depth, coefficients[lowering], profile.get("target"),
                             quantization, lowering)


def stack_latency_costs(supernet, profile: dict | None = None,
                        quantization: str = "int8") -> list:
    """The latency ``CostTable`` of each stack of a built supernet (a CNN, a
    ResNet, a user's model), for a gated ``Supernet``'s cost term.

    A Dense stack's table is ``latency_costs``'s (per-path lowering). A
    convolution stack's block cost is what the split lowering's fitted conv
    costs add per path (a slice and a convolution of width w, on each
    membrane layer's output positions), so it is additive over paths as the
    cost term needs; the grouped lowering shares ops between paths of one
    width, so for it this is an upper bound.

    Args:
        supernet: A built ``mpath_tf.core.supernet.Supernet``.
        profile: A table of ``profile`` (default: the bundled one).
        quantization: ``float32``, ``dynamic`` or ``int8``.

    Returns:
        One ``CostTable`` of kind ``latency`` per stack.

    Raises:
        ConfigError: The profile lacks this quantization, or has no
            path-convolution entries for a convolution stack.
    """
    profile = profile or load_profile()
    shapes = {}

    def record(layer, shape):
        shapes[layer.name] = tuple(layer.compute_output_shape(shape))
        return shapes[layer.name]

    shape = (None, *supernet.example_shape)
    if supernet.trunk is not None:
        shape = tuple(supernet.trunk.compute_output_shape(shape))
    run_chain(supernet.chain, shape, record)
    tables = []
    for names in supernet.stacks:
        layers = [supernet.get_layer(name) for name in names]
        width, depth = layers[0].width, len(names) + 1
        if not isinstance(layers[0], MembraneConv2D):
            tables.append(latency_costs(width, depth, profile, quantization))
            continue
        if not has_conv_entries(profile, quantization):
            raise ConfigError(
                f"The profile of {profile.get('target')} has no path-convolution "
                f"{quantization} entries, so it cannot price the convolution stack "
                f"{names[0]}..; profile with them (`mpath-tf profile --conv-channels "
                f"{width} --output FILE`) and pass --cost-table FILE, or use --cost params.")
        coefficients = fit_conv_costs(profile, quantization)["split"]
        block = tuple(float(sum(
            coefficients[1:] @ np.asarray(conv_features(
                [w], int(np.prod(shapes[layer.name][1:3])), "split", 1,
                int(np.prod(layer.kernel_size))), "float64")[1:]
            for layer in layers)) for w in range(1, width + 1))
        tables.append(CostTable("latency", width, depth, block, "us",
                                profile.get("target"), quantization, "split").validate())
    return tables
