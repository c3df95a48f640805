"""``mpath-tf export RUN --bundle``: the trade-off bundle of a search run.

One directory with the ``.tflite`` of a set of path counts, a model card
(``models.json``: parameters, file size, predicted and measured accuracy,
measured latency per benchmarked target) and ``select_model.py``, a selector
that needs only the Python standard library, so a device can pick the most
accurate model that fits its latency or size budget::

    python3 select_model.py --max-latency-ms 0.05 --target local
"""

from __future__ import annotations

import os
from pathlib import Path

from mpath_tf.pipeline.bench import measured_latency
from mpath_tf.errors import ConfigError
from mpath_tf.storage import atomic_save_model, atomic_write_json, atomic_write_text
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.training.loop import top1
from mpath_tf.core.saving import load_model
from mpath_tf.pipeline.steps import finetune, load_data
from converters import export_tflite, get_quantization, run_tflite

CARD_FORMAT = "mpath-tf-bundle"

SELECTOR = '''"""Pick the most accurate model of this bundle that meets a budget.

Standard library only (runs on any device with Python 3.7+):

    python3 select_model.py --max-size-kb 60
    python3 select_model.py --max-latency-ms 0.05 --target local
    python3 select_model.py --min-accuracy 0.95 --json

Prints the chosen .tflite path (or, with --json, its model card entry with
the class names) on stdout and its class names (labels.txt, embedded in every
file too) on stderr; exit code 2 when no model meets the budget, with the
nearest one named.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def choose(models, max_size_kb=None, max_latency_ms=None, target=None, min_accuracy=None):
    """The most accurate model meeting every limit, or (None, reason)."""
    def accuracy(m):
        measured = m.get("tflite_test_accuracy")
        return measured if measured is not None else m["predicted_val_accuracy"]

    fits, why = [], {}
    for m in models:
        problems = []
        if max_size_kb is not None and m["bytes"] / 1000 > max_size_kb:
            problems.append("%.1f KB" % (m["bytes"] / 1000))
        if max_latency_ms is not None:
            latency = m.get("latency_ms", {}).get(target)
            if latency is None:
                problems.append("no latency measured on %s" % target)
            elif latency > max_latency_ms:
                problems.append("%.4f ms on %s" % (latency, target))
        if min_accuracy is not None and accuracy(m) < min_accuracy:
            problems.append("accuracy %.4f" % accuracy(m))
        if problems:
            why[m["file"]] = ", ".join(problems)
        else:
            fits.append(m)
    if fits:
        return max(fits, key=lambda m: (accuracy(m), -m["bytes"])), None
    return None, why


def main(argv=None):
    parser = argparse.ArgumentParser(description="Pick a model of this bundle for a budget.")
    parser.add_argument("--max-size-kb", type=float)
    parser.add_argument("--max-latency-ms", type=float)
    parser.add_argument("--target", default="local", help="a target measured in the bundle")
    parser.add_argument("--min-accuracy", type=float)
    parser.add_argument("--json", action="store_true", help="print the model card entry")
    args = parser.parse_args(argv)
    with open(os.path.join(HERE, "models.json")) as f:
        card = json.load(f)
    model, why = choose(card["models"], args.max_size_kb, args.max_latency_ms, args.target,
                        args.min_accuracy)
    if model is None:
        sys.stderr.write("No model of this bundle meets the budget:\\n")
        for name, reason in sorted(why.items()):
            sys.stderr.write("  %s: %s\\n" % (name, reason))
        return 2
    classes = [str(c) for c in card.get("classes") or []]
    if args.json:
        print(json.dumps(dict(model, classes=classes), indent=2))
    else:
        print(os.path.join(HERE, model["file"]))
        if classes:
            sys.stderr.write("classes: %s\\n" % ", ".join(classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_bundle(run_dir: str | os.PathLike, paths: list[int] | None = None,
                 quantization: str = "int8", output: str | os.PathLike | None = None,
                 lowering: str = "auto", log=print) -> Path:
    """Write the trade-off bundle of a finished search run.

    Args:
        run_dir: A run directory whose search has finished.
        paths: Path counts to include (default: the fine-tuned samples and the
            chosen model). Path counts never fine-tuned are derived and
            fine-tuned for the run's ``finetune_epochs`` first.
        quantization: Export mode of every file (``converters.quantization``).
        output: Destination directory (default ``RUN/bundle``).
        lowering: Lowering of the block-diagonal layers (default ``auto``).
        log: Progress printer.

    Returns:
        The bundle directory.

    Raises:
        RunDirError: The run is missing or unfinished.
        ConfigError: A path count outside [1, W] or an unknown quantization.

    Example (after ``mpath-tf search``)::

        write_bundle("runs/digits-mpath-4-256-seed0", paths=[2, 11, 30])
    """
    run = RunDir.open(run_dir)
    results = run.path_table("export --bundle")
    rows = {r["paths"]: r for r in results["rows"]}
    scheme = get_quantization(quantization)
    chosen = (results.get("chosen") or {}).get("paths")
    paths = sorted(set(paths) if paths else {int(b) for b in run.state["samples"]} | {chosen})
    bad = [b for b in paths if b not in rows]
    if bad:
        raise ConfigError(f"`paths` must be in [1, {run.config.width}] for this run. "
                          f"Received: paths={bad}")
    data = load_data(run.config)
    run.config = run.config.for_data(len(data.x_train))
    supernet = None
    out = Path(output) if output else run.path / "bundle"
    out.mkdir(parents=True, exist_ok=True)
    latency: dict[int, dict[str, float]] = {}  # b -> {target: ms}
    for (target, q), values in measured_latency(run.path).items():
        if q == scheme.name:
            for b, us in values.items():
                latency.setdefault(b, {})[target] = us / 1000
    models = []
    for b in paths:
        model_path = run.model_path(b)
        if model_path.is_file():
            model = load_model(model_path)
        else:
            supernet = supernet or run.load_supernet()
            log(f"fine-tuning {b} paths for {run.config.finetune_epochs} epochs")
            model = finetune(supernet, b, data, run.config)
            atomic_save_model(model, model_path)
        file = out / f"paths-{b}_{scheme.name}.tflite"
        export_tflite(model, file, scheme, data.x_train, lowering, labels=data.class_names)
        got = run_tflite(file, data.x_test)
        row = rows[b]
        models.append({
            "file": file.name, "paths": b, "parameters": row["parameters"],
            "percent_of_mlp": row["percent_of_mlp"], "bytes": file.stat().st_size,
            "predicted_val_accuracy": row["predicted_val_accuracy"],
            "predicted_std": row.get("predicted_std"),
            "measured_val_accuracy": row["measured_val_accuracy"],
            "tflite_test_accuracy": top1(got, data.y_test),
            "latency_ms": latency.get(b, {}),
            "chosen_by_search": b == chosen,
        })
        log(f"  {file.name}: {file.stat().st_size} bytes, test accuracy "
            f"{models[-1]['tflite_test_accuracy']:.4f}")
    atomic_write_json(out / "models.json", {
        "format": CARD_FORMAT, "version": 1, "run": str(run.path),
        "dataset": run.config.data or run.config.dataset, "input_shape": list(data.input_shape),
        "quantization": scheme.get_config() | {"name": scheme.name}, "lowering": lowering,
        "architecture": run.config.network(), "models": models,
        "classes": data.class_labels,
    })
    atomic_write_text(out / "select_model.py", SELECTOR)
    return out
