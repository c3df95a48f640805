"""Accuracy predictors on held-out path counts (issue: search), Table 4 metrics.

For each dataset, on the one-shot mpath-4-200 supernet (10 epochs, seed 0):
sample 10 evenly spaced path counts fine-tuned briefly (3 epochs, validation
accuracy recorded after every epoch), hold out 10 others fine-tuned for the
longer budget (8 epochs), then for every predictor of ``mpath_tf.pipeline.predictors``
fit the samples and report against the held-out test error: MAE and Pearson
(the paper's Table 4 metrics), and the leave-one-out MAE on the samples.
Each predictor is fitted three times: on the samples' last accuracies as
measured (``raw``), on their learning curves extrapolated to the longer
budget (``curve``, ``mpath_tf.pipeline.curves.extrapolate``), and on the measured
accuracies plus the median extrapolated gain (``raw + median gain``,
``mpath_tf.pipeline.curves.budget_gain``). The paper compares predicted validation
error with held-out *test* error; the table also scores against the held-out
validation error, and its first row is the oracle that predicts each
held-out model's own validation error: the best any predictor fitted on
validation accuracy can do against test error.

Budget and units are those of ``benchmarks/paper_reproduction.py`` and share
its journal and supernets (same keys, same seeds), so either script reuses
what the other trained:

    python benchmarks/predictors.py --data-dir ../shared/datasets --datasets mnist fashion_mnist
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from paper_reproduction import Journal, budget_dir, fine_tune_unit, heldout_path_counts  # noqa: E402


def run_units(journal, data, arch, args, log):
    from mpath_tf import build_supernet
    from mpath_tf.core.derivation import parameter_counts
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.core.saving import load_model
    from mpath_tf.pipeline.steps import sample_path_counts
    from mpath_tf.training.loop import train

    depth, width = (int(v) for v in arch.split("-"))
    supernet_path = args.out / f"{data.name}-supernet-{arch}.keras"
    if not supernet_path.is_file():
        log(f"{data.name}: one-shot training mpath-{arch} for {args.epochs} epochs")
        supernet = build_supernet(data.input_shape, data.num_classes, depth, width, seed=0)
        train(supernet, data, args.epochs, batch_size=args.batch_size)
        atomic_save_model(supernet, supernet_path)
    supernet = load_model(supernet_path)
    counts = parameter_counts(supernet)
    plan = [("predictors", "sample", b, args.sample_epochs)
            for b in sample_path_counts(width, args.samples)]
    plan += [("table4", "heldout", b, args.heldout_epochs)
             for b in heldout_path_counts(width, args.samples, args.heldout)]
    for study, role, b, epochs in plan:
        fine_tune_unit(journal, f"{data.name}/{study}-{arch}/{role}/{b}", supernet, counts, data,
                       b, epochs, args.batch_size, log)


def adaptive(journal, data, arch, args, log):
    """Held-out MAE of the default predictor after each adaptive sample."""
    import numpy as np

    from mpath_tf.core.derivation import parameter_counts
    from mpath_tf.core.saving import load_model
    from mpath_tf.pipeline.predictors import make_predictor
    from mpath_tf.pipeline.sampling import initial_path_counts, next_path_count

    width = int(arch.split("-")[1])
    supernet = load_model(args.out / f"{data.name}-supernet-{arch}.keras")
    counts = parameter_counts(supernet)
    held = sorted((r for r in journal.records.values()
                   if r["key"].startswith(f"{data.name}/table4-{arch}/heldout/")),
                  key=lambda r: r["paths"])
    heldout = {r["paths"] for r in held}
    measured: dict[int, float] = {}
    rows = []
    while len(measured) < args.samples:
        start = [b for b in initial_path_counts(width) if b not in measured]
        b = start[0] if start else next_path_count(measured, width, exclude=heldout)
        record = fine_tune_unit(journal, f"{data.name}/predictors-{arch}/sample/{b}", supernet,
                                counts, data, b, args.sample_epochs, args.batch_size, log)
        measured[b] = 1 - record["val_error"]
        if len(measured) >= 4:
            p = make_predictor("pchip").fit(list(measured), list(measured.values()))
            predicted = 1 - p.predict([r["paths"] for r in held])
            test = np.array([r["test_error"] for r in held])
            val = np.array([r["val_error"] for r in held])
            rows.append((len(measured), sorted(measured), float(np.mean(np.abs(predicted - test))),
                         float(np.mean(np.abs(predicted - val)))))
    return rows


def evaluate(journal, dataset, arch, heldout_epochs, samples: int = 10):
    """Rows of (predictor, fitted on, MAE and Pearson vs held-out test error,
    the same vs held-out validation error, LOO MAE); the first row is the
    oracle that predicts each held-out model's own validation error."""
    import numpy as np

    from mpath_tf.pipeline.curves import budget_gain, extrapolate
    from mpath_tf.pipeline.predictors import PREDICTORS, make_predictor

    from mpath_tf.pipeline.steps import sample_path_counts

    rows = journal.records.values()
    even = set(sample_path_counts(int(arch.split("-")[1]), samples))  # not the adaptive picks
    samples = sorted((r for r in rows if r["key"].startswith(f"{dataset}/predictors-{arch}/sample/")
                      and r["paths"] in even), key=lambda r: r["paths"])
    held = sorted((r for r in rows if r["key"].startswith(f"{dataset}/table4-{arch}/heldout/")),
                  key=lambda r: r["paths"])
    if len(samples) < 3 or not held:
        return []
    params = {r["paths"]: r["parameters"] for r in [*samples, *held]}
    b = [r["paths"] for r in samples]
    raw = np.array([1 - r["val_error"] for r in samples])
    curves = {r["paths"]: r["val_curve"] for r in samples}
    inputs = {
        "raw": raw,
        "curve": np.array(list(extrapolate(curves, heldout_epochs).values())),
        "raw + median gain": raw + budget_gain(curves, heldout_epochs),
    }
    test = np.array([r["test_error"] for r in held])
    val = np.array([r["val_error"] for r in held])

    def scores(predicted):
        out = []
        for truth in (test, val):
            pearson = (float(np.corrcoef(predicted, truth)[0, 1]) if np.std(predicted) > 0
                       else float("nan"))
            out += [float(np.mean(np.abs(predicted - truth))), pearson]
        return out

    rows_out = [("oracle: held-out val error", "-", *scores(val), float("nan"))]
    for name in PREDICTORS:
        for kind, accuracies in inputs.items():
            predictor = make_predictor(name, params).fit(b, accuracies)
            predicted = 1 - predictor.predict([r["paths"] for r in held])
            rows_out.append((name, kind, *scores(predicted),
                             float(np.mean(np.abs(predictor.loo_residuals_)))))
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--arch", default="4-200")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="only names the shared journal")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--sample-epochs", type=int, default=3)
    parser.add_argument("--heldout", type=int, default=10)
    parser.add_argument("--heldout-epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/paper_reproduction"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mpath_tf import load_dataset

    args.out = budget_dir(args)
    journal = Journal(args.out / "journal.jsonl")
    for name in args.datasets:
        run_units(journal, load_dataset(name, args.data_dir), args.arch, args,
                  lambda m: print(m, flush=True))
    print(f"\n{datetime.date.today()}  mpath-{args.arch}, one-shot {args.epochs} epochs, "
          f"{args.samples} samples x {args.sample_epochs} epochs, {args.heldout} held-out x "
          f"{args.heldout_epochs} epochs (journal {args.out / 'journal.jsonl'})")
    print("| dataset | predictor | fitted on | MAE vs test | Pearson vs test | MAE vs val "
          "| Pearson vs val | LOO MAE (samples) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        for predictor, kind, mae, pearson, mae_v, pearson_v, loo in evaluate(
                journal, name, args.arch, args.heldout_epochs, args.samples):
            print(f"| {name} | {predictor} | {kind} | {mae:.4f} | {pearson:.3f} | {mae_v:.4f} | "
                  f"{pearson_v:.3f} | {loo:.4f} |")
    print("\nAdaptive sampling (--sampling adaptive), PCHIP fitted on the samples so far:")
    print("| dataset | samples | path counts | MAE vs test | MAE vs val |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        data = load_dataset(name, args.data_dir)
        for k, picked, mae, mae_v in adaptive(journal, data, args.arch, args,
                                              lambda m: print(m, flush=True)):
            print(f"| {name} | {k} | {picked} | {mae:.4f} | {mae_v:.4f} |")


if __name__ == "__main__":
    main()
