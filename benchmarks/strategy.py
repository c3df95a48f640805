"""What distributing the one-shot training costs (``search --strategy``).

Trains the same supernet for the same epochs three ways, each in fresh
processes, and prints seconds per epoch side by side (ratios against Keras
``fit``) with the validation accuracy reached:

- ``fit``: ``mpath_tf.training.train`` (Keras ``fit``, no ``--strategy``);
- ``loop``: ``mpath_tf.training.distributed.train_distributed`` in one process
  (the loop ``--strategy`` uses, default strategy);
- ``multiworker xN``: N worker processes on 127.0.0.1 under
  ``MultiWorkerMirroredStrategy`` (``--strategy multiworker``), worker k
  pinned to CPU core k mod (cores).

Process start-up and dataset loading are not timed; the first epoch (graph
tracing) is timed separately from the rest.

    python benchmarks/strategy.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from mpath_tf.training.distributed import local_tf_configs

def child(args) -> None:
    """One training process; prints one JSON line with its epoch times."""
    strategy = None
    if args.role == "multiworker":
        from mpath_tf.training.distributed import make_strategy

        strategy = make_strategy("multiworker", 120)
    from mpath_tf import build_supernet, load_dataset
    from mpath_tf.training.distributed import train_distributed
    from mpath_tf.training.loop import train

    data = load_dataset(args.dataset, args.data_dir)
    stamps = [time.perf_counter()]

    def build():
        return build_supernet(data.input_shape, data.num_classes, args.depth, args.width, seed=0)

    if args.role == "fit":
        import keras

        class Stamp(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                stamps.append(time.perf_counter())

        val = train(build(), data, args.epochs, batch_size=args.batch_size, callbacks=[Stamp()])
    else:
        model, val = train_distributed(
            build, data, args.epochs, strategy, batch_size=args.batch_size,
            on_epoch=lambda epoch, _: stamps.append(time.perf_counter()))
        if args.weights:
            np.savez(args.weights, *model.get_weights())
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    print(json.dumps({"val": val, "epoch_s": times}), flush=True)


def run(args, role: str, workers: int = 1, weights: str | None = None) -> dict:
    """Start the processes of one way of training; return the chief's numbers."""
    cmd = [sys.executable, __file__, "--role", role, "--dataset", args.dataset,
           "--depth", str(args.depth), "--width", str(args.width), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size)]
    if weights:
        cmd += ["--weights", weights]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    configs = local_tf_configs(workers)
    cores = os.cpu_count() or 1
    procs = []
    for k in range(workers):
        if k and weights:  # only the chief saves
            cmd = cmd[:-2]
        if role == "multiworker":
            env = {**env, "TF_CONFIG": configs[k]}
            prefix = ["taskset", "-c", str(k % cores)]
        else:
            prefix = []
        procs.append(subprocess.Popen(prefix + cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True))
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{role}: a process failed:\n" + "\n".join(outputs))
    return json.loads(outputs[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--role", choices=["fit", "loop", "multiworker"], default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch (tracing) is timed apart")
    if args.role:
        return child(args)
    folder = tempfile.mkdtemp()
    single, multi = f"{folder}/loop.npz", f"{folder}/multiworker.npz"
    rows = [("fit (Keras, 1 process)", run(args, "fit")),
            ("loop (1 process)", run(args, "loop", weights=single)),
            (f"multiworker x{args.workers} (127.0.0.1)",
             run(args, "multiworker", args.workers, weights=multi))]
    base = sum(rows[0][1]["epoch_s"][1:]) / max(len(rows[0][1]["epoch_s"]) - 1, 1)
    print(f"\n{datetime.date.today()}  {args.dataset} mpath-{args.depth}-{args.width}, "
          f"{args.epochs} epochs, global batch {args.batch_size}, {os.cpu_count()} CPU cores")
    print("| training | first epoch (s) | later epochs (s/epoch) | x fit | val accuracy |")
    print("|---|---|---|---|---|")
    for name, row in rows:
        later = sum(row["epoch_s"][1:]) / max(len(row["epoch_s"]) - 1, 1)
        print(f"| {name} | {row['epoch_s'][0]:.2f} | {later:.2f} | {later / base:.2f} | "
              f"{row['val']:.4f} |")
    a, b = np.load(single), np.load(multi)
    print(f"\nlargest |weight difference| loop vs multiworker: "
          f"{max(float(np.abs(a[k] - b[k]).max()) for k in a.files):.3g}")


if __name__ == "__main__":
    main()
