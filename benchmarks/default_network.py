"""Which network should `mpath-tf search` search by default?

For each width of ``--widths``, runs the default command (``mpath-tf search
--width W`` on the embedded digits data, everything else at its default) in
a fresh directory, as a new user would, and reports its wall time (the
whole command, TensorFlow's start included), the chosen model and how its
int8 and float32 files run against the dense reference's on this machine
(LiteRT, timed side by side in the run). Then it resumes each run with
``--objective latency`` on each target of ``--targets`` (nothing is trained
again but the fine-tuning of a newly chosen path count) and reports the
model chosen there against dense, measured in that run.

Run from a clean checkout (after the README's install command):

    python benchmarks/default_network.py --widths 64,256,500

Each run keeps its directory under ``--out``; a rerun reuses finished runs
(their wall time is then the first run's, read back from the table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path


def mpath_tf(*args: str, cwd: Path) -> float:
    """Run ``mpath-tf ARGS`` in ``cwd``; its wall time in seconds.

    Raises:
        SystemExit: The command failed (its output is printed).
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mpath_tf", *args, "--quiet"], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        raise SystemExit(f"mpath-tf {' '.join(args)} failed (exit {done.returncode})")
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="64,256,500")
    parser.add_argument("--targets", default="local,tflm:cortex-m4",
                        help="targets of the --objective latency reruns")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-default-network"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "table.json"
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    for width in args.widths.split(","):
        folder = args.out / f"width-{width}"
        folder.mkdir(exist_ok=True)
        run = folder / "runs" / f"digits-mpath-4-{width}-seed0"
        row = table.setdefault(width, {})
        if "wall_s" not in row or not (run / "results.json").is_file():
            row["wall_s"] = mpath_tf("search", "--width", width, cwd=folder)
        result = json.loads((run / "results.json").read_text())
        row["default"] = {k: result["chosen"][k] for k in ("paths", "parameters",
                                                            "percent_of_mlp", "test_accuracy")}
        row["default"]["reference_test_accuracy"] = result["reference"]["test_accuracy"]
        row["default"]["speed"] = result["speed"]
        for target in args.targets.split(","):
            wall = mpath_tf("search", "--width", width, "--objective", "latency", "--target",
                            target, cwd=folder)
            result = json.loads((run / "results.json").read_text())
            objective = result["objective"]
            row[target] = {"choice": objective["choice"], "unit": objective["unit"],
                           "cost": objective["measured"][str(objective["choice"])],
                           "dense": objective["measured"]["dense"],
                           "test_accuracy": result["chosen"]["test_accuracy"], "wall_s": wall}
        table_path.write_text(json.dumps(table, indent=2) + "\n")

    print(f"\n## Default network ({datetime.date.today()}; digits, every other setting "
          "at its default)\n")
    print("| width | default run wall s | chosen paths | params (% MLP) | test (dense) | "
          "int8 us (dense) | int8 x dense | float32 x dense |")
    print("|---|---|---|---|---|---|---|---|")
    for width, row in table.items():
        d = row["default"]
        int8, f32 = d["speed"]["int8"], d["speed"]["float32"]
        print(f"| {width} | {row['wall_s']:.1f} | {d['paths']} | {d['parameters']:,} "
              f"({d['percent_of_mlp']:.1f}%) | {d['test_accuracy']:.4f} "
              f"({d['reference_test_accuracy']:.4f}) | {int8['chosen_us']:.2f} "
              f"({int8['reference_us']:.2f}) | {int8['speedup']:.2f}x | {f32['speedup']:.2f}x |")
    print("\n`--objective latency`, resumed (cost measured in that run; x dense: dense's "
          "cost over the chosen one's):\n")
    print("| width | target | chosen | cost | dense | x dense | test | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for width, row in table.items():
        for target in args.targets.split(","):
            r = row.get(target)
            if not r:
                continue
            unit = " instr." if r["unit"] == "instructions" else " us"
            scale = 1000 if r["unit"] == "instructions" else 1
            fmt = (lambda v: f"{v / scale:,.1f}k{unit}") if scale > 1 else (
                lambda v: f"{v:,.2f}{unit}")
            chosen = "dense" if r["choice"] == "dense" else f"{r['choice']} paths"
            print(f"| {width} | {target} | {chosen} | {fmt(r['cost'])} | {fmt(r['dense'])} | "
                  f"{r['dense'] / r['cost']:.2f}x | {r['test_accuracy']:.4f} | "
                  f"{r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
