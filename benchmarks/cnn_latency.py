"""Latency of the built-in CNN's derived models against the dense CNN.

For ``mpath-cnn-<depth>-<width>`` on one image shape, the dense network and
the networks derived for several path counts (weights of an untrained
supernet: latency does not depend on them; path widths from its membranes)
are exported in float32 and int8 as ``mpath-tf search`` exports them
(``lowering="auto"``: a stage's paths grouped by width, one convolution per
distinct width) and timed side by side with edge_bench's local target
(LiteRT, XNNPACK). Prints, per path count: the path widths, parameters, the
median latency of each file, the speed-up over the dense file, and the
multiply-add ratio of the convolutions (dense over derived: the speed-up an
op with no per-op cost would reach).

Run from a clean checkout (after the README's install command):

    python benchmarks/cnn_latency.py --cpus 1
    python benchmarks/cnn_latency.py --shape 8,8 --width 16    # digits-sized
    python benchmarks/cnn_latency.py --cpus 1 --no-xnnpack     # built-in kernels

``--family resnet8`` asks the question of issue 21's target instead: how
much faster can channel paths make MLPerf Tiny's ResNet-8 (a 3x3 stem, then
three stages of 16, 32 and 64 channels, two 3x3 convolutions and a residual
add each, stride 2 and a 1x1 projection shortcut into stages 2 and 3) in
int8? A stage's paths can only split the convolutions whose input and
output are that stage's channels: both of stage 1's and the second of
stages 2 and 3 (the first one of each widens the channels and joins the
paths of the stage before). ``--paths`` are then equal groups of those
convolutions (``Conv2D(groups=g)``, one grouped CONV_2D op: the fastest form
a derived stage can take, as learned unequal paths become one convolution
per distinct width; a stage with no more channels than ``g`` goes
depthwise, as ``PathConv2D`` derives single channels), timed against the
dense network without training (latency does not depend on the weights);
the MAC ratio then counts every layer's multiply-adds at its own
resolution. Its convolutions have no bias and its 1x1 shortcuts a batch
normalization (``mpath_tf.build_resnet8`` follows MLPerf's code: biases,
no normalization on the shortcut); both fold into the same ops:

    python benchmarks/cnn_latency.py --family resnet8 --paths 2,4,8,16,64 --cpus 1

``--target tflm:cortex-m4`` measures the int8 files on TFLM with CMSIS-NN on
an emulated Cortex-M4 instead (``mpath-tf setup mcu`` first; instructions
per inference, not cycles), ``--target tflm`` on TFLM's reference kernels
on this machine:

    python benchmarks/cnn_latency.py --family resnet8 --shape 32,32,3 --paths 2,4,8,16 \
        --target tflm:cortex-m4

Exports and measurements are journaled under ``--workdir`` (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cnn import macs  # noqa: E402  (multiply-adds of any derived or grouped network)

MODES = ("float32", "int8")
STAGES = (16, 32, 64)  # ResNet-8's stages


def resnet8(shape: tuple[int, ...], classes: int, groups: int):
    """MLPerf Tiny's ResNet-8 with the stage-internal convolutions in
    ``groups`` equal groups (``groups`` = 1: the dense network; a stage with
    no more channels than ``groups`` goes depthwise)."""
    import keras
    from keras import layers

    def conv(x, filters, stride=1, kernel=3, grouped=False):
        g = min(groups, filters) if grouped else 1
        if g == filters:  # one channel a group: depthwise, as PathConv2D derives it
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                              groups=g)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input(shape)
    x = inputs if len(shape) == 3 else layers.Reshape((*shape, 1))(inputs)
    x = layers.ReLU()(conv(x, STAGES[0]))
    for i, filters in enumerate(STAGES):
        stride = 1 if i == 0 else 2
        y = layers.ReLU()(conv(x, filters, stride, grouped=i == 0))
        y = conv(y, filters, grouped=True)
        shortcut = x if i == 0 else conv(x, filters, stride, kernel=1)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def conv_macs(model) -> int:
    """Weights of the convolutions (multiply-adds per output pixel of the
    isotropic CNN, summed over its convolutions)."""
    import numpy as np

    return sum(int(np.prod(w.shape)) for layer in model.layers
               for w in layer.weights if len(w.shape) == 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("cnn", "resnet8"), default="cnn")
    parser.add_argument("--shape", default="28,28", help="image shape, e.g. 28,28 or 32,32,3")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--paths", default="2,4,8,16,32")
    parser.add_argument("--cpus", default="", help="pin to these cores, e.g. 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-xnnpack", action="store_true",
                        help="time LiteRT's built-in kernels (a target without the delegate)")
    parser.add_argument("--workdir", default="runs/cnn-latency")
    parser.add_argument("--target", default="local",
                        help="local, tflm or tflm:CORE (TFLM targets: int8 only)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from converters import export_tflite, get_quantization
    from edge_bench import BenchSettings, Journal, get_target, measure_models
    from edge_bench.stats import row_cost, row_unit
    from edge_bench.targets import target_slug
    from mpath_tf import build_supernet, derive, to_dense

    shape = tuple(int(d) for d in args.shape.split(","))
    network = (f"mpath-cnn-{args.depth}-{args.width}" if args.family == "cnn"
               else "ResNet-8 (16/32/64)")
    size = "x".join(map(str, shape))
    workdir = Path(args.workdir) / (f"{size}-{args.depth}-{args.width}" if args.family == "cnn"
                                    else f"{size}-resnet8")
    journal = workdir / (f"latency{'-no-xnnpack' if args.no_xnnpack else ''}"
                         + ("" if args.target == "local" else f"-{target_slug(args.target)}")
                         + ".jsonl")
    modes = ("int8",) if args.target.startswith("tflm") else MODES
    workdir.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(cpus=tuple(int(c) for c in args.cpus.split(",") if c),
                             xnnpack=not args.no_xnnpack)
    representative = np.random.default_rng(0).random((200, *shape), dtype="float32")
    counts = [int(p) for p in args.paths.split(",")]
    if args.family == "cnn":
        net = build_supernet(shape, 10, args.depth, args.width, seed=0, arch="cnn")
        models = {1: to_dense(net), **{b: derive(net, b) for b in counts if b <= args.width}}
        widths = {b: "dense" if b == 1 else str(sorted(net.derived_widths(b))) for b in models}
        ratio = {b: conv_macs(models[1]) / conv_macs(m) for b, m in models.items()}
    else:
        keras.utils.set_random_seed(0)
        models = {g: resnet8(shape, 10, g) for g in [1, *counts]}
        widths = {g: "dense" if g == 1 else f"{g} equal groups" for g in models}
        ratio = {g: macs(models[1]) / macs(m) for g, m in models.items()}
    jobs = []
    for b, model in models.items():
        for mode in modes:
            path = workdir / f"paths-{b}_{mode}.tflite"
            if not path.is_file():
                print(f"exporting {path.name}", flush=True)
                export_tflite(model, path, get_quantization(mode), representative,
                              lowering="auto")
            jobs.append(({"paths": b, "quantization": mode}, path))
    target = get_target(args.target)
    repeats = 1 if args.target.startswith("tflm:") else args.repeats  # counts repeat exactly
    rows = measure_models(target, jobs, Journal(journal), settings,
                          repeats=repeats, log=lambda line: print(line, flush=True))
    median = {(labels["paths"], labels["quantization"]): row_cost(row)
              for (labels, _), row in zip(jobs, rows) if row["status"] == "ok"}
    arena = {labels["paths"]: row.get("arena_bytes") for (labels, _), row in zip(jobs, rows)
             if row["status"] == "ok" and labels["quantization"] == "int8"}
    unit = row_unit(next(r for r in rows if r["status"] == "ok"))
    device = target.describe()
    print(f"\n{datetime.date.today()}  {device.get('cpu_model') or device.get('core') or 'tflm'}"
          f" ({args.target}), {network} on {shape}, settings {settings.to_dict()}, {repeats} "
          "tries (median try)" + ("; instructions per inference, not cycles"
                                  if unit == "instructions" else ""))
    u = "instructions" if unit == "instructions" else "us"
    print("| b | path widths | params | "
          + " | ".join(f"{m} {u} | {m} speed-up" for m in modes)
          + " | conv MAC ratio |" + (" int8 arena bytes |" if args.target != "local" else ""))
    print("|---" * (4 + 2 * len(modes) + (args.target != "local")) + "|")
    for b, model in models.items():
        cells = []
        for mode in modes:
            us = median.get((b, mode))
            dense = median.get((1, mode))
            cells += (["-", "-"] if us is None or dense is None
                      else [f"{us:,.1f}", f"{dense / us:.2f}x"])
        print(f"| {b} | {widths[b]} | {model.count_params():,} | {' | '.join(cells)} | "
              f"{ratio[b]:.2f} |" + (f" {arena[b]:,} |" if arena.get(b) else " - |"
                                     if args.target != "local" else ""))


if __name__ == "__main__":
    main()
