"""Compact-MLP baselines against mpath-tf's derived MpathNN at the same budget.

For mlp-4-500 on each dataset and budgets of 25%, 50% and 75% of its
parameters, every method of ``mpath_tf.baselines`` (uniform scaling,
NeuralScale, MorphNet, group lasso, sparse variational dropout, tfmot
magnitude pruning) and mpath-tf (one-shot mpath-4-500, the path count whose
derived network is nearest the budget, fine-tuned) are trained with
``--seeds`` seeds. The structured methods search once per seed and train the
found MLP from scratch for ``--epochs``; magnitude pruning trains the dense
MLP ``--epochs`` while pruning; mpath-tf trains the supernet ``--epochs``
and fine-tunes the derived model ``--epochs``. The dense mlp-4-500 (same
epochs) is the 100% row. The seed-0 model of every cell is exported to
float32 and full-int8 ``.tflite`` and timed with edge_bench's local target.

Prints one markdown table per dataset (test accuracy mean and standard
deviation over seeds, parameters, file sizes, median latencies, search and
training wall time) and writes an accuracy-vs-latency scatter plot.

Run from a clean checkout (after the README's install command):

    python benchmarks/baselines.py --data-dir ../shared/datasets --cpus 1

Every finished unit is journaled under ``--out`` (resumable: a rerun skips
finished trainings, exports and measurements).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from paper_reproduction import Journal  # noqa: E402

DEPTH, WIDTH = 4, 500
MODES = ("float32", "int8")
ORDER = ("dense", "mpath", "uniform", "neuralscale", "morphnet", "group_lasso",
         "variational_dropout", "magnitude")


def run_dir(args) -> Path:
    path = args.out / f"e{args.epochs}-se{args.search_epochs}-s{args.seeds}-b{args.batch_size}"
    (path / "models").mkdir(parents=True, exist_ok=True)
    return path


def record(journal, key, model, data, out: Path | None, **values):
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.training.loop import accuracy

    if out is not None:  # seed 0: kept for the export
        atomic_save_model(model, out)
    rec = journal.add(key, test_accuracy=accuracy(model, data.x_test, data.y_test), **values)
    print(f"{key}: test accuracy {rec['test_accuracy']:.4f}, {rec['parameters']} parameters",
          flush=True)
    return rec


def train_units(journal, data, args, folder: Path) -> None:
    """Every (method, budget, seed) unit not in the journal yet."""
    from mpath_tf import build_mlp, build_supernet, derive
    from mpath_tf.baselines import STRUCTURED, MLPSpec, compress, search
    from mpath_tf.core.derivation import parameter_counts
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.core.saving import load_model
    from mpath_tf.training.loop import train

    spec = MLPSpec(data.input_shape, (WIDTH,) * DEPTH, data.num_classes)
    shares = [float(s) for s in args.budgets.split(",")]
    budgets = {s: int(round(s * spec.parameters)) for s in shares}
    ds = data.name

    def model_path(method, share, seed):
        return folder / "models" / f"{ds}-{method}-{share}.keras" if seed == 0 else None

    for seed in range(args.seeds):
        key = f"{ds}/dense/1.0/seed{seed}"
        if not journal.get(key):
            model = build_mlp(data.input_shape, data.num_classes, DEPTH, WIDTH, seed=seed)
            start = time.perf_counter()
            train(model, data, args.epochs, batch_size=args.batch_size)
            record(journal, key, model, data, model_path("dense", 1.0, seed), method="dense",
                   share=1.0, parameters=spec.parameters, widths=list(spec.widths),
                   search_seconds=0.0, train_seconds=time.perf_counter() - start)
        for method in STRUCTURED:
            todo = [s for s in shares if not journal.get(f"{ds}/{method}/{s}/seed{seed}")]
            if not todo:
                continue
            options = {} if method in ("uniform", "neuralscale") else {"search_epochs": args.search_epochs}
            found = search(method, spec, data, seed=seed, batch_size=args.batch_size, **options)
            for share in todo:
                result = found.train(data, budgets[share], args.epochs, seed, args.batch_size)
                record(journal, f"{ds}/{method}/{share}/seed{seed}", result.model, data,
                       model_path(method, share, seed), method=method, share=share,
                       parameters=result.parameters, widths=result.widths,
                       search_seconds=result.search_seconds, train_seconds=result.train_seconds,
                       details=result.details)
        for share in shares:
            key = f"{ds}/magnitude/{share}/seed{seed}"
            if not journal.get(key):
                result = compress("magnitude", spec, data, budgets[share], epochs=args.epochs,
                                  seed=seed, batch_size=args.batch_size)
                record(journal, key, result.model, data, model_path("magnitude", share, seed),
                       method="magnitude", share=share, parameters=result.parameters,
                       widths=result.widths, search_seconds=0.0,
                       train_seconds=result.train_seconds, details=result.details)
        # mpath-tf: one supernet per seed, the nearest path count per budget
        todo = [s for s in shares if not journal.get(f"{ds}/mpath/{s}/seed{seed}")]
        if not todo:
            continue
        supernet_file = folder / "models" / f"{ds}-supernet-seed{seed}.keras"
        key = f"{ds}/mpath/supernet/seed{seed}"
        if journal.get(key) and supernet_file.is_file():
            supernet = load_model(supernet_file)
        else:
            supernet = build_supernet(data.input_shape, data.num_classes, DEPTH, WIDTH, seed=seed)
            start = time.perf_counter()
            train(supernet, data, args.epochs, batch_size=args.batch_size)
            atomic_save_model(supernet, supernet_file)
            journal.add(key, seconds=time.perf_counter() - start)
        one_shot = journal.get(key)["seconds"]
        counts = parameter_counts(supernet)
        for share in todo:
            b = min(counts, key=lambda p: abs(counts[p] - budgets[share]))
            model = derive(supernet, b)
            start = time.perf_counter()
            train(model, data, args.epochs, batch_size=args.batch_size)
            record(journal, f"{ds}/mpath/{share}/seed{seed}", model, data,
                   model_path("mpath", share, seed), method="mpath", share=share,
                   parameters=counts[b], paths=b, search_seconds=one_shot,
                   train_seconds=time.perf_counter() - start)


def export_and_time(journal, data, args, folder: Path) -> dict:
    """Export every seed-0 model in both modes and time it; returns rows by (method, share, mode)."""
    import numpy as np

    from converters import export_tflite, get_quantization
    from edge_bench import BenchSettings, LocalTarget, measure_models
    from edge_bench import Journal as LatencyJournal
    from mpath_tf.core.saving import load_model

    representative = np.asarray(data.x_train[:500], "float32")
    jobs = []
    for model_file in sorted((folder / "models").glob(f"{data.name}-*.keras")):
        method, share = model_file.stem[len(data.name) + 1:].rsplit("-", 1)
        if method == "supernet":
            continue
        model = None
        for mode in MODES:
            path = folder / "tflite" / f"{model_file.stem}-{mode}.tflite"
            if not path.is_file():
                model = model or load_model(model_file)
                path.parent.mkdir(exist_ok=True)
                export_tflite(model, path, get_quantization(mode), representative, "auto")
            jobs.append(({"method": method, "share": float(share), "quantization": mode}, path))
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c))
    rows = measure_models(LocalTarget(), jobs, LatencyJournal(folder / "latency.jsonl"), settings,
                          repeats=args.repeats, log=lambda line: print(line, flush=True))
    out = {}
    for (labels, path), row in zip(jobs, rows):
        out[(labels["method"], labels["share"], labels["quantization"])] = {
            "size_kb": path.stat().st_size / 1024,
            "median_us": row["stats"]["median_us"] if row["status"] == "ok" else None}
    return out


def report(journal, data, latency: dict, args, figure: Path) -> str:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {}
    for rec in journal.records.values():
        if rec["key"].startswith(f"{data.name}/") and "test_accuracy" in rec:
            units.setdefault((rec["method"], rec["share"]), []).append(rec)
    lines = [f"| budget | method | parameters (% of dense) | test accuracy, mean ± sd "
             f"({args.seeds} seeds) | float32 KB | int8 KB | float32 us | int8 us "
             f"| search s | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    points = []
    shares = sorted({share for _, share in units})
    dense_params = units[("dense", 1.0)][0]["parameters"]
    for share in shares:
        for method in ORDER:
            recs = units.get((method, share))
            if not recs:
                continue
            acc = np.array([r["test_accuracy"] for r in recs])
            params = recs[0]["parameters"]
            name = method + (f" ({recs[0]['paths']} paths)" if method == "mpath" else "")
            if method == "magnitude":
                name += " (non-zero)"
            cells = [latency.get((method, share, m), {}) for m in MODES]
            fmt = [f"{c['size_kb']:.0f}" if c else "-" for c in cells] + [
                f"{c['median_us']:.1f}" if c and c["median_us"] else "-" for c in cells]
            search_s = np.mean([r["search_seconds"] for r in recs])
            train_s = np.mean([r["train_seconds"] for r in recs])
            lines.append(f"| {share:.0%} | {name} | {params:,} ({100 * params / dense_params:.1f}%) "
                         f"| {acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.4f} "
                         f"| {' | '.join(fmt)} | {search_s:.1f} | {train_s:.1f} |")
            points.append((method, share, acc.mean(), [c.get("median_us") for c in cells]))
    fig, axes = plt.subplots(1, len(MODES), figsize=(11, 4.2))
    markers = dict(zip(ORDER, "os^vD<>P"))
    for ax, (k, mode) in zip(axes, enumerate(MODES)):
        for method in ORDER:
            pts = [(p[3][k], p[2]) for p in points if p[0] == method and p[3][k]]
            if pts:
                ax.scatter(*zip(*pts), marker=markers[method], label=method)
        ax.set_xlabel(f"{mode} latency, local LiteRT, 1 thread (us)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{data.name} mlp-4-500 budgets, {mode}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--datasets", default="mnist")
    parser.add_argument("--budgets", default="0.25,0.5,0.75", help="shares of the dense parameters")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cpus", default="", help="pin the timing to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from mpath_tf.data import load_dataset

    folder = run_dir(args)
    journal = Journal(folder / "journal.jsonl")
    tables = []
    for name in args.datasets.split(","):
        data = load_dataset(name, data_dir=args.data_dir)
        train_units(journal, data, args, folder)
        latency = export_and_time(journal, data, args, folder)
        figure = args.figures / f"baselines_{name}.png"
        tables.append(f"### {name}\n\n{report(journal, data, latency, args, figure)}\n\n"
                      f"Figure: {figure}")
    print(f"\n{datetime.date.today()}: epochs {args.epochs}, search epochs {args.search_epochs}, "
          f"{args.seeds} seeds, batch {args.batch_size}, latency cpus {args.cpus or 'any'}, "
          f"{args.repeats} tries (median try)\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
