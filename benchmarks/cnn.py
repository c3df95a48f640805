"""ResNet-8 with learned channel paths against uniform width and fixed groups.

Issue 21's benchmark. For MLPerf Tiny's ResNet-8 (``mpath_tf.build_resnet8``,
stages of 16/32/64 channels) on Fashion-MNIST (or MNIST), per seed:

- **mpath**: the ResNet-8 supernet (``build_supernet(arch="resnet8")``: one
  path count b for every stage) trained ``--epochs`` (one-shot), then for
  each b of ``--paths`` the derived network (learned, unequal channel paths)
  fine-tuned ``--finetune-epochs`` (best validation epoch kept, as
  ``mpath-tf search`` fine-tunes);
- **width**: ResNet-8 scaled uniformly in width (``--scales`` of 16 channels
  in stage 1; 1.0 is the dense reference);
- **groups**: ResNet-8 with the convolutions a stage's paths split (both of
  stage 1, the second of stages 2 and 3) in g equal groups (``--groups``,
  ``Conv2D(groups=g)``: the ShuffleNet / Deep Roots choice);
- **gated**: ``mpath-tf search --method lambda`` on ResNet-8: the supernet
  trained ``--epochs`` with gates in every stage and the parameter cost at
  each lam of ``--lams`` (``train_fixed_lambda``), so each stage gets its own
  path count; the network its gates give fine-tuned ``--finetune-epochs`` as
  the search does (``train_derived``, the last epoch kept);

every baseline trained from scratch for ``--epochs + --finetune-epochs``
epochs, the budget each derived network got (one-shot plus fine-tuning).
Derived networks are fine-tuned by ``mpath_tf.finetune`` (batch-norm
statistics re-estimated for the derived paths, then trained), and every
model's batch-norm statistics are re-estimated on 2,048 training rows at
the end of its training (``train(recalibrate=True)``, as the search does for
its dense reference and fine-tuned models): after a few hundred steps the
moving averages are still far from the data (measured here: dense ResNet-8
after 6 epochs of 5,000 rows, test accuracy 0.6244 before, 0.8122 after).
Each model's test accuracy, parameters and multiply-adds are recorded; every
model is exported to float32 and full-int8 ``.tflite`` and timed side by
side with edge_bench's local target (LiteRT; baselines from seed 0, whose
latency does not depend on the weights; mpath from every seed, whose widths
do), derived networks in both conv lowerings (``grouped``: one convolution
per distinct width; ``split``: one per path; ``--lowering auto`` picks
between them by the target's lowering profile). The supernet's median
epoch time is set against the dense ResNet-8's (issue target: <= 1.3x).

Prints a markdown table (test accuracy mean and sd over seeds, parameters,
MACs, latencies and speed-ups over the dense network) and writes a plot of
test accuracy against int8 latency.

Run from a clean checkout (after the README's install command); the budget
recorded in docs/results.md (a 5,000-row training subset, CPU-sized):

    python benchmarks/cnn.py --data-dir ../shared/datasets/fashion_mnist --cpus 1

Every finished training, export and measurement is journaled under ``--out``
(resumable: a rerun skips finished work).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from paper_reproduction import Journal  # noqa: E402

MODES = ("float32", "int8")
WIDTH = 16  # ResNet-8's first stage
SPLIT = ("stage1_a", "stage1_b", "stage2_b", "stage3_b")  # the convolutions paths split


def macs(model) -> int:
    """Multiply-adds for one image: every kernel's weights times the output
    pixels of its layer (a grouped, depthwise or path convolution holds only
    the weights it multiplies), plus the classifier's."""
    import numpy as np

    total = 0
    for layer in model.layers:
        for weight in layer.weights:
            if len(weight.shape) == 4:
                _, h, w, _ = layer.output.shape
                total += h * w * int(np.prod(weight.shape))
            elif len(weight.shape) == 2:
                total += int(np.prod(weight.shape))
    return total


def grouped_resnet8(shape, classes: int, groups: int, seed: int):
    """ResNet-8 with the ``SPLIT`` convolutions in ``groups`` equal groups:
    ``PathConv2D`` layers of equal path widths, ``implementation="split"``
    to train (TensorFlow trains a grouped ``Conv2D`` on CPU about 17x slower
    than a dense one; measured); ``with_conv_implementation(model,
    "grouped")`` makes them one grouped convolution each for the export."""
    import keras

    from mpath_tf import build_resnet8
    from mpath_tf.core.conv import PathConv2D

    def regroup(layer):
        if layer.name in SPLIT:
            return PathConv2D([layer.filters // groups] * groups, layer.kernel_size,
                              implementation="split", padding=layer.padding,
                              kernel_initializer=layer.kernel_initializer, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(build_resnet8(shape, classes, WIDTH, seed=seed),
                                    clone_function=regroup)


def epoch_timer():
    """A Keras callback recording each epoch's wall time in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def timing(timer, start: float) -> dict:
    """The record's timing fields."""
    import numpy as np

    later = timer.seconds[1:] or timer.seconds  # the first epoch traces the graph
    return {"train_seconds": time.perf_counter() - start,
            "epoch_seconds": float(np.median(later))}


def fit(model, data, epochs: int, args) -> dict:
    """Train with the product's loop, batch-norm statistics re-estimated at
    the end (``recalibrate``); returns the record's timing fields."""
    from mpath_tf.training.loop import train

    timer = epoch_timer()
    start = time.perf_counter()
    train(model, data, epochs, batch_size=args.batch_size, callbacks=[timer], recalibrate=True)
    return timing(timer, start)


def train_units(journal, data, args, folder: Path) -> None:
    """Every (kind, setting, seed) unit not in the journal yet."""
    import keras

    from mpath_tf import SearchConfig, build_resnet8, build_supernet, derive, finetune
    from mpath_tf.core.saving import load_model
    from mpath_tf.pipeline.steps import train_derived
    from mpath_tf.tradeoff.train import train_fixed_lambda
    from mpath_tf.storage import atomic_save_model
    from mpath_tf.training.loop import accuracy

    shape, classes = data.input_shape, data.num_classes
    total = args.epochs + args.finetune_epochs

    def record(key, model, kind, setting, seed, **values):
        model_file = folder / "models" / f"{kind}-{setting}-seed{seed}.keras"
        atomic_save_model(model, model_file)
        rec = journal.add(key, kind=kind, setting=setting, seed=seed,
                          test_accuracy=accuracy(model, data.x_test, data.y_test),
                          parameters=model.count_params(), macs=macs(model),
                          model=str(model_file), **values)
        print(f"{key}: test accuracy {rec['test_accuracy']:.4f}, {rec['parameters']:,} "
              f"parameters, {rec['macs']:,} MACs", flush=True)

    for seed in range(args.seeds):
        for scale in args.scales:
            key = f"width/{scale}/seed{seed}"
            if not journal.get(key):
                width = max(1, round(scale * WIDTH))
                model = build_resnet8(shape, classes, width, seed=seed)
                record(key, model, "width", scale, seed, **fit(model, data, total, args))
        for groups in args.groups:
            key = f"groups/{groups}/seed{seed}"
            if not journal.get(key):
                model = grouped_resnet8(shape, classes, groups, seed)
                record(key, model, "groups", groups, seed, **fit(model, data, total, args))
        for lam in args.lams:
            key = f"gated/{lam}/seed{seed}"
            if not journal.get(key):
                timer, start = epoch_timer(), time.perf_counter()
                gated = train_fixed_lambda(
                    data, lam, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                    callbacks=[timer], supernet=build_supernet(shape, classes, 0, WIDTH,
                                                               seed=seed, arch="resnet8"))
                keras.utils.set_random_seed(seed)
                model = train_derived(derive(gated), data, args.finetune_epochs,
                                      batch_size=args.batch_size, keep_best=False,
                                      callbacks=[timer])
                widths = {layer.name: list(layer.path_widths) for layer in model.layers
                          if hasattr(layer, "path_widths")}
                record(key, model, "gated", lam, seed, widths=widths,
                       paths_per_stage=[len(w) for w in gated.derived_layout()],
                       **timing(timer, start))
        todo = [b for b in args.paths if not journal.get(f"mpath/{b}/seed{seed}")]
        if not todo:
            continue
        supernet_file = folder / "models" / f"supernet-seed{seed}.keras"
        key = f"supernet/seed{seed}"
        if journal.get(key) and supernet_file.is_file():
            supernet = load_model(supernet_file)
        else:
            supernet = build_supernet(shape, classes, 0, WIDTH, seed=seed, arch="resnet8")
            spent = fit(supernet, data, args.epochs, args)
            atomic_save_model(supernet, supernet_file)
            journal.add(key, seed=seed, test_accuracy=accuracy(supernet, data.x_test, data.y_test),
                        **spent)
        config = SearchConfig(seed=seed, batch_size=args.batch_size)
        for b in todo:  # as mpath-tf search fine-tunes a sample
            timer, start = epoch_timer(), time.perf_counter()
            model = finetune(supernet, b, data, config, epochs=args.finetune_epochs,
                             callbacks=[timer])
            widths = {layer.name: list(layer.path_widths) for layer in model.layers
                      if hasattr(layer, "path_widths")}
            record(f"mpath/{b}/seed{seed}", model, "mpath", b, seed, widths=widths,
                   **timing(timer, start))


def export_and_time(journal, data, args, folder: Path) -> dict:
    """Export and time the models; returns median us by (kind, setting, seed, mode)."""
    import numpy as np

    from converters import export_tflite, get_quantization
    from edge_bench import BenchSettings, LocalTarget, measure_models
    from edge_bench import Journal as LatencyJournal
    from mpath_tf.core.derivation import with_conv_implementation
    from mpath_tf.core.saving import load_model

    representative = np.asarray(data.x_train[:500], "float32")
    jobs = []
    for rec in journal.records.values():
        derived = rec.get("kind") in ("mpath", "gated")  # widths differ by seed
        if "model" not in rec or (not derived and rec["seed"] != 0):
            continue
        # a derived network in both of PathConv2D's implementations: one
        # convolution per distinct width (as mpath-tf search exports), one per path
        lowerings = ({rec["kind"]: "grouped", f"{rec['kind']}-split": "split"} if derived
                     else {rec["kind"]: "grouped"})
        for kind, implementation in lowerings.items():
            model = None
            for mode in MODES:
                stem = Path(rec["model"]).stem + ("-split" if implementation == "split" else "")
                path = folder / "tflite" / f"{stem}-{mode}.tflite"
                if not path.is_file():
                    model = model or with_conv_implementation(load_model(rec["model"]),
                                                              implementation)
                    path.parent.mkdir(exist_ok=True)
                    print(f"exporting {path.name}", flush=True)
                    # path convolutions lowered as their implementation says (``grouped``
                    # or ``split``), not by the lowering profile (``auto`` would choose)
                    export_tflite(model, path, get_quantization(mode), representative,
                                  implementation)
                jobs.append(({"kind": kind, "setting": rec["setting"], "seed": rec["seed"],
                              "quantization": mode}, path))
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c),
                             xnnpack=not args.no_xnnpack)
    name = "latency" + ("-no-xnnpack" if args.no_xnnpack else "")
    rows = measure_models(LocalTarget(), jobs, LatencyJournal(folder / f"{name}.jsonl"), settings,
                          repeats=args.repeats, log=lambda line: print(line, flush=True))
    return {(labels["kind"], labels["setting"], labels["seed"], labels["quantization"]):
            row["stats"]["median_us"] for (labels, _), row in zip(jobs, rows)
            if row["status"] == "ok"}


def report(journal, latency: dict, args, figure: Path) -> str:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {}
    for rec in journal.records.values():
        if "model" in rec:
            units.setdefault((rec["kind"], rec["setting"]), []).append(rec)
    dense = units[("width", 1.0)]
    dense_acc = np.mean([r["test_accuracy"] for r in dense])
    dense_us = {mode: latency.get(("width", 1.0, 0, mode)) for mode in MODES}
    lines = [f"| model | parameters | MACs | test accuracy, mean ± sd ({args.seeds} seeds) "
             "| vs dense (points) | float32 us | float32 speed-up | int8 us | int8 speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    points = []
    order = ([("width", s) for s in sorted(args.scales, reverse=True)]
             + [("groups", g) for g in args.groups] + [("mpath", b) for b in args.paths]
             + [("gated", lam) for lam in args.lams]
             + [("mpath-split", b) for b in args.paths] + [("gated-split", lam) for lam in args.lams])
    for kind, setting in order:
        recs = units.get((kind.removesuffix("-split"), setting))
        if not recs:
            continue
        acc = np.array([r["test_accuracy"] for r in recs])
        stages = "; ".join("/".join(map(str, r.get("paths_per_stage", []))) for r in recs)
        name = {"width": f"width x{setting}", "groups": f"{setting} equal groups",
                "mpath": f"mpath, b = {setting}",
                "mpath-split": f"mpath, b = {setting}, a convolution per path",
                "gated": f"gated, lam = {setting} (paths per stage {stages})",
                "gated-split": f"gated, lam = {setting}, a convolution per path"}[kind]
        cells = []
        us = {}
        for mode in MODES:
            tries = [latency.get((kind, setting, r["seed"], mode)) for r in recs]
            tries = [t for t in tries if t]
            us[mode] = float(np.mean(tries)) if tries else None
            cells += (["-", "-"] if not us[mode] or not dense_us[mode]
                      else [f"{us[mode]:.1f}", f"{dense_us[mode] / us[mode]:.2f}x"])
        params = sorted({r["parameters"] for r in recs})
        mac = sorted({r["macs"] for r in recs})
        spread = (lambda v: f"{v[0]:,}" if len(v) == 1 else f"{v[0]:,}-{v[-1]:,}")
        lines.append(f"| {name} | {spread(params)} | {spread(mac)} | {acc.mean():.4f} ± "
                     f"{acc.std(ddof=1) if len(acc) > 1 else 0:.4f} | "
                     f"{100 * (acc.mean() - dense_acc):+.2f} | {' | '.join(cells)} |")
        points.append((kind, setting, acc.mean(), us["int8"]))
    supers = [r for r in journal.records.values() if r["key"].startswith("supernet/")]
    overhead = (np.median([r["epoch_seconds"] for r in supers])
                / np.median([r["epoch_seconds"] for r in dense]))
    lines.append(f"\nSupernet test accuracy {np.mean([r['test_accuracy'] for r in supers]):.4f} "
                 f"after {args.epochs} epochs; its median epoch time {overhead:.2f}x the dense "
                 "ResNet-8's (same rows, batch and machine, measured in this run).")
    for rec in sorted((r for r in units.get(("mpath", max(args.paths)), [])),
                      key=lambda r: r["seed"]):
        lines.append(f"Seed {rec['seed']} widths at b = {rec['setting']}: {rec['widths']}")

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for kind, marker, label in (("width", "s", "uniform width"), ("groups", "^", "equal groups"),
                                ("mpath", "o", "mpath (learned paths)"),
                                ("mpath-split", "x", "mpath, a convolution per path"),
                                ("gated", "D", "gated (lam; paths per stage)")):
        pts = sorted((p[3], p[2], p[1]) for p in points if p[0] == kind and p[3])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
            for x, y, setting in pts:
                ax.annotate(str(setting), (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlabel("int8 latency, local LiteRT (us)")
    ax.set_ylabel(f"test accuracy (mean of {args.seeds} seeds)")
    ax.set_title(f"ResNet-8 on {args.dataset}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--train-rows", type=int, default=5_000,
                        help="first rows of the training split used (0: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="one-shot training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--paths", default="2,4,8,16")
    parser.add_argument("--scales", default="0.25,0.5,0.75,1.0")
    parser.add_argument("--groups", default="2,4,8")
    parser.add_argument("--lams", default="0.5,2,8",
                        help="cost weights of the gated rows ('' for none)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cpus", default="", help="pin the timing to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-xnnpack", action="store_true",
                        help="time LiteRT's built-in kernels (a target without the delegate)")
    parser.add_argument("--out", type=Path, default=Path("runs/cnn"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    args.paths = [int(b) for b in args.paths.split(",")]
    args.scales = [float(s) for s in args.scales.split(",")]
    args.groups = [int(g) for g in args.groups.split(",")]
    args.lams = [float(lam) for lam in args.lams.split(",") if lam]
    if 1.0 not in args.scales:
        parser.error("--scales must include 1.0 (the dense reference)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from mpath_tf.data import load_dataset

    data = load_dataset(args.dataset, data_dir=args.data_dir)
    if args.train_rows:
        data = replace(data, x_train=data.x_train[:args.train_rows],
                       y_train=data.y_train[:args.train_rows])
    folder = (args.out / f"{args.dataset}-r{args.train_rows}-e{args.epochs}-f{args.finetune_epochs}"
              f"-b{args.batch_size}")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    journal = Journal(folder / "journal.jsonl")
    train_units(journal, data, args, folder)
    latency = export_and_time(journal, data, args, folder)
    figure = args.figures / f"cnn_{args.dataset}{'_no_xnnpack' if args.no_xnnpack else ''}.png"
    table = report(journal, latency, args, figure)
    print(f"\n{datetime.date.today()}: ResNet-8 on {args.dataset}, {len(data.x_train):,} training "
          f"rows, {args.epochs} one-shot + {args.finetune_epochs} fine-tuning epochs (baselines "
          f"{args.epochs + args.finetune_epochs} from scratch), batch {args.batch_size}, "
          f"{args.seeds} seeds; latency cpus {args.cpus or 'any'}, xnnpack "
          f"{not args.no_xnnpack}, {args.repeats} tries (median try)\n")
    print(table)
    print(f"\nFigure: {figure}")


if __name__ == "__main__":
    main()
