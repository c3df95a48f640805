"""Time per training epoch: the mpath-4-500 supernet vs the equivalent MLP.

Both models see the same data, batch size and optimizer in the same process;
epochs alternate between the two (MLP, supernet, MLP, supernet, ...) so that
load from other processes on a shared machine hits both alike. The ratios of
the median and of the fastest epoch times are printed; the fastest epoch is
the least disturbed by other load. The ratio of process CPU time (summed over
threads) is printed as well: on a shared machine it moves less with other
tenants' load than wall time does. The target is <= 1.3.

Run from a clean checkout (after the README's install command):

    python benchmarks/supernet_overhead.py --data-dir ../shared/datasets

Without --data-dir (and without $MPATH_TF_DATA_DIR) it uses random inputs of
MNIST's shape, which cost the same per step.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MPATH_TF_DATA_DIR"))
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs per model")
    parser.add_argument("--examples", type=int, default=0,
                        help="use only this many training examples (0: all)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads")
    parser.add_argument("--jit", action="store_true", help="XLA-compile both train steps")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from mpath_tf import build_mlp, build_supernet, load_dataset
    from mpath_tf.training.loop import compile_model

    if args.data_dir:
        data = load_dataset("mnist", args.data_dir)
        x, y, source = data.x_train, data.y_train, "MNIST training split"
    else:
        rng = np.random.default_rng(0)
        x = rng.random((54000, 28, 28), dtype="float32")
        y = rng.integers(0, 10, 54000)
        source = "random inputs of MNIST shape"
    if args.examples:
        x, y = x[: args.examples], y[: args.examples]

    models = {
        "mlp": build_mlp(x.shape[1:], 10, args.depth, args.width, seed=0),
        "supernet": build_supernet(x.shape[1:], 10, args.depth, args.width, seed=0),
    }
    for model in models.values():
        compile_model(model, jit_compile=args.jit)
        model.fit(x[:1024], y[:1024], batch_size=args.batch_size, epochs=1, verbose=0)  # trace

    times = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for _ in range(args.epochs):
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    mlp, sup = statistics.median(times["mlp"]), statistics.median(times["supernet"])
    print(f"date: {datetime.date.today().isoformat()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, TF threads {args.threads}, "
          f"tensorflow {tf.__version__}, keras {keras.__version__}")
    print(f"data: {source}, {len(x)} examples, batch {args.batch_size}, "
          f"{args.epochs} timed epochs per model (alternating)")
    print(f"mlp-{args.depth}-{args.width}   epoch seconds: "
          + ", ".join(f"{t:.2f}" for t in times["mlp"]) + f"  (median {mlp:.2f})")
    print(f"mpath-{args.depth}-{args.width} epoch seconds: "
          + ", ".join(f"{t:.2f}" for t in times["supernet"]) + f"  (median {sup:.2f})")
    print(f"ratio supernet / mlp, median epoch time:  {sup / mlp:.3f}  (target <= 1.3)")
    print(f"ratio supernet / mlp, fastest epoch time: "
          f"{min(times['supernet']) / min(times['mlp']):.3f}  (target <= 1.3)")
    cpu_ratio = statistics.median(cpu["supernet"]) / statistics.median(cpu["mlp"])
    print(f"ratio supernet / mlp, median CPU time (all threads) per epoch: {cpu_ratio:.3f}")


if __name__ == "__main__":
    main()
