"""Rank-and-prune vs fixed-lambda vs lambda-hypernetwork at the same budgets.

For mpath-4-200 on each dataset:

- ``lambda``: one gated supernet trained from scratch for ``--epochs`` per
  lambda in ``--lams`` (its gates are the architecture). The parameter
  counts of these five networks are the five budgets.
- ``rank`` (the paper): one supernet trained ``--epochs``; per budget the
  path count with the most parameters within it.
- ``hypernet``: Algorithm 1 on that supernet (``--hyper-epochs``, lambda ~
  U[0, ``--lam-max``]); per budget the smallest lambda within it (bisection).

Every derived network is fine-tuned ``--finetune-epochs`` (same for all),
then test accuracy, parameters, float32 and int8 ``.tflite`` latency
(edge_bench local target, one thread) and the search wall time (training
before fine-tuning: one-shot for rank, one-shot + hypernetwork for
hypernet, the one gated training for lambda) are reported. Also printed:
Theorem 1's Lambda of the supernet and the hypernetwork's accuracy-vs-lambda
curve before fine-tuning (with the largest lambda above chance).

Run from a clean checkout (after the README's install command):

    python benchmarks/tradeoff.py --data-dir ../shared/datasets --cpus 1

Every finished unit is journaled under ``--out`` (a rerun skips it).
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

DEPTH, WIDTH = 4, 200
MODES = ("float32", "int8")
METHODS = ("rank", "lambda", "hypernet")


def cost_table(args, data):
    from converters.profiles import latency_costs
    from mpath_tf.core.costs import CostTable

    if args.cost == "params":
        return CostTable.params(WIDTH, DEPTH)
    return latency_costs(WIDTH, DEPTH, quantization="int8")


def finetune_unit(journal, key, model, data, args, out: Path, **values):
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.training.loop import accuracy, train

    if journal.get(key) and out.is_file():
        return journal.get(key)
    pre = accuracy(model, data.x_val, data.y_val)
    start = time.perf_counter()
    train(model, data, args.finetune_epochs, batch_size=args.batch_size, keep_best=False)
    atomic_save_model(model, out)
    rec = journal.add(key, parameters=model.count_params(), val_accuracy_before=pre,
                      test_accuracy=accuracy(model, data.x_test, data.y_test),
                      finetune_seconds=time.perf_counter() - start, **values)
    print(f"{key}: {rec['parameters']} parameters, test accuracy {rec['test_accuracy']:.4f}",
          flush=True)
    return rec


def train_units(journal, data, args, folder: Path) -> dict:
    from mpath_tf import build_supernet, derive
    from mpath_tf.core.derivation import parameter_counts
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.core.saving import load_model
    from mpath_tf.tradeoff.train import (estimate_lambda, lam_for_budget, lambda_curve, theorem_lambda,
                                   train_fixed_lambda, train_hypernet)
    from mpath_tf.training.loop import train

    ds, models = data.name, folder / "models"
    cost = cost_table(args, data)
    lams = [float(v) for v in args.lams.split(",")]
    # lambda: one gated training per lambda; its network defines a budget
    budgets = []
    for lam in lams:
        file, key = models / f"{ds}-gated-{lam}.keras", f"{ds}/lambda/{lam}/search"
        if journal.get(key) and file.is_file():
            gated = load_model(file)
        else:
            start = time.perf_counter()
            gated = train_fixed_lambda(data, lam, DEPTH, WIDTH, cost, args.epochs, args.batch_size,
                                       seed=0)
            atomic_save_model(gated, file)
            journal.add(key, seconds=time.perf_counter() - start)
        model = derive(gated)
        budgets.append(model.count_params())
        finetune_unit(journal, f"{ds}/lambda/{lam}", model, data, args,
                      models / f"{ds}-lambda-{lam}-ft.keras", method="lambda", budget=budgets[-1],
                      lam=lam, paths=len(gated.derived_widths()),
                      search_seconds=journal.get(key)["seconds"])
    # rank: the paper's supernet, the path count with the most parameters within the budget
    file, key = models / f"{ds}-supernet.keras", f"{ds}/rank/search"
    if journal.get(key) and file.is_file():
        supernet = load_model(file)
    else:
        supernet = build_supernet(data.input_shape, data.num_classes, DEPTH, WIDTH, seed=0)
        start = time.perf_counter()
        train(supernet, data, args.epochs, batch_size=args.batch_size)
        atomic_save_model(supernet, file)
        journal.add(key, seconds=time.perf_counter() - start)
    one_shot = journal.get(key)["seconds"]
    counts = parameter_counts(supernet)
    for lam, budget in zip(lams, budgets):
        within = [b for b in counts if counts[b] <= budget]
        b = min(within, key=lambda p: budget - counts[p]) if within else max(counts)
        finetune_unit(journal, f"{ds}/rank/{lam}", derive(supernet, b), data, args,
                      models / f"{ds}-rank-{lam}-ft.keras", method="rank", budget=budget, paths=b,
                      search_seconds=one_shot)
    # hypernet: Algorithm 1 on the same supernet
    file, key = models / f"{ds}-hypernet.keras", f"{ds}/hypernet/search"
    if journal.get(key) and file.is_file():
        hyper = load_model(file)
    else:
        start = time.perf_counter()
        hyper = train_hypernet(supernet, data, args.lam_max, cost, args.hyper_epochs,
                               args.batch_size, seed=0)
        atomic_save_model(hyper, file)
        seconds = time.perf_counter() - start
        curve = lambda_curve(hyper, data, [args.lam_max * i / 20 for i in range(21)])
        try:
            bound = f"{theorem_lambda(supernet, data):.4f}"
        except ValueError as err:  # not positive: say why
            bound = str(err)
        journal.add(key, seconds=seconds, warmup_steps=hyper.warmup_steps,
                    theorem_lambda=bound, curve=curve,
                    estimated_lambda=estimate_lambda(curve, data.num_classes))
    for lam, budget in zip(lams, budgets):
        found = lam_for_budget(hyper, max_parameters=budget)
        at = args.lam_max if found is None else found
        finetune_unit(journal, f"{ds}/hypernet/{lam}", derive(hyper, lam=at), data, args,
                      models / f"{ds}-hypernet-{lam}-ft.keras", method="hypernet", budget=budget,
                      lam=at, paths=len(hyper.derived_widths(lam=at)),
                      search_seconds=one_shot + journal.get(key)["seconds"])
    return journal.get(key)


def export_and_time(data, args, folder: Path) -> dict:
    import numpy as np

    from converters import export_tflite, get_quantization
    from edge_bench import BenchSettings, LocalTarget, measure_models
    from edge_bench import Journal as LatencyJournal
    from mpath_tf.core.saving import load_model

    representative = np.asarray(data.x_train[:500], "float32")
    jobs = []
    for file in sorted((folder / "models").glob(f"{data.name}-*-ft.keras")):
        method, lam = file.stem[len(data.name) + 1:-3].split("-", 1)
        model = None
        for mode in MODES:
            path = folder / "tflite" / f"{file.stem}-{mode}.tflite"
            if not path.is_file():
                model = model or load_model(file)
                path.parent.mkdir(exist_ok=True)
                export_tflite(model, path, get_quantization(mode), representative, "auto")
            jobs.append(({"method": method, "lam": float(lam), "quantization": mode}, path))
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c))
    rows = measure_models(LocalTarget(), jobs, LatencyJournal(folder / f"latency-{data.name}.jsonl"),
                          settings, repeats=args.repeats, log=lambda line: print(line, flush=True))
    return {(labels["method"], labels["lam"], labels["quantization"]):
            row["stats"]["median_us"] if row["status"] == "ok" else None
            for (labels, _), row in zip(jobs, rows)}


def report(journal, data, latency: dict, hyper: dict, args, figure: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = [float(v) for v in args.lams.split(",")]
    mlp = 784 * WIDTH + WIDTH + (DEPTH - 1) * (WIDTH * WIDTH + WIDTH) + WIDTH * 10 + 10
    lines = ["| budget (lambda run) | method | lambda | paths | parameters (% of MLP) "
             "| val acc before FT | test acc after FT | float32 us | int8 us | search s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    points = {m: [] for m in METHODS}
    for i, lam in enumerate(lams):
        for method in METHODS:
            rec = journal.get(f"{data.name}/{method}/{lam}")
            us = [latency.get((method, lam, m)) for m in MODES]
            lam_cell = f"{rec['lam']:.4g}" if "lam" in rec else "-"
            lines.append(
                f"| {i + 1}: {rec['budget']:,} | {method} | {lam_cell} | {rec['paths']} "
                f"| {rec['parameters']:,} ({100 * rec['parameters'] / mlp:.1f}%) "
                f"| {rec['val_accuracy_before']:.4f} | {rec['test_accuracy']:.4f} "
                f"| {us[0] or float('nan'):.1f} | {us[1] or float('nan'):.1f} "
                f"| {rec['search_seconds']:.1f} |")
            points[method].append((us, rec["test_accuracy"]))
    curve = "\n".join(f"| {r['lam']:.3f} | {r['paths']} | {r['parameters']:,} | {r['val_accuracy']:.4f} |"
                      for r in hyper["curve"])
    fig, axes = plt.subplots(1, len(MODES), figsize=(11, 4.2))
    for ax, (k, mode) in zip(axes, enumerate(MODES)):
        for method, marker in zip(METHODS, "os^"):
            pts = [(us[k], acc) for us, acc in points[method] if us[k]]
            ax.plot(*zip(*sorted(pts)), marker=marker, label=method)
        ax.set_xlabel(f"{mode} latency, local LiteRT, 1 thread (us)")
        ax.set_ylabel("test accuracy after fine-tuning")
        ax.set_title(f"{data.name} mpath-{DEPTH}-{WIDTH}, {mode}")
    axes[0].legend()
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    return ("\n".join(lines) + f"\n\nTheorem 1 Lambda of the supernet: {hyper['theorem_lambda']}; "
            f"hypernetwork warm-up steps: {hyper['warmup_steps']}; largest lambda above chance "
            f"(of [0, {args.lam_max}]): {hyper['estimated_lambda']}\n\n"
            "| lambda | paths | parameters | val acc before FT |\n|---|---|---|---|\n" + curve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--lams", default="0.03,0.1,0.3,1,3", help="fixed lambdas (the budgets)")
    parser.add_argument("--lam-max", type=float, default=3.0, help="hypernetwork's Lambda")
    parser.add_argument("--cost", choices=("params", "latency"), default="params")
    parser.add_argument("--epochs", type=int, default=10, help="one-shot / gated training epochs")
    parser.add_argument("--hyper-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cpus", default="", help="pin the timing to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/tradeoff"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from mpath_tf.data import load_dataset

    folder = args.out / (f"{args.cost}-e{args.epochs}-h{args.hyper_epochs}-f{args.finetune_epochs}"
                         f"-b{args.batch_size}-L{args.lam_max}")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    journal = Journal(folder / "journal.jsonl")
    tables = []
    for name in args.datasets.split(","):
        data = load_dataset(name, data_dir=args.data_dir)
        hyper = train_units(journal, data, args, folder)
        latency = export_and_time(data, args, folder)
        figure = args.figures / f"tradeoff_{name}_{args.cost}.png"
        tables.append(f"### {name}\n\n{report(journal, data, latency, hyper, args, figure)}\n\n"
                      f"Figure: {figure}")
    print(f"\n{datetime.date.today()}: cost {args.cost}, lambdas {args.lams}, Lambda {args.lam_max}, "
          f"epochs {args.epochs}, hypernetwork epochs {args.hyper_epochs}, fine-tuning "
          f"{args.finetune_epochs}, batch {args.batch_size}, seed 0, latency cpus "
          f"{args.cpus or 'any'}, {args.repeats} tries (median try)\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
