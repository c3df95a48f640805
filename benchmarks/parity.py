"""Parity of every export mode with Keras on MNIST (converters.parity).

Trains an mpath-4-200 supernet on MNIST (one-shot), derives and fine-tunes a
few path counts, exports each in float32, float16, dynamic and int8 with the
per_path and conv lowerings, and prints the parity numbers on the 10,000 test
images beside the bounds of ``converters.parity``. int8 is exported twice,
with the default activation-range equalization (``converters.equalize``) and
without it, so the two are compared on the same models.

Run from a clean checkout (after the README's install command):

    python benchmarks/parity.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--paths", default="2,8,32,200")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from converters import QUANTIZATIONS, Int8, export_tflite, get_quantization, verify
    from mpath_tf import build_supernet, derive, load_dataset
    from mpath_tf.training.loop import train
    from mpath_tf.errors import ConfigError

    data = load_dataset(args.dataset, args.data_dir)
    net = build_supernet(data.input_shape, data.num_classes, 4, args.width, seed=args.seed)
    train(net, data, epochs=args.epochs, batch_size=128)
    print(f"\n{datetime.date.today()}  {args.dataset} mpath-4-{args.width}, one-shot "
          f"{args.epochs} epochs, fine-tune {args.finetune_epochs}, seed {args.seed}; "
          f"{len(data.x_test)} test images")
    print("| b | mode | lowering | max abs diff | p99 abs diff | p99 output steps | mean output "
          "steps | top-1 agreement | Keras acc | LiteRT acc | passed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    folder = Path(tempfile.mkdtemp())
    for b in (int(p) for p in args.paths.split(",")):
        model = derive(net, b)
        train(model, data, epochs=args.finetune_epochs, batch_size=128, keep_best=False)
        # int8 twice: with the default range equalization and without it.
        schemes = [get_quantization(mode) for mode in QUANTIZATIONS] + [Int8(equalize=0.0)]
        for scheme in schemes:
            plain = scheme == Int8(equalize=0.0)
            mode = scheme.name + (" (no equalization)" if plain else "")
            for lowering in ("per_path", "conv"):
                name = f"b{b}_{scheme.name}{'_plain' if plain else ''}_{lowering}.tflite"
                try:
                    path = export_tflite(model, folder / name, scheme, data.x_train, lowering)
                except ConfigError as err:  # int16x8 per path: a path that never activates
                    print(f"| {b} | {mode} | {lowering} | refused: {err} |", flush=True)
                    continue
                c = verify(path, model, data.x_test, scheme, data.y_test)
                steps = f"{c.p99_abs_diff / c.output_step:.2f}" if c.output_step else "-"
                mean = f"{c.mean_abs_diff / c.output_step:.3f}" if c.output_step else "-"
                print(f"| {b} | {mode} | {lowering} | {c.max_abs_diff:.2e} | {c.p99_abs_diff:.2e} | "
                      f"{steps} | {mean} | {c.agreement:.4f} | {c.keras_accuracy:.4f} | "
                      f"{c.tflite_accuracy:.4f} | {'yes' if c.passed else 'NO: ' + '; '.join(c.failures)} |",
                      flush=True)


if __name__ == "__main__":
    main()
