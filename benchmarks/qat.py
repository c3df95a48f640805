"""int8 accuracy with and without quantization-aware training (QAT).

For each dataset: one-shot train mpath-4-W, derive b paths, fine-tune, then
export int8 twice from the same Keras model: post-training quantization
(PTQ, 200 calibration examples) and QAT (tfmot through tf_keras, --qat-epochs
epochs at learning rate 1e-4). Prints the test accuracy of the Keras model,
the PTQ file and the QAT file (each run in LiteRT), side by side.

Run from a clean checkout (after `pip install -e '.[qat]'`):

    python benchmarks/qat.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MPATH_TF_DATA_DIR"))
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="one-shot epochs")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from converters import Int8, export_tflite, run_tflite
    from converters.qat import export_qat_int8
    from mpath_tf import build_supernet, derive, load_dataset
    from mpath_tf.training.loop import train

    folder = Path(tempfile.mkdtemp())
    print(f"{datetime.date.today()}  mpath-4-{args.width}, {args.paths} paths, one-shot "
          f"{args.epochs} epochs, fine-tune {args.finetune_epochs}, QAT {args.qat_epochs}, seed {args.seed}")
    print("| dataset | Keras float32 | int8 PTQ | int8 QAT | PTQ drop (points) | QAT drop (points) |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        data = load_dataset(name, args.data_dir)
        net = build_supernet(data.input_shape, data.num_classes, 4, args.width, seed=args.seed)
        train(net, data, epochs=args.epochs, batch_size=128)
        model = derive(net, args.paths)
        train(model, data, epochs=args.finetune_epochs, batch_size=128)

        def acc(probabilities):
            return float(np.mean(probabilities.argmax(-1) == data.y_test))

        keras_acc = acc(model.predict(data.x_test, batch_size=1024, verbose=0))
        ptq = export_tflite(model, folder / f"{name}_ptq.tflite", Int8(seed=args.seed), data.x_train)
        qat = export_qat_int8(model, folder / f"{name}_qat.tflite", data.x_train, data.y_train,
                              args.qat_epochs, seed=args.seed)
        ptq_acc, qat_acc = acc(run_tflite(ptq, data.x_test)), acc(run_tflite(qat, data.x_test))
        print(f"| {name} | {keras_acc:.4f} | {ptq_acc:.4f} | {qat_acc:.4f} | "
              f"{100 * (keras_acc - ptq_acc):+.2f} | {100 * (keras_acc - qat_acc):+.2f} |", flush=True)


if __name__ == "__main__":
    main()
