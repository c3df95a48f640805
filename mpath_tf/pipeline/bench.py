"""The work behind ``mpath-tf bench``: latency of derived models on a target.

For a search run, the dense equivalent MLP and the derived model at each
chosen path count are exported in each quantization, timed on the target
(``edge_bench``), and summarized::

    RUN/bench/models/<model>_<quantization>.tflite   exports (shared by targets;
                                       <file>.json: its lowerings and table)
    (below, <target> is the target's slug, followed by -<lowering> for a
    lowering other than per_path: each verdict is about one way of exporting)
    RUN/bench/<target>/settings.json   target, device, timing settings, versions
    RUN/bench/<target>/latency.jsonl   journal: one row per measurement
    RUN/bench/<target>/latency.csv     the table
    RUN/bench/<target>/latency.png     latency vs parameters and vs path count
    RUN/bench/<target>/verdict.json    the parameter-count proxy's verdict
    RUN/bench/<target>/latency_model.json   per-device latency model

Rerunning resumes: finished exports and measurements are not redone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path

from mpath_tf.errors import ConfigError, RunDirError
from mpath_tf.storage import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    library_versions,
)
from mpath_tf.core.saving import load_model
from mpath_tf.pipeline.rundir import RunDir
from edge_bench import BenchSettings, Journal, get_target, measure_models
from edge_bench.analysis import LatencyModel, proxy_verdict
from edge_bench.targets import target_slug
from mpath_tf.pipeline.plotting import plot_latency

QUANTIZATION_MODES = ("float32", "dynamic", "int8")

CSV_COLUMNS = (
    "model", "kind", "paths", "quantization", "lowering", "chosen_lowering", "parameters", "macs", "model_bytes", "status",
    "median_us", "p90_us", "min_us", "mean_us", "std_us", "median_ci_low_us",
    "median_ci_high_us", "runs", "repeat_spread", "partitions", "undelegated_ops",
    "instructions_per_inference", "arena_bytes", "flash_bytes", "flash_bytes_no_metadata",
    "suspect", "error",
)


def default_paths(run: RunDir) -> list[int]:
    """The run's sampled path counts plus 1 (the dense-shaped derived model)."""
    from mpath_tf.pipeline.steps import sample_path_counts

    sampled = [int(b) for b in run.state.get("samples", {})] or sample_path_counts(
        run.config.width, run.config.samples)
    return sorted({1, *sampled})


def fully_connected_ops(model) -> int:
    """FULLY_CONNECTED ops of the exported model: one per Dense layer, one per
    path of each ``PathDense`` layer (the ``per_path`` lowering)."""
    import keras

    from mpath_tf.core.layers import PathDense

    return sum(len(layer.path_widths) if isinstance(layer, PathDense) else 1
               for layer in model.layers if isinstance(layer, (PathDense, keras.layers.Dense)))


def multiply_adds(model) -> int | None:
    """Multiply-adds of one inference of an MLP (dense or multipath): one per
    kernel weight of its Dense and block-diagonal layers; None for other
    networks (a convolution's count depends on its output size)."""
    import keras

    from mpath_tf.core.layers import PathDense

    layers = [l for l in model.layers if l.weights]
    if not all(isinstance(l, (PathDense, keras.layers.Dense, keras.layers.Normalization))
               for l in layers):
        return None
    return sum(math.prod(w.shape) for l in layers
               if not isinstance(l, keras.layers.Normalization)
               for w in l.weights if w.path.endswith("kernel"))


def measured_latency(run_dir: str | os.PathLike) -> dict[tuple[str, str], dict[int, float]]:
    """Median latency (us) of every benchmarked derived model of a run.

    Returns:
        ``{(target, quantization): {b: microseconds}}`` from every
        ``RUN/bench/<target>/latency.csv`` (target named as in its settings,
        followed by the lowering when it is not per_path). Counting targets
        (instructions, ``tflm:CORE``) have no times and are left out.
    """
    out: dict[tuple[str, str], dict[int, float]] = {}
    for table in sorted((Path(run_dir) / "bench").glob("*/latency.csv")):
        settings_path = table.parent / "settings.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        target = settings.get("target", table.parent.name)
        if settings.get("lowering", "per_path") != "per_path":
            target += f" {settings['lowering']}"
        with open(table, newline="") as f:
            for row in csv.DictReader(f):
                if row["kind"] == "mpath" and row["status"] == "ok" and row["median_us"]:
                    out.setdefault((target, row["quantization"]), {})[int(row["paths"])] = (
                        float(row["median_us"]))
    return out


def predict_latency(run_dir: str | os.PathLike, target: str = "local",
                    quantization: str = "float32") -> dict[int, float]:
    """Predicted latency (us) of every path count from the run's latency model.

    Uses ``RUN/bench/<target>/latency_model.json`` (written by ``bench_run``)
    and the architecture's parameter and FULLY_CONNECTED-op counts, so no
    model is exported or measured.

    Args:
        run_dir: A run directory benchmarked on ``target``.
        target: The target name used with ``bench_run``.
        quantization: ``float32``, ``dynamic`` or ``int8``.

    Returns:
        ``{b: microseconds}`` for b = 1 .. W.

    Raises:
        RunDirError: No latency model for this target and quantization.
    """
    from mpath_tf.core.derivation import parameter_counts

    run = RunDir.open(run_dir)
    path = run.path / "bench" / target_slug(target) / "latency_model.json"
    models = json.loads(path.read_text())["models"] if path.is_file() else {}
    if quantization not in models:
        raise RunDirError(
            f"{run.path} has no {quantization} latency model for target {target}; run "
            f"`mpath-tf bench {run.path} --target {target}` first."
        )
    model = LatencyModel.from_dict(models[quantization])
    counts = parameter_counts(run.load_supernet())
    depth = run.config.depth
    features = [{"parameters": counts[b], "fc_ops": (depth - 1) * b + 2} for b in sorted(counts)]
    return dict(zip(sorted(counts), model.predict(features).tolist()))


def _export_all(run: RunDir, paths: list[int], quantizations, lowering: str,
                log, target: str = "local") -> list[tuple[dict, Path]]:
    """Export the dense MLP and each derived model; reuse exports already on disk.

    For a TFLM target, ``auto`` reads that target's lowering profile and
    never keeps a file TFLM refuses (``converters.tflm.tflm_convert``); on
    an ARM core, ``auto`` and ``bucketed`` read the core's bundled table. Each
    file has a record beside it (``<file>.json``: the lowering of each layer
    and the sha256 of the lowering profile ``auto``/``bucketed`` read), so
    a file exported with a table that has changed since is exported again;
    each row records the lowering the stack got (``chosen_lowering``)."""
    from converters import choose_lowerings, export_tflite, get_quantization
    from converters.profiles import target_profile
    from converters.tflm import is_tflm_target, tflm_convert
    from mpath_tf.core.derivation import derive, to_dense

    config = run.config
    models_dir = run.path / "bench" / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    supernet = None
    data = None
    jobs = []
    # a multipath model with auto on a TFLM target: that target's own choice;
    # auto or bucketed on an ARM core with a bundled table: that core's (looked
    # up once per quantization, as the digest of the table each export reads)
    for_tflm = is_tflm_target(target) and lowering == "auto"
    own_tables = {q: target_profile(target, q) if not for_tflm and target != "local"
                  and lowering in ("auto", "bucketed") else None for q in quantizations}
    digests = {q: _table_digest(lowering, target if for_tflm or own_tables[q] else None, q)
               for q in quantizations}
    for kind, count in [("dense", None)] + [("mpath", b) for b in paths]:
        name = "dense" if kind == "dense" else f"paths-{count}"
        suffix = "" if lowering == "per_path" or kind == "dense" else f"_{lowering}"
        model = None
        for quantization in quantizations:
            own_table = None if kind == "dense" else own_tables[quantization]
            tflm_file = for_tflm and kind != "dense"
            own = f"-{target_slug(target)}" if tflm_file or own_table else ""
            path = models_dir / f"{name}{suffix}{own}_{quantization}.tflite"
            if model is None:
                if supernet is None:
                    supernet = run.load_supernet()
                if kind == "dense":  # the same layers, fully connected
                    model = to_dense(supernet)
                elif run.model_path(count).is_file():
                    model = load_model(run.model_path(count))
                else:
                    model = derive(supernet, count)
            record_path = path.with_name(path.name + ".json")
            table = None if kind == "dense" else digests[quantization]
            if path.is_file() and table and (not record_path.is_file() or json.loads(
                    record_path.read_text()).get("profile_sha256") != table):
                log(f"  exporting {path.name} again: the lowering profile changed since")
                path.unlink()
            if not path.is_file():
                if get_quantization(quantization).calibrated and data is None:
                    from mpath_tf.pipeline.steps import load_data

                    data = load_data(config)
                log(f"  exporting {path.name}")
                classes = run.meta.get("classes")
                if tflm_file:
                    content, record = tflm_convert(model, get_quantization(quantization),
                                                   data.x_train if data is not None else None,
                                                   target=target, log=log)
                    atomic_write_bytes(path, content)
                    kept = record["lowerings"]
                else:
                    export_tflite(model, path, get_quantization(quantization),
                                  data.x_train if data is not None else None, lowering=lowering,
                                  profile=own_table,
                                  labels=None if classes is None else [str(c) for c in classes])
                    kept = choose_lowerings(model, quantization, lowering, own_table)
                atomic_write_json(record_path, {"lowerings": kept, "profile_sha256": table})
            # what the file holds (for a TFLM target: auto's choice, or the next if refused)
            chosen = (set(json.loads(record_path.read_text())["lowerings"].values())
                      if record_path.is_file()
                      else set(choose_lowerings(model, quantization, lowering,
                                                own_table).values()))
            jobs.append(({"model": name, "kind": kind, "paths": count if count else 1,
                          "quantization": quantization, "lowering": lowering,
                          "chosen_lowering": ",".join(sorted(chosen)) or "dense",
                          "parameters": int(model.count_params()),
                          "macs": multiply_adds(model),
                          "fc_ops": fully_connected_ops(model)},
                         path))
    return jobs


def _table_digest(lowering: str, own_target: str | None, quantization: str) -> str | None:
    """sha256 of the lowering profile an ``auto`` or ``bucketed`` export
    reads (``own_target``'s bundled one, else this CPU's; None for the
    lowerings that read none), so an export made with an older table is made again."""
    from converters.profiles import profiled_mode, profile_source, target_profile

    if lowering not in ("auto", "bucketed"):
        return None
    table = (target_profile(own_target) if own_target
             else profile_source(None, profiled_mode(quantization))["table"])
    return hashlib.sha256(Path(table).read_bytes()).hexdigest() if table else None


def bench_run(
    run_dir: str | os.PathLike,
    target: str = "local",
    paths: list[int] | None = None,
    quantizations: tuple[str, ...] = QUANTIZATION_MODES,
    settings=None,
    fit_paths: list[int] | None = None,
    target_options: dict | None = None,
    repeats: int = 3,
    lowering: str = "per_path",
    log=print,
    profile_cpu: bool = False,
) -> dict:
    """Benchmark the dense MLP and derived models of a search run on a target.

    Args:
        run_dir: A run directory with a trained supernet.
        target: ``local``, ``ssh://[user@]host[:port]``, ``adb``, ``adb:SERIAL``,
            ``tflm`` or ``tflm:CORE`` (``edge_bench.get_target``).
        paths: Path counts to measure (default: the run's samples plus 1).
        quantizations: Any of ``float32``, ``dynamic``, ``int8``.
        settings: ``edge_bench.BenchSettings`` (default: its defaults).
        fit_paths: Path counts the latency model is fitted on (default: up to
            5 spread over the measured ones); the others are its held-out test.
        target_options: Options of the target (``python``, ``ssh_config``,
            ``identity``, ``benchmark_model``, ``adb``).
        repeats: Tries per model, in separate passes over all models; the
            median try is reported (see ``edge_bench.measure_models``).
        lowering: How the block-diagonal layers are exported (see
            ``converters.convert``); ``auto`` uses this CPU's profile
            table, else the bundled one.
        log: Progress printer.
        profile_cpu: On target ``local`` with ``auto`` or ``bucketed``: if this
            CPU kind has no lowering profile, measure one first (under a
            minute per mode, cached; ``converters.profiling.profile_this_cpu``).

    Returns:
        A report: output files, the proxy verdict and the latency model's
        held-out hit rate, per quantization.

    Raises:
        RunDirError: No run or no trained supernet there.
        ConfigError: Bad path counts, quantization, target or settings.
        TargetError: The target cannot be reached (results so far are kept).
    """
    from converters.quantization import QUANTIZATIONS

    run = RunDir.open(run_dir)
    width = run.config.width
    paths = sorted(set(paths)) if paths else default_paths(run)
    bad = [b for b in paths if not 1 <= b <= width]
    if bad:
        raise ConfigError(f"`paths` must be in [1, {width}] for this run. Received: paths={bad}")
    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown or not quantizations:
        raise ConfigError(f"`quantization` must be among {', '.join(QUANTIZATIONS)}. Received: "
                          f"{', '.join(unknown) or 'none'}")
    settings = settings or BenchSettings()
    bench_target = get_target(target, **(target_options or {}))
    # one folder per target and lowering: each verdict is about one way of exporting
    out = run.path / "bench" / (target_slug(bench_target.name)
                                + ("" if lowering == "per_path" else f"-{lowering}"))
    device = bench_target.describe()  # an unreachable target fails before any export
    if profile_cpu and target == "local" and lowering in ("auto", "bucketed"):
        from converters.profiling import ensure_own_table
        from converters.profiles import profiled_mode

        for mode in sorted({profiled_mode(q) for q in quantizations}):
            ensure_own_table(mode, log)
    out.mkdir(parents=True, exist_ok=True)  # (and leaves no empty folder)
    log(f"exporting {len(paths) + 1} models x {len(quantizations)} quantizations")
    jobs = _export_all(run, paths, quantizations, lowering, log, bench_target.name)
    atomic_write_json(out / "settings.json", {
        "target": bench_target.name, "device": device, "settings": settings.to_dict(),
        "paths": paths, "quantizations": list(quantizations), "repeats": repeats,
        "lowering": lowering,
        "versions": library_versions(),
    })
    log(f"measuring on {bench_target.name} ({device.get('cpu_model') or device.get('model') or device.get('core') or device.get('runtime')})")
    rows = measure_models(bench_target, jobs, Journal(out / "latency.jsonl"), settings,
                          repeats=repeats, log=log)

    write_csv(rows, out / "latency.csv")
    verdict = proxy_verdict(rows)
    models = LatencyModel.fit_rows(rows, fit_paths)
    evaluation = {q: m.evaluate(rows) for q, m in models.items()}
    atomic_write_json(out / "latency_model.json", {
        "target": bench_target.name, "device": device, "settings": settings.to_dict(),
        "models": {q: m.to_dict() for q, m in models.items()},
    })
    atomic_write_json(out / "verdict.json", {"proxy": verdict, "latency_model": evaluation})

    plot_latency(rows, out / "latency.png", title=f"{run.path.name} on {bench_target.name}")
    failed = [r for r in rows if r["status"] != "ok"]
    return {
        "output": str(out),
        "measured": len(rows) - len(failed),
        "failed": [{"model": r["model"], "quantization": r["quantization"], "error": r["error"]}
                   for r in failed],
        "proxy": verdict,
        "latency_model": evaluation,
    }


def write_csv(rows: list[dict], path: Path) -> None:
    """The result rows as a flat table (one line per model and quantization)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = {k: row.get(k) for k in CSV_COLUMNS}
        flat["model"] = Path(row["model"]).name if row.get("model") else None
        flat.update({k: v for k, v in (row.get("stats") or {}).items() if k in CSV_COLUMNS})
        delegate = row.get("delegate") or {}
        flat["partitions"] = delegate.get("partitions")
        flat["undelegated_ops"] = sum((delegate.get("undelegated_ops") or {}).values()) \
            if "undelegated_ops" in delegate else None
        writer.writerow(flat)
    atomic_write_text(path, buffer.getvalue())
