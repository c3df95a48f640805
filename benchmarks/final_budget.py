"""How long should the chosen model be fine-tuned? Short, long, or from scratch.

For each seed: one supernet and one dense reference trained with the
search's defaults (``SearchConfig().for_data``: 60 epochs on digits), then
for several path counts b, the validation / test accuracy of

- ``ft10``: the derived model fine-tuned for the samples' budget
  (``--finetune-epochs``, 10 on digits; the chosen model's budget before),
- ``ft60``: the derived model fine-tuned for the one-shot budget (``--epochs``,
  the dense reference's; the chosen model's budget now),
- ``scratch60``: a b-path network of the untrained supernet (its widths from
  the untrained membranes) trained from its initial weights for ``--epochs``.

Every fine-tuning keeps its best validation epoch, as the search does.

Run from a clean checkout (after the README's install command):

    python benchmarks/final_budget.py --data digits --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from mpath_tf.core.derivation import derive, to_dense  # noqa: E402
from mpath_tf.pipeline.config import SearchConfig  # noqa: E402
from mpath_tf.pipeline.steps import build_supernet_for, finetune, load_data  # noqa: E402
from mpath_tf.training.loop import accuracy, train  # noqa: E402


def scratch(initial, paths: int, data, config: SearchConfig) -> keras.Model:
    """A ``paths``-path network of the untrained supernet, trained for ``config.epochs``."""
    keras.utils.set_random_seed(config.seed * 100_003 + paths)
    model = derive(initial, paths)
    train(model, data, config.epochs, batch_size=config.batch_size,
          learning_rate=config.learning_rate)
    return model


def scores(model, data) -> str:
    return (f"{accuracy(model, data.x_val, data.y_val):.4f}/"
            f"{accuracy(model, data.x_test, data.y_test):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits",
                        help="a built-in dataset name, or a .csv/.npz file (label column 'label')")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--paths", default="1,2,8,16,64")
    args = parser.parse_args()
    source = ({"data": args.data, "label": "label"} if "." in args.data
              else {"dataset": args.data})
    print("validation/test accuracy")
    for seed in (int(s) for s in args.seeds.split(",")):
        config = SearchConfig(seed=seed, **source)
        data = load_data(config)
        config = config.for_data(len(data.x_train))
        start = time.perf_counter()
        supernet = build_supernet_for(config, data)
        initial = keras.models.clone_model(supernet)
        initial.set_weights(supernet.get_weights())
        train(supernet, data, config.epochs, batch_size=config.batch_size,
              learning_rate=config.learning_rate)
        dense = to_dense(build_supernet_for(config, data))
        train(dense, data, config.epochs, batch_size=config.batch_size,
              learning_rate=config.learning_rate)
        print(f"seed {seed}: supernet {scores(supernet, data)}, dense {scores(dense, data)} "
              f"({config.epochs} epochs, {time.perf_counter() - start:.0f} s)", flush=True)
        for b in (int(p) for p in args.paths.split(",")):
            if b > config.width:
                continue
            row = {
                f"ft{config.finetune_epochs}": finetune(supernet, b, data, config),
                f"ft{config.epochs}": finetune(supernet, b, data, config, epochs=config.epochs),
                f"scratch{config.epochs}": scratch(initial, b, data, config),
            }
            print(f"seed {seed} b={b}: "
                  + "  ".join(f"{name} {scores(m, data)}" for name, m in row.items()), flush=True)


if __name__ == "__main__":
    main()
