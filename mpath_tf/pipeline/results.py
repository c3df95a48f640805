"""``results.json``: the one record of a finished search, its writer and
its readers' views.

``SearchResults`` is the schema every search method writes (``rank``,
``lambda``, ``hypernet``) and ``RunDir.results``, the report, the bundle and
``mpath-tf search --json`` read back; ``write_csv``, ``summary``,
``outcome_lines`` and ``speed_line`` are the views of it a user sees.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mpath_tf.errors import DamagedFileError
from mpath_tf.storage import atomic_write_json, atomic_write_text, read_json

RESULTS_FILE = "results.json"


@dataclass
class SearchResults:
    """What a finished search found, as ``results.json`` holds it.

    Args:
        run_dir: The run directory.
        data_source: Where the data came from (dataset name or file).
        classes: The class names (label values), in class-index order.
        settings: The run's ``SearchConfig`` as a dict.
        chosen: The chosen model: ``paths``, ``path_widths``, ``parameters``,
            ``percent_of_mlp``, accuracies and ``exports`` per quantization.
        rows: One row per path count (``RESULT_COLUMNS``; empty for the
            cost-regularized methods, which train one model).
        pareto_params: Path counts on the accuracy/parameters Pareto front.
        method: ``rank`` (the paper), ``lambda`` or ``hypernet``.
        one_shot: The one-shot training's record (None for ``lambda``).
        budget: The limits the choice met, or None.
        budget_gain: Accuracy the final fine-tuning's longer budget adds.
        reference: The dense reference's record and exports, or None.
        speed: Timings of the chosen model and the reference, or None.
        device: With a TFLM target: both int8 files measured there
            (``mpath_tf.pipeline.reference.compare_on_tflm``), or None.
        cost: The cost table of a cost-regularized search, or None.
        search_seconds: Time of a cost-regularized search, or None.
        hypernet: The hypernetwork's lambda curve, or None.
        objective: With ``--objective latency|ram|flash``: the candidates,
            their measured costs and the choice
            (``mpath_tf.pipeline.objective.choose_for_target``), or None.

    Example:
        >>> r = SearchResults("runs/x", "digits", ["0", "1"], {}, {"paths": 2}, [], [2])
        >>> SearchResults.from_dict(r.to_dict()) == r
        True
    """

    run_dir: str
    data_source: str
    classes: list | None
    settings: dict
    chosen: dict
    rows: list
    pareto_params: list
    method: str = "rank"
    one_shot: dict | None = None
    budget: dict | None = None
    budget_gain: float = 0.0
    reference: dict | None = None
    speed: dict | None = None
    device: dict | None = None
    cost: dict | None = None
    search_seconds: float | None = None
    hypernet: dict | None = None
    objective: dict | None = None

    def to_dict(self) -> dict:
        """The JSON-ready dict (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SearchResults":
        """The record of a ``results.json`` dict; fields written by later
        versions are ignored, those of earlier ones take their defaults.

        Raises:
            KeyError: A field without a default is missing.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def write(self, run_path: str | Path) -> Path:
        """Write ``RUN/results.json`` atomically; return its path."""
        path = Path(run_path) / RESULTS_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def read(cls, path: str | Path) -> "SearchResults":
        """Read a ``results.json``.

        Raises:
            FileNotFoundError: There is none.
            DamagedFileError: It is not JSON, or lacks a field.
        """
        values = read_json(path)
        try:
            return cls.from_dict(values)
        except (KeyError, TypeError) as err:
            raise DamagedFileError(path, f"not a search's results: {err}") from None


RESULT_COLUMNS = (
    "paths",
    "parameters",
    "percent_of_mlp",
    "predicted_val_accuracy",
    "predicted_std",
    "measured_val_accuracy",
    "predicted_cost",
    "measured_cost",
)



def write_csv(rows: list[dict], path: Path) -> None:
    """``results.csv``: one row per path count (``RESULT_COLUMNS``), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in RESULT_COLUMNS})
    atomic_write_text(path, buffer.getvalue())



def summary(result: dict) -> dict:
    """The machine-readable summary of a search (``mpath-tf search --json``).

    Args:
        result: What ``search`` returned.

    Returns:
        Run directory, chosen model, exported files, Pareto front, budget,
        predictor, and the objective's measurements and choice.
    """
    chosen = result["chosen"]
    return {
        "run_dir": result["run_dir"],
        "chosen": {**{k: chosen[k] for k in ("paths", "parameters", "percent_of_mlp",
                                             "predicted_val_accuracy", "val_accuracy",
                                             "test_accuracy", "path_widths")},
                   "dense": bool(chosen.get("dense"))},
        "exports": {q: {"file": str(Path(result["run_dir"]) / e["file"]), "bytes": e["bytes"],
                        "test_accuracy": e["test_accuracy"],
                        "parity_passed": e["verification"]["passed"]}
                    for q, e in chosen["exports"].items()},
        "pareto_params": result["pareto_params"],
        "budget": result["budget"],
        "predictor": result["settings"]["predictor"],
        "classes": result.get("classes"),
        "reference": None if not result.get("reference") else {
            k: result["reference"][k] for k in ("test_accuracy", "parameters",
                                                "accuracy_difference_pt")},
        "speed": result.get("speed"),
        "device": result.get("device"),
        "objective": result.get("objective"),
    }



def outcome_lines(result: dict) -> list[str]:
    """The closing lines of a search: the chosen model, against the dense
    reference in accuracy, size and speed, and whether its exports passed.

    Args:
        result: The content of ``results.json``.

    Returns:
        Lines to print.
    """
    chosen = result["chosen"]
    settings = result.get("settings") or {}
    dense = "the MLP" if settings.get("arch", "mlp") == "mlp" and not settings.get("model") else (
        "the dense network")
    if chosen.get("dense"):
        lines = [f"chosen: {dense} itself (dense), {chosen['parameters']} parameters, test "
                 f"accuracy {chosen['test_accuracy']:.4f}"]
    else:
        lines = [f"chosen: {chosen['paths']} paths, {chosen['parameters']} parameters "
                 f"({chosen['percent_of_mlp']:.1f}% of {dense}), test accuracy "
                 f"{chosen['test_accuracy']:.4f}"]
    line = prediction_line(result)
    if line:
        lines.append(line)
    reference = result.get("reference")
    if reference:
        sizes = ", ".join(f"{q} {chosen['exports'][q]['bytes']:,} vs "
                          f"{reference['exports'][q]['bytes']:,} bytes"
                          for q in ("float32", "int8") if q in reference["exports"])
        lines.append(f"dense reference: test accuracy {reference['test_accuracy']:.4f} "
                     f"({reference['accuracy_difference_pt']:+.2f} points for the chosen "
                     f"model), {reference['parameters']:,} parameters; files: {sizes}")
    lines.extend(objective_lines(result))
    if result.get("speed"):
        line = speed_line(result["speed"])
        if line:
            lines.append(f"speed on this machine: {line}")
        slower = slower_line(result)
        if slower:
            lines.append(slower)
    if result.get("device"):
        lines.extend(device_lines(result["device"]))
    failed = [f"{q}: {'; '.join(e['verification']['failures'])}"
              for q, e in chosen["exports"].items()
              if not e.get("verification", {}).get("passed", True)]
    if failed:
        lines.append("FAILED: the chosen model's exported files miss their checks ("
                     + "; ".join(failed) + "); they are kept, see results.json")
    return lines


def device_lines(device: dict) -> list[str]:
    """The closing lines of a search measured on a TFLM target.

    Example:
        >>> for line in device_lines({"target": "tflm:cortex-m4", "unit": "instructions",
        ...         "ratio": 1.2, "chosen": {"cost": 50000.0, "arena_bytes": 6000,
        ...         "flash_bytes_no_metadata": 20000, "parity": None},
        ...         "reference": {"cost": 60000.0, "arena_bytes": 4000,
        ...         "flash_bytes_no_metadata": 23000, "parity": None}, "errors": {}}):
        ...     print(line)
        on tflm:cortex-m4 (int8): 50.0k vs dense 60.0k instructions per inference (instructions, not cycles), 1.20x fewer; arena 6,000 vs 4,000 bytes; flash 20,000 vs 23,000 bytes
    """
    target, lines = device["target"], []
    chosen, reference = device.get("chosen"), device.get("reference")
    if chosen:
        if device.get("unit") == "instructions":
            cost = f"{chosen['cost'] / 1000:,.1f}k"
            if reference:
                cost += f" vs dense {reference['cost'] / 1000:,.1f}k"
            cost += " instructions per inference (instructions, not cycles)"
        else:
            cost = f"{chosen['cost']:.1f} us" + (
                f" vs dense {reference['cost']:.1f} us" if reference else "") + " per inference"
        if device.get("ratio"):
            ratio = device["ratio"]
            fewer = "fewer" if device.get("unit") == "instructions" else "faster"
            more = "more" if device.get("unit") == "instructions" else "slower"
            if abs(ratio - 1) < 0.005:
                cost += ", the same as dense"
            else:
                cost += (f", {ratio:.2f}x {fewer}" if ratio >= 1 else f", {1 / ratio:.2f}x {more}")
        memory = (f"arena {chosen['arena_bytes']:,}"
                  + (f" vs {reference['arena_bytes']:,}" if reference else "") + " bytes; flash "
                  f"{chosen['flash_bytes_no_metadata']:,}"
                  + (f" vs {reference['flash_bytes_no_metadata']:,}" if reference else "")
                  + " bytes")
        lines.append(f"on {target} (int8): {cost}; {memory}")
    host = device.get("host") or (device if target == "tflm" else None)
    if host:
        roles = [r for r in ("chosen", "reference") if host.get(r)]
        parity = [host[r]["parity"] for r in roles if host[r].get("parity")]
        if roles:
            lines.append(
                f"TFLM prepares {' and '.join(roles)} file{'s' if len(roles) > 1 else ''}"
                + (f"; outputs against LiteRT: largest difference "
                   f"{max(p['max_abs_diff'] for p in parity):.4g}, top-1 agreement "
                   f"{min(p['top1_agreement'] for p in parity):.2%}" if parity else ""))
    for role, error in {**device.get("errors", {}),
                        **((device.get("host") or {}).get("errors") or {})}.items():
        lines.append(f"FAILED on {target}: {role}: {error}")
    return lines


def prediction_line(result: dict) -> str | None:
    """The chosen model's predicted validation accuracy against the one
    measured after its final fine-tuning, and the dense reference's (None
    for a dense choice or a run without predictions).

    Example:
        >>> prediction_line({"chosen": {"predicted_val_accuracy": 0.85, "predicted_std": 0.004,
        ...     "val_accuracy": 0.836}, "reference": {"val_accuracy": 0.855}})
        'validation accuracy: predicted 0.8500 +- 0.0040, measured 0.8360 (1.40 points below, outside the +-); dense reference 0.8550'
    """
    chosen = result["chosen"]
    if chosen.get("dense") or chosen.get("predicted_val_accuracy") is None or (
            chosen.get("val_accuracy") is None):
        return None
    predicted, measured = chosen["predicted_val_accuracy"], chosen["val_accuracy"]
    std = chosen.get("predicted_std")
    line = f"validation accuracy: predicted {predicted:.4f}"
    if std is not None:
        line += f" +- {std:.4f}"
    difference = 100 * (measured - predicted)
    line += f", measured {measured:.4f}"
    if std is not None and abs(measured - predicted) > std:
        line += (f" ({abs(difference):.2f} points {'below' if difference < 0 else 'above'}, "
                 "outside the +-)")
    reference = result.get("reference")
    if reference and reference.get("val_accuracy") is not None:
        line += f"; dense reference {reference['val_accuracy']:.4f}"
    return line


OBJECTIVE_WORDS = {"latency": "int8 inference", "ram": "TFLM arena (int8)",
                   "flash": "int8 file for TFLM without metadata"}


def cost_text(value: float, unit: str) -> str:
    """A cost in its unit, as the closing lines write it.

    Example:
        >>> cost_text(88012.0, "instructions"), cost_text(2.04, "us"), cost_text(6000, "bytes")
        ('88.0k instructions', '2.0 us', '6,000 bytes')
    """
    if unit == "instructions":
        return f"{value / 1000:,.1f}k instructions"
    if unit == "us":
        return f"{value:,.1f} us"
    return f"{value:,.0f} {unit}"


def objective_lines(result: dict) -> list[str]:
    """The closing lines of ``--objective latency|ram|flash``: what was
    measured, what was chosen, and when dense is the answer, the runner-up
    multipath model and the devices where such models pay.

    Example:
        >>> result = {"settings": {"max_accuracy_drop": 0.01},
        ...     "rows": [{"paths": 4, "parameters": 500}, {"paths": 1, "parameters": 1000}],
        ...     "reference": {"parameters": 1000},
        ...     "objective": {"name": "latency", "measured_on": "local", "unit": "us",
        ...         "choice": "dense", "runner_up": 4, "finalists": [4],
        ...         "measured": {"4": 2.0, "dense": 1.5}, "paying": [
        ...             {"target": "tflm:cortex-m4", "paths": 4, "gain": 1.3}]}}
        >>> for line in objective_lines(result):
        ...     print(line)  # doctest: +NORMALIZE_WHITESPACE
        --objective latency on local: dense is the answer here: its int8 inference measures
        1.5 us; the cheapest multipath model within --max-accuracy-drop 0.01, 4 paths,
        measures 2.0 us (1.33x more) with 2.00x fewer parameters
        multipath models of this network pay, by the bundled cost tables (block-diagonal
        layers, predicted), on tflm:cortex-m4 (4 paths, 1.30x cheaper); measure yours with
        mpath-tf bench --target
    """
    obj = result.get("objective")
    if not obj:
        return []
    unit, measured, where = obj["unit"], obj["measured"], obj["measured_on"]
    what = OBJECTIVE_WORDS[obj["name"]]
    drop = (result.get("settings") or {}).get("max_accuracy_drop")
    params = {r["paths"]: r["parameters"] for r in result.get("rows", [])}
    head = f"--objective {obj['name']} on {where}"
    dense = measured.get("dense", measured.get("1"))
    runner = obj.get("runner_up")
    if obj["choice"] == "dense" or (obj["choice"] == 1 and "dense" not in measured):
        line = f"{head}: dense is the answer here: its {what} measures {cost_text(dense, unit)}"
        if runner is not None and runner != 1:
            cost = measured[str(runner)]
            dense_params = (result.get("reference") or {}).get("parameters") or params.get(1)
            line += (f"; the cheapest multipath model within --max-accuracy-drop {drop:g}, "
                     f"{runner} paths, measures {cost_text(cost, unit)} "
                     f"({cost / dense:.2f}x more)")
            if dense_params and params.get(runner):
                line += f" with {dense_params / params[runner]:.2f}x fewer parameters"
        lines = [line]
        if runner is None or runner == 1:
            lines.append(f"no multipath model is predicted within --max-accuracy-drop {drop:g} "
                         "of the best validation accuracy; allow a larger drop, or train longer")
        elif obj.get("paying"):
            lines.append("multipath models of this network pay, by the bundled cost tables "
                         "(block-diagonal layers, predicted), on " + ", ".join(
                             f"{p['target']} ({p['paths']} paths, {p['gain']:.2f}x cheaper)"
                             for p in obj["paying"])
                         + "; measure yours with mpath-tf bench --target")
        elif obj.get("paying") is not None:
            lines.append("no bundled cost table predicts a gain for layers of this width: "
                         "multipath models pay where multiply-adds dominate, as with 500-wide "
                         "layers (docs/results.md, \"Microcontrollers\")")
        return lines
    cost = measured[str(obj["choice"])]
    line = f"{head}: chosen {obj['choice']} paths, {what} {cost_text(cost, unit)}"
    if dense is not None:
        ratio = dense / cost if cost else float("inf")
        line += (f" vs dense {cost_text(dense, unit)}, "
                 + (f"{ratio:.2f}x less" if ratio >= 1 else f"{1 / ratio:.2f}x more"))
    others = [b for b in obj["finalists"] if b != obj["choice"]]
    if others:
        line += "; other finalists: " + ", ".join(
            f"{b} paths {cost_text(measured[str(b)], unit)}" for b in others)
    return [line]


def slower_line(result: dict) -> str | None:
    """When the chosen int8 file runs slower than the dense reference's on
    this machine: why it was still chosen, what it gains, and where such
    models pay (None when it is not slower, or nothing was timed).

    Example:
        >>> print(slower_line({"speed": {"int8": {"speedup": 0.5}},
        ...     "chosen": {"parameters": 50, "exports": {"int8": {"bytes": 900}}},
        ...     "reference": {"parameters": 100, "exports": {"int8": {"bytes": 1000}}},
        ...     "settings": {"max_accuracy_drop": 0.01}}))
        ... # doctest: +NORMALIZE_WHITESPACE
        the chosen model is slower than dense in int8 here: it was chosen as the one with the
        fewest parameters within --max-accuracy-drop 0.01; it has 2.00x fewer parameters and a
        1.11x smaller int8 file. Multipath models run faster where multiply-adds dominate, as
        with 500-wide layers on a Cortex-M4 (docs/results.md, "Microcontrollers"), or
        --objective latency chooses the fastest here, dense included: measure your device with
        mpath-tf bench --target
    """
    speed = (result.get("speed") or {}).get("int8")
    reference = result.get("reference")
    if not speed or not reference or speed["speedup"] >= 1:
        return None
    chosen, settings = result["chosen"], result.get("settings") or {}
    if result.get("method", "rank") != "rank":
        why = f"--method {result['method']} chose it"
    elif settings.get("paths"):
        why = f"--paths {settings['paths']} asked for it"
    elif result.get("budget"):
        why = f"it is the most accurate within {result['budget']['limits']}"
    elif result.get("objective"):
        objective = result["objective"]
        why = (f"it is the cheapest in {objective['name']} on {objective['measured_on']} "
               f"within --max-accuracy-drop {settings.get('max_accuracy_drop')}")
    else:
        why = ("it was chosen as the one with the fewest parameters within "
               f"--max-accuracy-drop {settings.get('max_accuracy_drop')}")
    sizes = [(e.get("int8") or {}).get("bytes") for e in (chosen["exports"],
                                                           reference.get("exports") or {})]
    gains = f"{reference['parameters'] / chosen['parameters']:.2f}x fewer parameters"
    if all(sizes):
        gains += f" and a {sizes[1] / sizes[0]:.2f}x smaller int8 file"
    line = f"the chosen model is slower than dense in int8 here: {why}; it has {gains}."
    objective = result.get("objective") or {}
    if objective.get("measured_on", "local") != "local":
        return line + f" It was chosen for {objective['measured_on']}, not for this machine."
    return (line + " Multipath models run faster where multiply-adds dominate, as with "
            "500-wide layers on a Cortex-M4 (docs/results.md, \"Microcontrollers\"), or "
            "--objective latency chooses the fastest here, dense included: measure your "
            "device with mpath-tf bench --target")


def speed_line(speed: dict) -> str:
    """``int8: 3.1 us vs dense 11.6 us, 3.7x faster; float32: ...`` (empty if none).

    Example:
        >>> speed_line({"int8": {"chosen_us": 3.1, "reference_us": 11.6, "speedup": 3.74}})
        'int8: 3.1 us vs dense 11.6 us, 3.74x faster'
    """
    parts = []
    for q in ("int8", "float32"):
        if q in speed:
            s = speed[q]
            word = "faster" if s["speedup"] >= 1 else "slower"
            ratio = s["speedup"] if s["speedup"] >= 1 else 1 / s["speedup"]
            parts.append(f"{q}: {s['chosen_us']:.1f} us vs dense {s['reference_us']:.1f} us, "
                         f"{ratio:.2f}x {word}")
    return "; ".join(parts)
