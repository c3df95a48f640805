"""``mpath-tf report``: one self-contained HTML page for a finished search run.

The page holds the run's settings and library versions, the table of every
path count (parameters, share of the equivalent MLP, predicted validation
accuracy with its uncertainty, measured accuracy of the fine-tuned samples,
measured latency for every benchmarked target and quantization), the Pareto
front of accuracy against parameters (and against latency where measured),
the plots of the run, and the chosen model with its exports. Images are
embedded as PNG data URIs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

from mpath_tf.pipeline.bench import measured_latency
from mpath_tf.pipeline.budget import pareto_paths
from mpath_tf.storage import atomic_write_text
from mpath_tf.pipeline.rundir import RunDir
from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.pipeline.results import (device_lines, objective_lines, prediction_line,
                                      speed_line)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#eee;position:sticky;top:0}
tr.chosen{background:#fde2c8}tr.pareto td:first-child{font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
.scroll{max-height:32em;overflow:auto;display:inline-block}
code{background:#f4f4f4;padding:0 .3em}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _pareto_figure(rows, latency, chosen, objective=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("parameters", {r["paths"]: r["parameters"] for r in rows})]
    if objective:  # the objective's predicted cost, dense marked at its measured cost
        panels.append((f"predicted {objective['name']} ({objective['unit']}) on "
                       f"{objective['measured_on']}",
                       {r["paths"]: r["predicted_cost"] for r in rows
                        if r.get("predicted_cost") is not None}))
    panels += [(f"latency (us), {target} {q}", values) for (target, q), values in latency.items()]
    cols = min(2, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 4 * rows_n), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    accuracy = {r["paths"]: r["predicted_val_accuracy"] for r in rows}
    for ax, (label, cost) in zip(axes.flat, panels):
        keys = [b for b in cost if b in accuracy]
        ax.plot([cost[b] for b in keys], [100 * accuracy[b] for b in keys], ".", color="0.7",
                label="every path count (predicted)")
        front = pareto_paths([r for r in rows if r["paths"] in cost], cost)
        ax.plot([cost[b] for b in front], [100 * accuracy[b] for b in front], "o-",
                color="tab:blue", label="Pareto front")
        if chosen in cost:
            ax.plot(cost[chosen], 100 * accuracy[chosen], "*", ms=15, color="tab:red",
                    label=f"chosen ({chosen} paths)")
        dense = (objective or {}).get("dense")
        if dense and label.startswith("predicted"):
            ax.plot(dense[0], 100 * dense[1], "s", ms=9, color="black",
                    label="dense reference (measured)")
        ax.set_xlabel(label)
        ax.set_ylabel("predicted validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _objective_panel(results: dict) -> dict | None:
    """The objective's record for the Pareto figure, with the dense
    reference's measured cost and validation accuracy (None without one)."""
    objective = results.get("objective")
    if not objective:
        return None
    dense = objective["measured"].get("dense")
    reference = results.get("reference") or {}
    return {**objective, "dense": (dense, reference["val_accuracy"])
            if dense is not None and reference.get("val_accuracy") is not None else None}


def _curve_figure(curve: list[dict], lam) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    ax.plot([r["parameters"] for r in curve], [100 * r["val_accuracy"] for r in curve], "o-")
    for r in curve:
        if lam is not None and abs(r["lam"] - lam) < 1e-12:
            ax.plot(r["parameters"], 100 * r["val_accuracy"], "*", ms=15, color="tab:red",
                    label=f"chosen (lam={lam:.3g})")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy before fine-tuning (%)")
    ax.grid(alpha=0.3)
    if lam is not None:
        ax.legend(fontsize=8)
    return _png(fig)


def _table(headers: list[str], body: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = []
    for i, cells in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _number(value) -> str:
    return "" if value is None else f"{value:,.4g}"


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def write_report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write the HTML report of a finished search run.

    Args:
        run_dir: A run directory whose search has finished (``results.json``).
        output: Destination (default ``RUN/report.html``).

    Returns:
        The path written.

    Raises:
        RunDirError: The run is missing or unfinished.

    Example (after ``mpath-tf search``)::

        write_report("runs/digits-mpath-4-256-seed0")  # -> .../report.html
    """
    run = RunDir.open(run_dir)
    results = run.results()
    meta = json.loads((run.path / "run.json").read_text())
    rows = results["rows"]
    chosen = (results.get("chosen") or {}).get("paths")
    if (results.get("chosen") or {}).get("dense"):
        chosen = None  # the dense reference, not a path count
    latency = measured_latency(run.path) if rows else {}
    front = set(pareto_paths(rows, {r["paths"]: r["parameters"] for r in rows}))
    headers = ["paths", "parameters", "% of MLP", "predicted val acc (%)", "+-",
               "measured val acc (%)"] + [f"{t} {q} (us)" for t, q in latency]
    objective = results.get("objective")
    if objective:
        headers += [f"predicted {objective['name']} ({objective['unit']})",
                    f"measured on {objective['measured_on']}"]
    body, classes = [], []
    for r in rows:
        std = r.get("predicted_std")
        body.append([str(r["paths"]), f"{r['parameters']:,}", f"{r['percent_of_mlp']:.1f}",
                     _percent(r["predicted_val_accuracy"]), _percent(std),
                     _percent(r["measured_val_accuracy"])]
                    + [f"{latency[k][r['paths']]:.1f}" if r["paths"] in latency[k] else ""
                       for k in latency]
                    + ([_number(r.get("predicted_cost")), _number(r.get("measured_cost"))]
                       if objective else []))
        classes.append("chosen" if r["paths"] == chosen else
                       "pareto" if r["paths"] in front else "")
    settings = _table(["setting", "value"], [[html.escape(k), html.escape(json.dumps(v))]
                                             for k, v in meta["settings"].items()])
    versions = _table(["library", "version"], [[html.escape(k), html.escape(v)]
                                               for k, v in meta["versions"].items()])
    chosen_html = "<p>No model was chosen.</p>"
    if results.get("chosen"):
        c = results["chosen"]
        exports = _table(["file", "bytes", "test accuracy", "parity"], [
            [html.escape(e["file"]), f"{e['bytes']:,}", _percent(e.get("test_accuracy")),
             "passed" if e["verification"]["passed"] else "FAILED: " + html.escape(
                 "; ".join(e["verification"].get("failures", [])))]
            for e in c.get("exports", {}).values()])
        name = "the dense reference" if c.get("dense") else f"{c['paths']} paths"
        chosen_html = (f"<p><b>{name}</b>: {c['parameters']:,} parameters "
                       f"({c['percent_of_mlp']:.1f}% of the equivalent MLP), validation "
                       f"accuracy {_percent(c.get('val_accuracy'))}%, test accuracy "
                       f"{_percent(c.get('test_accuracy'))}%.</p>{exports}")
        reference = results.get("reference")
        if reference:
            chosen_html += (
                f"<p>Dense reference (the same layers fully connected, same data and "
                f"budget): {reference['parameters']:,} parameters, test accuracy "
                f"{_percent(reference['test_accuracy'])}% "
                f"({reference['accuracy_difference_pt']:+.2f} points for the chosen model); "
                + ", ".join(f"{q} file {e['bytes']:,} bytes"
                            for q, e in reference.get("exports", {}).items()) + ".</p>")
        for line in filter(None, [prediction_line(results), *objective_lines(results)]):
            chosen_html += f"<p>{html.escape(line)}.</p>"
        if results.get("speed"):
            chosen_html += (f"<p>Speed on the search machine (LiteRT, one thread): "
                            f"{html.escape(speed_line(results['speed']))}.</p>")
        if results.get("device"):  # a TFLM target: instructions (or time), arena, flash
            chosen_html += "".join(f"<p>{html.escape(line)}.</p>"
                                   for line in device_lines(results["device"]))
    class_names = results.get("classes") or meta.get("classes")
    if class_names:
        chosen_html += ("<p>Classes (by output index, as in <code>labels.txt</code>): "
                        + html.escape(", ".join(str(c) for c in class_names)) + ".</p>")
    images = []
    if rows:
        images.append(("Pareto front", _pareto_figure(rows, latency, chosen,
                                                      _objective_panel(results))))
    curve = (results.get("hypernet") or {}).get("curve")
    if curve:
        images.append(("The hypernetwork's networks along lam (before fine-tuning)",
                       _curve_figure(curve, (results.get("chosen") or {}).get("lam"))))
    if (run.path / "results.png").is_file():
        images.append(("Validation error against path count and parameters",
                       _file_png(run.path / "results.png")))
    for plot in sorted((run.path / "bench").glob("*/latency.png")):
        images.append((f"Measured latency on {plot.parent.name}", _file_png(plot)))
    figures = "".join(f"<h2>{html.escape(t)}</h2><img alt=\"{html.escape(t)}\" src=\"{src}\">"
                      for t, src in images)
    s = meta["settings"]
    title = (f"mpath-tf search: {s.get('data') or s['dataset']}, "
             f"{SearchConfig.from_dict(s).network()}"
             + (f", --method {results['method']}" if results.get("method", "rank") != "rank"
                else ""))
    if rows:
        table_html = f"""<h2>Every path count</h2>
<p>Bold: on the Pareto front of predicted accuracy against parameters; shaded: chosen.
+- is the predictor's leave-one-out error.</p>
<div class="scroll">{_table(headers, body, classes)}</div>"""
    elif curve:
        table_html = "<h2>The hypernetwork's networks along lam</h2>" + _table(
            ["lam", "paths", "parameters", "validation accuracy (%)"],
            [[f"{r['lam']:.4g}", str(r["paths"]), f"{r['parameters']:,}",
              _percent(r["val_accuracy"])] for r in curve])
    else:
        table_html = ("<p>This run trained one network at one trade-off (--method "
                      f"{html.escape(str(results.get('method')))}); it has no table of path "
                      "counts.</p>")
    one_shot = ("" if not results.get("one_shot") else
                f"; one-shot validation accuracy {_percent(results['one_shot']['val_accuracy'])}%")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Run directory <code>{html.escape(str(run.path))}</code>, created {html.escape(meta['created'])};
data: {html.escape(str(results.get('data_source')))}{one_shot}.</p>
<h2>Chosen model</h2>{chosen_html}
{figures}
{table_html}
<h2>Settings</h2>{settings}
<h2>Library versions</h2>{versions}
</body></html>
"""
    output = Path(output) if output else run.path / "report.html"
    atomic_write_text(output, page)
    return output
