"""The method step by step with the Python API, on the bundled digits dataset.

Run from a checkout after installing (README):

    python examples/quickstart.py

It trains a small supernet, derives multipath networks at a few path counts,
fine-tunes them, prints parameters and validation accuracy, and exports the
smallest one that stays within one point of the best to int8 TFLite.
"""

import tempfile
from pathlib import Path

import mpath_tf
from converters import Int8, export_tflite, verify


def main() -> None:
    data = mpath_tf.load_dataset("digits")
    net = mpath_tf.build_supernet(data.input_shape, data.num_classes, depth=4, width=32, seed=0)
    val = mpath_tf.train(net, data, epochs=40, batch_size=32)
    print(f"one-shot {net.name}: val accuracy {val:.3f}")

    counts = mpath_tf.parameter_counts(net)
    results = {}
    for paths in (1, 2, 4, 8, 16):
        model = mpath_tf.derive(net, paths)
        val = mpath_tf.train(model, data, epochs=10, batch_size=32, keep_best=False)
        results[paths] = (model, val)
        print(f"{paths:3d} paths: {counts[paths]:6d} parameters "
              f"({100 * counts[paths] / counts[1]:5.1f}%), val accuracy {val:.3f}")

    best = max(val for _, val in results.values())
    paths = max(b for b, (_, val) in results.items() if val >= best - 0.01)
    model = results[paths][0]
    out = Path(tempfile.mkdtemp()) / f"mpath-{paths}-paths-int8.tflite"
    export_tflite(model, out, Int8(), representative_data=data.x_train)
    check = verify(out, model, data.x_test, Int8())
    print(f"exported {paths} paths to {out} ({out.stat().st_size} bytes); "
          f"matches Keras: {check.passed} (top-1 agreement {check.agreement:.3f})")


if __name__ == "__main__":
    main()
