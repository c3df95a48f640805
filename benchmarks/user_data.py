"""`mpath-tf search` on the user's kind of data, against outside anchors.

Data sets:

- three sensor-style CSVs made by ``sensor_csv`` (below): raw readings whose
  column scales run from 0.1 to 50 with offsets up to +-100, class names as
  words, unequal class sizes, a few useless (noise) and constant columns,
  classes that overlap and are partly separated by non-linear features;
- scikit-learn's bundled breast-cancer and wine tables, written as CSVs with
  their class names as labels;
- digits (the default data set).

For each, one ``mpath-tf search`` with its defaults (mpath-4-256, or the
``--width`` given; the tables in docs/results.md used mpath-4-64, 60 one-shot
epochs, 10 samples of 10 fine-tuning epochs, dense reference, speed check),
and two anchors on the same train/test split: scikit-learn's
``MLPClassifier`` with the same hidden sizes on standardized features, and
``HistGradientBoostingClassifier``. Prints one markdown table: the chosen
model (paths, parameters), test accuracy of the chosen model, the dense
reference and the anchors, float32 and int8 file accuracy, the int8 gates,
latency against the dense reference, and wall time.

Run from a clean checkout (after the README's install command):

    python benchmarks/user_data.py

Each search keeps its run directory under ``--out`` (a rerun resumes and
redoes nothing finished). ``--seeds 0,1,2`` repeats every search and anchor
with each seed (the split stays the same) and adds a table of means: on the
small tables one test example is 0.3-2.8 points, and scikit-learn's own MLP
moves by up to 4.4 points between seeds.

``--objective latency`` (or ``ram``, ``flash``) then chooses again on each
target of ``--targets`` (default ``local,tflm``): the same run directory is
resumed, so nothing is trained again but the fine-tuning of a newly chosen
path count, and a second table gives per data set and target the chosen
model (a path count or dense), its measured cost against dense's, measured
in that run, and the chosen model's predicted validation accuracy against
the one measured after its final fine-tuning.

``--folds K`` replaces one table's fixed 20% test split by K-fold
cross-validation over all its rows (stratified, fold seed 0): one search per
fold, on an ``.npz`` whose test arrays are that fold, and every accuracy in
the table pooled over the folds, so each row is a test example once. On
breast_cancer this turns 114 test examples (one = 0.88 points, below the
1-point target's resolution) into 569 (one = 0.18 points). ``--fold 0,1``
runs only those folds (two processes can share the work; a final run with
all folds resumes the finished searches and prints the pooled table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ACTIVITIES = ("idle", "walking", "running", "cycling", "stairs", "driving", "falling", "lying")
SENSOR_SETS = {  # name: (rows, informative columns, classes, noise, seed)
    "sensors-12k": (12000, 40, 6, 1.6, 0),
    "sensors-5k": (5000, 16, 4, 1.2, 1),
    "sensors-8k-imbalanced": (8000, 24, 8, 1.4, 2),
}


def sensor_csv(path: Path, rows: int, informative: int, classes: int, noise: float,
               seed: int) -> Path:
    """Write a sensor-style CSV: raw scales and offsets, word labels, unequal classes.

    Each class has a random centre in ``informative`` latent features plus
    Gaussian noise; half the features are bent by a sine of the others; 4
    pure-noise and 2 constant columns are added; every column is then scaled
    by a factor in [0.1, 50] (log-uniform) and offset by up to +-100. Class
    sizes fall linearly to a third of the largest.
    """
    rng = np.random.default_rng(seed)
    share = np.linspace(3, 1, classes)
    y = rng.choice(classes, size=rows, p=share / share.sum())
    centres = rng.normal(0, 1, (classes, informative))
    z = centres[y] + rng.normal(0, noise, (rows, informative))
    half = informative // 2
    z[:, :half] += 0.8 * np.sin(2.5 * z[:, half:2 * half])
    z = np.concatenate([z, rng.normal(0, 1, (rows, 4)), np.zeros((rows, 2))], axis=1)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(50), z.shape[1]))
    offset = rng.uniform(-100, 100, z.shape[1])
    x = z * scale + offset
    names = [f"sensor_{i}" for i in range(x.shape[1])]
    lines = [",".join(names + ["activity"])]
    lines += [",".join(f"{v:.6g}" for v in row) + f",{ACTIVITIES[c]}" for row, c in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sklearn_csv(path: Path, name: str) -> Path:
    """One of scikit-learn's bundled tables as a CSV with class names as labels."""
    from sklearn import datasets

    bunch = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]()
    names = [n.replace(" ", "_") for n in bunch.feature_names]
    lines = [",".join(names + ["label"])]
    lines += [",".join(f"{v:.6g}" for v in row) + f",{bunch.target_names[c]}"
              for row, c in zip(bunch.data, bunch.target)]
    path.write_text("\n".join(lines) + "\n")
    return path


def fold_npz(path: Path, label: str, folds: int, out: Path) -> list[Path]:
    """Write the K stratified folds of a CSV table as ``.npz`` files whose
    test arrays are the fold and whose training arrays are the other rows."""
    from sklearn.model_selection import StratifiedKFold

    from mpath_tf.data.files import read_csv

    x, y = read_csv(path, label)[:2]
    y = np.asarray(y).astype(str)
    paths = []
    split = StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y)
    for k, (train, test) in enumerate(split):
        target = out / f"{path.stem}-fold{k}of{folds}.npz"
        if not target.is_file():
            np.savez(target, x_train=x[train], y_train=y[train], x_test=x[test],
                     y_test=y[test])
        paths.append(target)
    return paths


def anchors(data, depth: int, width: int, seed: int) -> dict:
    """Test accuracy of scikit-learn's MLP (standardized) and gradient boosting,
    trained on the search's training and validation splits."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([data.x_train, data.x_val]).reshape(len(data.x_train) + len(data.x_val), -1)
    y = np.concatenate([data.y_train, data.y_val])
    x_test = data.x_test.reshape(len(data.x_test), -1)
    mlp = make_pipeline(StandardScaler(), MLPClassifier((width,) * depth, max_iter=300,
                                                        random_state=seed))
    hgb = HistGradientBoostingClassifier(random_state=seed)
    return {"sklearn_mlp": float(mlp.fit(x, y).score(x_test, data.y_test)),
            "hist_gradient_boosting": float(hgb.fit(x, y).score(x_test, data.y_test))}


def pooled_table(table: list[dict], folds: int) -> None:
    """Accuracies pooled over the folds (each test example counted once) and
    the int8 gates of every fold."""
    print(f"\nPooled over {folds} folds (each row of the table a test example once):\n")
    print("| data | seed | test n | paths per fold | chosen | dense ref | vs ref (pt) | "
          "sklearn MLP | vs MLP (pt) | HGB | int8 file | int8 agree | int8 gates passed |")
    print("|" + "---|" * 13)
    groups: dict[tuple, list[dict]] = {}
    for r in table:
        groups.setdefault((r["dataset"].split(" fold ")[0], r["seed"]), []).append(r)
    for (name, seed), rows in groups.items():
        n = sum(r["test_examples"] for r in rows)

        def pool(key):
            return sum(r[key] * r["test_examples"] for r in rows) / n

        print(f"| {name} | {seed} | {n} | {', '.join(str(r['paths']) for r in rows)} | "
              f"{pool('test_accuracy'):.4f} | {pool('reference_test_accuracy'):.4f} | "
              f"{100 * (pool('test_accuracy') - pool('reference_test_accuracy')):+.2f} | "
              f"{pool('sklearn_mlp'):.4f} | {100 * (pool('test_accuracy') - pool('sklearn_mlp')):+.2f} | "
              f"{pool('hist_gradient_boosting'):.4f} | {pool('int8_accuracy'):.4f} | "
              f"{pool('int8_agreement'):.4f} | "
              f"{sum(r['int8_passed'] for r in rows)} of {len(rows)} |")


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def save(path: Path, rows: list[dict], key: tuple[str, ...]) -> None:
    """Merge ``rows`` into the JSON list at ``path`` (a row replaces the saved
    one with the same ``key`` values), so a run of some data sets keeps the
    others' rows for ``--report-only``."""
    kept = [r for r in _load(path)
            if tuple(r[k] for k in key) not in {tuple(n[k] for k in key) for n in rows}]
    path.write_text(json.dumps(kept + rows, indent=2) + "\n")


def objective_row(name: str, seed: int, target: str, result: dict, wall: float) -> dict:
    """One data set's choice by objective on one target, from its results."""
    objective, chosen = result["objective"], result["chosen"]
    measured = objective["measured"]
    choice = objective["choice"]
    dense = measured.get("dense", measured.get("1"))
    return {
        "dataset": name, "seed": seed, "target": objective["measured_on"],
        "objective": objective["name"],
        "unit": objective["unit"], "choice": choice, "cost": measured[str(choice)],
        "dense_cost": dense, "runner_up": objective["runner_up"],
        "runner_up_cost": (measured.get(str(objective["runner_up"]))
                           if objective["runner_up"] is not None else None),
        "predicted_val": None if chosen.get("dense") else chosen["predicted_val_accuracy"],
        "predicted_std": chosen.get("predicted_std"), "val": chosen["val_accuracy"],
        "test": chosen["test_accuracy"], "reference_test": result["reference"]["test_accuracy"],
        "capped": sum(bool(r.get("capped")) for r in result["rows"]), "wall_s": wall,
    }


def prediction_table(rows: list[dict]) -> None:
    """The chosen model's predicted validation accuracy against the one
    measured after its final fine-tuning, and the highest prediction shown
    against the best validation accuracy measured in the run."""
    print("\nPredictions (validation accuracy; +-: the predictor's leave-one-out error):\n")
    print("| data | chosen paths | predicted +- | measured | outside +- by (pt) | "
          "highest prediction | best measured in the run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        std = r["predicted_std"] or 0.0
        miss = abs(r["val"] - r["predicted_val"]) - std
        print(f"| {r['dataset']}{'' if r['seed'] == 0 else ' seed ' + str(r['seed'])} | "
              f"{r['paths']} | {r['predicted_val']:.4f} +- {std:.4f} | {r['val']:.4f} | "
              f"{f'{100 * miss:.2f}' if miss > 0 else 'within'} | "
              f"{r['highest_prediction']:.4f} | {r['best_measured_val']:.4f} |")


def objective_table(rows: list[dict], objective: str) -> None:
    """The markdown table of ``--objective``."""
    print(f"\n## --objective {objective} ({datetime.date.today()}; the default searches "
          "resumed)\n")
    print("| data | target | chosen | cost | dense | chosen / dense | runner-up (cost) | "
          "predicted val | measured val | outside +- by (pt) | test (dense) | wall s |")
    print("|" + "---|" * 12)

    def cost(value, unit):
        return (f"{value / 1000:,.1f}k instr." if unit == "instructions" else
                f"{value:,.2f} us" if unit == "us" else f"{value:,.0f} B")

    for r in rows:
        unit = r["unit"]
        runner = ("-" if r["runner_up"] is None else
                  f"{r['runner_up']} ({cost(r['runner_up_cost'], unit)})")
        if r["predicted_val"] is None:
            predicted, outside = "dense: measured", "-"
        else:
            predicted = f"{r['predicted_val']:.4f} +- {r['predicted_std'] or 0:.4f}"
            miss = abs(r["val"] - r["predicted_val"]) - (r["predicted_std"] or 0)
            outside = f"{100 * miss:.2f}" if miss > 0 else "within"
        print(f"| {r['dataset']} | {r['target']} | "
              f"{'dense' if r['choice'] == 'dense' else str(r['choice']) + ' paths'} | "
              f"{cost(r['cost'], unit)} | {cost(r['dense_cost'], unit)} | "
              f"{r['cost'] / r['dense_cost']:.3f} | {runner} | {predicted} | {r['val']:.4f} | "
              f"{outside} | {r['test']:.4f} ({r['reference_test']:.4f}) | {r['wall_s']:.0f} |")


def main(argv=None) -> None:
    import warnings

    from mpath_tf import SearchConfig, search
    from mpath_tf.pipeline.steps import load_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-user-data"))
    parser.add_argument("--only", default=None, help="comma-separated data set names")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0); "
                        "with several, a table of means follows")
    parser.add_argument("--folds", type=int, default=0,
                        help="K-fold cross-validation of the CSV tables instead of one test split")
    parser.add_argument("--fold", default=None, help="with --folds: only these folds")
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables of the rows saved under --out, running nothing")
    parser.add_argument("--width", type=int, default=None,
                        help="hidden-layer width of every search (default: the search's)")
    parser.add_argument("--objective", default=None, choices=("latency", "ram", "flash"),
                        help="after each default search, choose again by this objective on "
                        "each of --targets (the run is resumed, nothing trained again)")
    parser.add_argument("--targets", default="local,tflm",
                        help="comma-separated targets of --objective (default local,tflm)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = args.out / "data"
    files.mkdir(exist_ok=True)
    sets: dict[str, dict] = {}
    for name, spec in SENSOR_SETS.items():
        path = files / f"{name}.csv"
        if not path.is_file():
            sensor_csv(path, *spec)
        sets[name] = {"data": str(path), "label": "activity"}
    for name in ("breast_cancer", "wine"):
        path = files / f"{name}.csv"
        if not path.is_file():
            sklearn_csv(path, name)
        sets[name] = {"data": str(path), "label": "label"}
    sets["digits"] = {}
    if args.only:
        sets = {k: v for k, v in sets.items() if k in args.only.split(",")}
    if args.folds:
        chosen_folds = ([int(v) for v in args.fold.split(",")] if args.fold
                        else range(args.folds))
        sets = {f"{name} fold {k}": {"data": str(fold)}
                for name, source in sets.items() if source
                for k, fold in enumerate(fold_npz(Path(source["data"]), source["label"],
                                                  args.folds, files))
                if k in chosen_folds}

    seeds = [int(v) for v in args.seeds.split(",")]
    table, objectives = [], []
    for (name, source), seed in ([] if args.report_only else [(item, seed) for item in sets.items() for seed in seeds]):
        config = SearchConfig(**source, seed=seed,
                              **({"width": args.width} if args.width else {}))
        start = time.perf_counter()
        slug = name.replace(" ", "-")
        folder = args.out / (slug if seed == 0 else f"{slug}-seed{seed}")
        result = search(config, folder, log=lambda line: print(f"[{name}] {line}", flush=True))
        wall = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's convergence warnings
            outside = anchors(load_data(config), config.depth, config.width, config.seed)
        chosen, reference, speed = result["chosen"], result["reference"], result["speed"]
        int8 = chosen["exports"]["int8"]["verification"]
        row = {
            "dataset": name, "seed": seed, "classes": len(result["classes"]),
            "paths": chosen["paths"],
            "parameters": chosen["parameters"], "percent_of_mlp": chosen["percent_of_mlp"],
            "test_accuracy": chosen["test_accuracy"],
            "reference_test_accuracy": reference["test_accuracy"],
            **outside,
            "float32_accuracy": chosen["exports"]["float32"]["test_accuracy"],
            "int8_accuracy": chosen["exports"]["int8"]["test_accuracy"],
            "int8_agreement": int8["agreement"], "int8_passed": int8["passed"],
            "int8_speedup": speed.get("int8", {}).get("speedup"),
            "float32_speedup": speed.get("float32", {}).get("speedup"),
            "int8_us": speed.get("int8", {}).get("chosen_us"),
            "int8_dense_us": speed.get("int8", {}).get("reference_us"),
            "wall_s": wall, "test_examples": int(len(load_data(config).y_test)),
            "predicted_val": chosen["predicted_val_accuracy"],
            "predicted_std": chosen.get("predicted_std"), "val": chosen["val_accuracy"],
            "best_measured_val": max([r["measured_val_accuracy"] for r in result["rows"]
                                      if r["measured_val_accuracy"] is not None]
                                     + [reference["val_accuracy"]]),
            "highest_prediction": max(r["predicted_val_accuracy"] for r in result["rows"]),
        }
        earlier = [r for r in _load(args.out / "table.json")
                   if (r["dataset"], r["seed"]) == (name, seed)]
        if earlier:  # a resumed run: the wall time is the first run's
            row["wall_s"] = earlier[0]["wall_s"]
        table.append(row)
        save(args.out / "table.json", table, ("dataset", "seed"))
        for target in (args.targets.split(",") if args.objective else []):
            start = time.perf_counter()
            chosen_by = search(replace(config, objective=args.objective, target=target), folder,
                               log=lambda line: print(f"[{name} {target}] {line}", flush=True))
            objectives.append(objective_row(name, seed, target, chosen_by,
                                            time.perf_counter() - start))
            save(args.out / "objective.json", objectives, ("dataset", "seed", "target"))

    if args.report_only:  # every row the earlier runs saved
        table = _load(args.out / "table.json")
        objectives = _load(args.out / "objective.json")
    print(f"\n## user data ({datetime.date.today()}; mpath-4-{args.width or SearchConfig.width}, "
          "search defaults)\n")
    print("| data | classes | test n | paths | params (% MLP) | chosen | dense ref | "
          "vs ref (pt) | sklearn MLP | vs MLP (pt) | HGB | f32 file | int8 file | int8 agree "
          "| int8 gates | int8 us (dense) | f32 speed-up | wall s |")
    print("|" + "---|" * 18)
    for r in table:
        print(f"| {r['dataset']}{'' if r['seed'] == 0 else ' seed ' + str(r['seed'])} | "
              f"{r['classes']} | {r['test_examples']} | {r['paths']} | "
              f"{r['parameters']:,} ({r['percent_of_mlp']:.1f}%) | {r['test_accuracy']:.4f} | "
              f"{r['reference_test_accuracy']:.4f} | "
              f"{100 * (r['test_accuracy'] - r['reference_test_accuracy']):+.2f} | "
              f"{r['sklearn_mlp']:.4f} | {100 * (r['test_accuracy'] - r['sklearn_mlp']):+.2f} | "
              f"{r['hist_gradient_boosting']:.4f} | {r['float32_accuracy']:.4f} | "
              f"{r['int8_accuracy']:.4f} | {r['int8_agreement']:.4f} | "
              f"{'passed' if r['int8_passed'] else 'FAILED'} | "
              f"{r['int8_us']:.1f} ({r['int8_dense_us']:.1f}) | {r['float32_speedup']:.2f}x | "
              f"{r['wall_s']:.0f} |")
    prediction_table(table)
    if objectives:
        objective_table(objectives, objectives[0].get("objective", args.objective))
    if args.folds:
        pooled_table(table, args.folds)
    if len(seeds) > 1:
        print(f"\nMean over seeds {args.seeds} (search, dense reference and sklearn MLP all "
              "seeded alike; the same split):\n")
        print("| data | chosen | dense ref | vs ref (pt) | sklearn MLP (min-max) | vs MLP (pt) |")
        print("|---|---|---|---|---|---|")
        for name in sets:
            rows = [r for r in table if r["dataset"] == name]
            mean = {k: float(np.mean([r[k] for r in rows]))
                    for k in ("test_accuracy", "reference_test_accuracy", "sklearn_mlp")}
            mlp = [r["sklearn_mlp"] for r in rows]
            print(f"| {name} | {mean['test_accuracy']:.4f} | "
                  f"{mean['reference_test_accuracy']:.4f} | "
                  f"{100 * (mean['test_accuracy'] - mean['reference_test_accuracy']):+.2f} | "
                  f"{mean['sklearn_mlp']:.4f} ({min(mlp):.4f}-{max(mlp):.4f}) | "
                  f"{100 * (mean['test_accuracy'] - mean['sklearn_mlp']):+.2f} |")


if __name__ == "__main__":
    main()
