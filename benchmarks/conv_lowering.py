"""Does ``--lowering auto`` pick the faster lowering of path convolutions?

A stage of path convolutions (``converters.profiling.conv_stack_model``:
two 3x3 ``PathConv2D`` of C channels, equal and irregular path widths for
b in 1..C paths, on 8x8 and 16x16 maps) is exported in both conv lowerings,
``grouped`` (one grouped CONV_2D per distinct width, DEPTHWISE_CONV_2D for
single channels) and ``split`` (a STRIDED_SLICE and a CONV_2D per path,
CONCATENATION), and timed with edge_bench's local target with XNNPACK and
with LiteRT's built-in kernels (where a grouped CONV_2D runs on the
reference path). Per setting and mode, auto's cost model is fitted on the
other channel count's stages (held out: the stages it is judged on were not
in its fit) and on all of them (in sample), and its picks are set against
the measured times: stages where the two lowerings differ, picks right, and
the mean and worst ratio of the picked lowering's time to the faster one's
("regret"), beside always-grouped and always-split.

Run from a clean checkout (after the README's install command):

    python benchmarks/conv_lowering.py --cpus 1

Exports and measurements are journaled under --workdir (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path


def regrets(rows: list[dict], pick) -> list[tuple[float, bool]]:
    """(picked time / best time, picked the best) per stage whose two
    lowerings are different files (some width repeats)."""
    stages: dict = {}
    for row in rows:
        key = (tuple(row["path_widths"]), row["pixels"])
        stages.setdefault(key, {})[row["lowering"]] = row["us"]
    out = []
    for (widths, pixels), us in stages.items():
        if len(us) < 2 or len(set(widths)) == len(widths):
            continue
        chosen = pick(list(widths), pixels)
        best = min(us, key=us.get)
        out.append((us[chosen] / us[best], chosen == best))
    return out


def summary(values: list[tuple[float, bool]]) -> str:
    import numpy as np

    ratios = [r for r, _ in values]
    right = sum(ok for _, ok in values)
    return f"{right}/{len(values)} | {np.mean(ratios):.2f}x | {max(ratios):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="16,64")
    parser.add_argument("--modes", default="float32,int8")
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 1")
    parser.add_argument("--workdir", type=Path, default=Path("runs/conv_lowering"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from converters.profiling import CONV_SIDES, profile_conv
    from converters.profiles import choose_conv_lowering
    from edge_bench import BenchSettings, LocalTarget

    channels = [int(c) for c in args.channels.split(",")]
    modes = tuple(args.modes.split(","))
    cpus = tuple(int(c) for c in args.cpus.split(",") if c)
    lines = ["| kernels | mode | C | auto held out: right, mean, worst regret | auto in sample "
             "| always grouped | always split |", "|---|---|---|---|---|---|---|"]
    for xnnpack in (True, False):
        settings = BenchSettings(cpus=cpus, xnnpack=xnnpack)
        kernels = "XNNPACK" if xnnpack else "built-in"
        rows = {c: profile_conv(LocalTarget(), c, modes, None, CONV_SIDES,
                                  args.workdir / f"c{c}-{kernels}", settings,
                                  log=lambda line: print(line, flush=True))
                for c in channels}
        everything = {"conv_layers": [row for c in channels for row in rows[c]]}
        for mode in modes:
            for c in channels:
                own = [row for row in rows[c] if row["quantization"] == mode]
                others = {"conv_layers": [row for d in channels if d != c for row in rows[d]]}
                held_out = summary(regrets(own, lambda w, p: choose_conv_lowering(
                    others, w, p, mode))) if len(channels) > 1 else "-"
                in_sample = summary(regrets(own, lambda w, p: choose_conv_lowering(
                    everything, w, p, mode)))
                lines.append(f"| {kernels} | {mode} | {c} | {held_out} | {in_sample} | "
                             f"{summary(regrets(own, lambda w, p: 'grouped'))} | "
                             f"{summary(regrets(own, lambda w, p: 'split'))} |")
    print(f"\n{datetime.date.today()}: path-convolution lowerings, channels {args.channels}, "
          f"sides {CONV_SIDES}, cpus {args.cpus or 'any'}; right picks / stages, mean and worst "
          "time over the faster lowering's\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
