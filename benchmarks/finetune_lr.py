"""Fine-tuning learning rate for a derived model: which rate recovers most.

A derived model starts from the supernet's weights, which suggests a lower
rate than one-shot training's; but derivation replaces the supernet's soft
permeabilities by 0/1, so the derived model starts far below the supernet
and may need the full rate. This measures it: one supernet per data set
(the search's defaults: mpath-4-64, Adam 1e-3), then the derived models at
four path counts fine-tuned for ``--finetune-epochs`` at each rate, with
the validation accuracy before fine-tuning (derived), after the last epoch
and at the best epoch.

    python benchmarks/finetune_lr.py --data-dir ../shared/datasets

``--datasets`` takes digits, mnist, fashion_mnist and CSV files (label
column ``activity``, as written by ``benchmarks/user_data.py``). MNIST and
Fashion-MNIST use the first ``--max-train`` training examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time

RATES = (1e-3, 3e-4, 1e-4)


def main(argv=None) -> None:
    from mpath_tf import derive
    from mpath_tf.pipeline.config import SearchConfig
    from mpath_tf.pipeline.steps import build_supernet_for, finetune, load_data
    from mpath_tf.training.loop import accuracy, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist,fashion_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=60, help="one-shot epochs (digits, CSV)")
    parser.add_argument("--image-epochs", type=int, default=10, help="one-shot epochs (MNIST)")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--max-train", type=int, default=20000)
    args = parser.parse_args(argv)
    print(f"## fine-tuning learning rate ({datetime.date.today()}; mpath-4-64, fine-tuning "
          f"{args.finetune_epochs} epochs, seed 0)\n")
    print("| data | one-shot val | rate | " + " | ".join(
        f"b={b}: derived / last / best" for b in ("2", "W/4", "W/2", "W")) + " |")
    print("|" + "---|" * 7)
    for name in args.datasets.split(","):
        source = ({"data": name, "label": "activity"} if name.endswith(".csv")
                  else {"dataset": name, "data_dir": args.data_dir})
        images = name in ("mnist", "fashion_mnist")
        config = SearchConfig(**source, epochs=args.image_epochs if images else args.epochs,
                              finetune_epochs=args.finetune_epochs)
        data = load_data(config)
        if len(data.x_train) > args.max_train:
            data = dataclasses.replace(data, x_train=data.x_train[:args.max_train],
                                       y_train=data.y_train[:args.max_train])
        start = time.perf_counter()
        supernet = build_supernet_for(config, data)
        one_shot = train(supernet, data, config.epochs, batch_size=config.batch_size)
        counts = sorted({2, config.width // 4, config.width // 2, config.width})
        derived = {b: accuracy(derive(supernet, b), data.x_val, data.y_val) for b in counts}
        for rate in RATES:
            cells = []
            for b in counts:
                curve: list[float] = []
                finetune(supernet, b, data, dataclasses.replace(config, finetune_learning_rate=rate),
                         history=curve)
                cells.append(f"{derived[b]:.4f} / {curve[-1]:.4f} / {max(curve):.4f}")
            print(f"| {name.split('/')[-1]} | {one_shot:.4f} | {rate:g} | " + " | ".join(cells)
                  + " |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
