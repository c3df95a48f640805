"""Reproduce the experiments of the paper (section 4): Tables 1, 2, 4, Figs. 4-6.

For each dataset and architecture:

1. Tables 1-2: train the equivalent MLP and the one-shot supernet for
   ``--epochs`` epochs with Adam (weights of the best validation epoch kept),
   ``--seeds`` seeds each; report the test error mean +- std. The supernet's
   error is the one-shot error (no pruning, Eq. 3), as in the paper.
2. Table 4 (archs in ``--table4-archs``): take the seed-0 supernet (the paper
   picks one of its three at random), fine-tune ``--samples`` evenly spaced
   path counts in [2, W] for ``--sample-epochs`` and measure validation error;
   fine-tune ``--heldout`` other path counts (midway between the samples) for
   ``--heldout-epochs`` and measure test error; fit the paper's predictor on the
   samples, predict the held-out validation error, and report MAE and Pearson
   against the held-out test error. One four-panel figure per case (Figs. 4-6).

Every finished unit (one model trained) is appended to a JSON-lines journal
in ``--out``, so a killed run resumes where it stopped; rerunning with the
same budget only prints the tables.

Reduced budget used for docs/results.md (the paper trains 300 epochs, then 10
and 30 for fine-tuning; this machine has 2 CPU cores and no GPU):

    P="python benchmarks/paper_reproduction.py --data-dir ../shared/datasets"
    $P --datasets mnist fashion_mnist --archs 4-200 --table4-archs 4-200
    $P --datasets mnist fashion_mnist --archs 4-500 6-200 --table4-archs
    $P --datasets mnist --archs 4-500 6-200 --table4-archs 6-200 4-500
    $P --report-only --datasets mnist fashion_mnist --archs 4-500 4-200 6-200 \\
        --table4-archs 4-500 4-200 6-200

(defaults: 10 epochs, 3 seeds, batch 128, 10 samples x 3 epochs, 10 held-out
x 8 epochs). CIFAR-10 runs with ``--datasets cifar10`` wherever its file is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

PAPER = {  # test error (%), Tables 1 and 2
    ("mnist", "mlp", "4-500"): "1.49 ± 0.06", ("mnist", "mpath", "4-500"): "1.64 ± 0.05",
    ("mnist", "mlp", "4-200"): "1.79 ± 0.1", ("mnist", "mpath", "4-200"): "1.87 ± 0.05",
    ("mnist", "mlp", "6-200"): "1.7 ± 0.1", ("mnist", "mpath", "6-200"): "1.82 ± 0.1",
    ("cifar10", "mlp", "4-500"): "49.08 ± 0.5", ("cifar10", "mpath", "4-500"): "46.94 ± 0.2",
    ("cifar10", "mlp", "4-200"): "48.6 ± 0.2", ("cifar10", "mpath", "4-200"): "47.71 ± 0.2",
    ("cifar10", "mlp", "6-200"): "49.75 ± 0.3", ("cifar10", "mpath", "6-200"): "48.65 ± 0.1",
}
PAPER_TABLE4 = {  # (MAE, Pearson)
    ("mnist", "4-500"): (0.003, 0.91), ("mnist", "4-200"): (0.003, 0.91),
    ("mnist", "6-200"): (0.003, 1.0), ("cifar10", "4-500"): (0.02, 0.57),
    ("cifar10", "4-200"): (0.02, 0.97), ("cifar10", "6-200"): (0.02, 0.98),
}


def budget_dir(args) -> Path:
    """``--out`` / the budget's name (created): journals of different budgets stay apart."""
    budget = (f"e{args.epochs}-s{args.seeds}-b{args.batch_size}-"
              f"f{args.samples}x{args.sample_epochs}-h{args.heldout}x{args.heldout_epochs}")
    path = args.out / budget
    path.mkdir(parents=True, exist_ok=True)
    return path


class Journal:
    """Append-only JSON-lines record of finished units, keyed by name."""

    def __init__(self, path: Path):
        self.path = path
        self.records = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.records[record["key"]] = record

    def get(self, key):
        return self.records.get(key)

    def add(self, key, **values):
        record = {"key": key, **values}
        with open(self.path, "a") as f:  # one line per record: a torn write loses one line
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[key] = record
        return record


def heldout_path_counts(width: int, samples: int, heldout: int) -> list[int]:
    """Path counts midway between evenly spaced ones, none of them sampled."""
    import numpy as np

    from mpath_tf.pipeline.steps import sample_path_counts

    sampled = set(sample_path_counts(width, samples))
    grid = np.rint(np.linspace(2, width, 2 * heldout + 1)[1::2]).astype(int)
    return sorted({int(b) for b in grid} - sampled)


def run_tables(journal, data, arch, args, log):
    from mpath_tf import build_mlp, build_supernet
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.training.loop import accuracy, train

    depth, width = (int(v) for v in arch.split("-"))
    for seed in range(args.seeds):
        for kind, build in (("mlp", build_mlp), ("mpath", build_supernet)):
            key = f"{data.name}/{kind}-{arch}/seed{seed}"
            if journal.get(key):
                continue
            start = time.perf_counter()
            model = build(data.input_shape, data.num_classes, depth, width, seed=seed)
            val = train(model, data, args.epochs, batch_size=args.batch_size)
            test = accuracy(model, data.x_test, data.y_test)
            if kind == "mpath" and seed == 0:
                atomic_save_model(model, args.out / f"{data.name}-supernet-{arch}.keras")
            journal.add(key, val_error=1 - val, test_error=1 - test,
                        seconds=time.perf_counter() - start)
            log(f"{key}: test error {100 * (1 - test):.2f}%")


def run_table4(journal, data, arch, args, log):
    from mpath_tf.core.derivation import parameter_counts
    from mpath_tf.core.saving import load_model
    from mpath_tf.pipeline.steps import sample_path_counts

    width = int(arch.split("-")[1])
    supernet = load_model(args.out / f"{data.name}-supernet-{arch}.keras")
    counts = parameter_counts(supernet)
    plan = [("sample", b, args.sample_epochs) for b in sample_path_counts(width, args.samples)]
    plan += [("heldout", b, args.heldout_epochs)
             for b in heldout_path_counts(width, args.samples, args.heldout)]
    for role, b, epochs in plan:
        fine_tune_unit(journal, f"{data.name}/table4-{arch}/{role}/{b}", supernet, counts, data, b,
                       epochs, args.batch_size, log)


def fine_tune_unit(journal, key, supernet, counts, data, b, epochs, batch_size, log):
    """Derive b paths, fine-tune (seed b) and journal the result under ``key``,
    unless the journal has it already; returns the record."""
    import keras

    from mpath_tf.core.derivation import derive
    from mpath_tf.training.loop import accuracy, train

    if journal.get(key):
        return journal.get(key)
    start = time.perf_counter()
    keras.utils.set_random_seed(b)
    model = derive(supernet, b)
    curve: list[float] = []
    train(model, data, epochs, batch_size=batch_size, keep_best=False, history=curve)
    record = journal.add(
        key,
        paths=b,
        parameters=counts[b],
        percent_of_mlp=100 * counts[b] / counts[1],
        val_error=1 - accuracy(model, data.x_val, data.y_val),
        test_error=1 - accuracy(model, data.x_test, data.y_test),
        val_curve=curve,
        seconds=time.perf_counter() - start,
    )
    log(f"{key}: val error {100 * record['val_error']:.2f}%")
    return record


def table4_summary(journal, dataset, arch, figure: Path | None):
    import numpy as np

    from mpath_tf.pipeline.predictors import PaperPredictor

    rows = [r for k, r in journal.records.items() if k.startswith(f"{dataset}/table4-{arch}/")]
    samples = sorted((r for r in rows if "/sample/" in r["key"]), key=lambda r: r["paths"])
    held = sorted((r for r in rows if "/heldout/" in r["key"]), key=lambda r: r["paths"])
    if len(samples) < 2 or not held:
        return None
    predictor = PaperPredictor().fit([r["paths"] for r in samples],
                                     [1 - r["val_error"] for r in samples])
    predicted = 1 - predictor.predict([r["paths"] for r in held])
    test = np.array([r["test_error"] for r in held])
    mae = float(np.mean(np.abs(predicted - test)))
    pearson = float(np.corrcoef(predicted, test)[0, 1]) if np.std(predicted) > 0 else float("nan")
    if figure is not None:
        plot_figure(samples, held, predicted, f"{dataset}: mpath-{arch}", figure)
    return {"mae": mae, "pearson": pearson, "samples": len(samples), "heldout": len(held)}


def plot_figure(samples, held, predicted, title, path: Path):
    """The paper's four panels: samples (top), held-out test vs predicted (bottom)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mpath_tf.storage import atomic_write_bytes

    fig, ax = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for col, key, label in ((0, "paths", "path count"),
                            (1, "percent_of_mlp", "parameters (% of equivalent MLP)")):
        ax[0, col].plot([r[key] for r in samples], [100 * r["val_error"] for r in samples],
                        "o-", color="tab:orange", label="sample fine-tuning: validation error")
        ax[1, col].plot([r[key] for r in held], [100 * r["test_error"] for r in held],
                        "o-", color="tab:green", label="held-out: test error")
        ax[1, col].plot([r[key] for r in held], 100 * predicted, "o:", color="tab:blue",
                        label="held-out: predicted validation error")
        for row in (0, 1):
            ax[row, col].set_xlabel(label)
            ax[row, col].set_ylabel("error (%)")
            ax[row, col].grid(alpha=0.3)
            ax[row, col].legend(fontsize=8)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def report(journal, args) -> str:
    lines = [f"Budget: {args.epochs} epochs (MLP and one-shot), {args.seeds} seeds, batch "
             f"{args.batch_size}; Table 4: {args.samples} samples x {args.sample_epochs} epochs, "
             f"{args.heldout} held-out x {args.heldout_epochs} epochs. Date "
             f"{datetime.date.today().isoformat()}.", ""]
    lines += ["| dataset | model | test error (%), here | paper (300 epochs) | runs |",
              "|---|---|---|---|---|"]
    for dataset in args.datasets:
        for arch in args.archs:
            for kind in ("mlp", "mpath"):
                errs = [100 * r["test_error"] for k, r in journal.records.items()
                        if k.startswith(f"{dataset}/{kind}-{arch}/seed")]
                if not errs:
                    continue
                std = statistics.stdev(errs) if len(errs) > 1 else 0.0
                lines.append(f"| {dataset} | {kind}-{arch} | {statistics.mean(errs):.2f} ± "
                             f"{std:.2f} | {PAPER.get((dataset, kind, arch), 'n/a')} | {len(errs)} |")
    lines += ["", "| dataset | model | MAE here | Pearson here | paper MAE | paper Pearson "
              "| samples / held-out |", "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        for arch in args.table4_archs:
            figure = args.figures / f"table4-{dataset}-mpath-{arch}.png" if args.figures else None
            summary = table4_summary(journal, dataset, arch, figure)
            if summary is None:
                continue
            paper = PAPER_TABLE4.get((dataset, arch), ("n/a", "n/a"))
            lines.append(f"| {dataset} | mpath-{arch} | {summary['mae']:.4f} | "
                         f"{summary['pearson']:.3f} | {paper[0]} | {paper[1]} | "
                         f"{summary['samples']} / {summary['heldout']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MPATH_TF_DATA_DIR"))
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--archs", nargs="+", default=["4-500", "4-200", "6-200"])
    parser.add_argument("--table4-archs", nargs="*", default=["4-200"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="paper: 300")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--sample-epochs", type=int, default=3, help="paper: 10")
    parser.add_argument("--heldout", type=int, default=10)
    parser.add_argument("--heldout-epochs", type=int, default=8, help="paper: 30")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs/paper_reproduction"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mpath_tf.data import load_dataset

    args.out = budget_dir(args)
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
    journal = Journal(args.out / "journal.jsonl")

    def log(message):
        print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)

    if not args.report_only:
        for dataset in args.datasets:
            data = load_dataset(dataset, args.data_dir)
            for arch in args.archs:
                run_tables(journal, data, arch, args, log)
                if arch in args.table4_archs:
                    run_table4(journal, data, arch, args, log)
    text = report(journal, args)
    (args.out / "report.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
