"""Cost-regularized searches: a fixed lam, or a lam-hypernetwork (paper 002).

Three ways to get a network for an accuracy/cost balance, behind one API:

- ``rank``: the paper's one-shot training, then the ``b - 1`` least
  permeable membranes cut (``mpath_tf.derive(supernet, paths=b)``);
- ``lambda``: ``train_fixed_lambda`` trains a supernet with gates in every
  stack (``gate(supernet, lam=...)``; the built-in MLP from scratch, or a
  supernet of any shape: a CNN, a ResNet, a user's model) with
  ``cross-entropy + lam * E[cost] / cost(dense)``; its gates are the
  architecture (``derive(model)``);
- ``hypernet``: ``train_hypernet`` takes a trained supernet (Algorithm 1,
  line 1), warms its hypernetwork copy (``gate(supernet, lam_max=...)``) up
  until its lam = 0 network is better than chance (lines 3-7), then trains
  with lam ~ U[0, Lambda] per step (lines 8-12); ``derive(model, lam=x)``
  gives any trade-off afterwards.

Lambda (``lam_max``) defaults to Theorem 1's bound,
``(H(y) - sup_gamma L_valid(gamma)) / T(1)``: H(y) is the loss of the best
constant prediction (the label entropy), the sup is taken over the derived
networks of the trained supernet, and T(1) = 1 because costs are relative to
the MLP's. ``lambda_curve`` gives accuracy against lam, and
``estimate_lambda`` the largest lam whose network is still above chance (the
paper's experiment). A multipath layer keeps every neuron, so no network in
this space is "broken": above some lam every membrane is cut and the network
stops changing.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
import tensorflow as tf

from mpath_tf.core.costs import CostTable
from mpath_tf.data import Dataset
from mpath_tf.core.gates import TemperatureSchedule, check_lam
from mpath_tf.core.models import adapt_normalization
from mpath_tf.core.supernet import Supernet, build_supernet, gate
from mpath_tf.core.permeability import discrete_permeability
from mpath_tf.training.loop import top1, train

__all__ = ["train_fixed_lambda", "train_hypernet", "theorem_lambda", "lambda_curve",
           "estimate_lambda", "lam_for_budget", "label_entropy", "warmup"]


def _seed(seed):
    if seed is not None:
        keras.utils.set_random_seed(int(seed))


def train_fixed_lambda(data: Dataset, lam: float, depth: int = 4, width: int = 64,
                       cost: CostTable | list[CostTable] | None = None, epochs: int = 10,
                       batch_size: int = 32, learning_rate: float = 1e-3, seed: int | None = 0,
                       temperature: tuple[float, float] = (1.0, 0.1), checkpoint_dir=None,
                       callbacks: list | None = None,
                       supernet: Supernet | None = None) -> Supernet:
    """One-shot training with a fixed cost weight; the gates are the architecture.

    The last epoch is kept (the temperature is lowest there); the best
    validation epoch would favour the early, nearly dense networks.

    Args:
        data: The dataset.
        lam: Weight of the relative cost (>= 0).
        depth: Hidden layers (of the built-in MLP).
        width: Neurons per hidden layer W (of the built-in MLP).
        cost: ``CostTable`` for this network (default: parameters), or a
            list with one per stack.
        epochs: Training epochs.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        seed: Seeds the weights and the gate noise.
        temperature: Gate temperature at the first and the last epoch.
        checkpoint_dir: Per-epoch checkpoints (a killed training resumes).
        callbacks: More Keras callbacks.
        supernet: A built supernet of any shape (``to_supernet`` of a CNN or
            your own model) to train instead of the MLP: its weights are the
            start, its stacks get the gates (``gate``).

    Returns:
        The trained ``Supernet`` with ``lam``; ``derive(model)`` builds its network.

    Raises:
        ValueError: If ``lam`` is negative or not finite.
        ConfigError: If ``cost`` is for another network.

    Example:
        >>> from mpath_tf import load_dataset, derive
        >>> net = train_fixed_lambda(load_dataset("digits"), lam=0.5, depth=2, width=8, epochs=1)
        >>> derive(net).count_params() <= derive(net, paths=1).count_params()
        True
    """
    lam = check_lam(lam)
    _seed(seed)
    if supernet is None:
        supernet = build_supernet(data.input_shape, data.num_classes, depth, width,
                                  normalize=data.normalize)
        adapt_normalization(supernet, data.x_train)
    model = gate(supernet, lam=lam, costs=_per_stack(cost), seed=seed)
    train(model, data, epochs, batch_size=batch_size, learning_rate=learning_rate,
          keep_best=False, checkpoint_dir=checkpoint_dir,
          callbacks=[TemperatureSchedule(epochs, *temperature), *(callbacks or [])])
    return model


def _per_stack(cost) -> list[CostTable] | None:
    """``cost`` as one table per stack (a single table is the MLP's one stack)."""
    return [cost] if isinstance(cost, CostTable) else cost


def _loss(model, x, y, permeability=None, batch_size: int = 1024) -> tuple[float, float]:
    """(cross-entropy, accuracy) of ``model`` on (x, y)."""
    probs = np.concatenate([
        ops.convert_to_numpy(model(x[lo:lo + batch_size], permeability=permeability))
        for lo in range(0, len(x), batch_size)])
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1)).mean())
    return loss, top1(probs, y)


def label_entropy(y: np.ndarray, num_classes: int) -> float:
    """Cross-entropy of the best constant prediction (the label frequencies), in nats.

    Example:
        >>> round(label_entropy(np.array([0, 1, 0, 1]), 2), 4)
        0.6931
    """
    p = np.bincount(y, minlength=num_classes) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def theorem_lambda(supernet: Supernet, data: Dataset, samples: int = 5) -> float:
    """Lambda of Theorem 1 (paper 002), with costs relative to the MLP's.

    ``(H(y) - max_b L_val(derive(supernet, b))) / 1``, the max over
    ``samples`` evenly spaced path counts in [1, W] (the sup over every
    network is out of reach; the one with every membrane cut is among them),
    each stack of a supernet of several split into min(b, W_s) paths.

    Args:
        supernet: A trained supernet.
        data: Its dataset (validation split).
        samples: Path counts evaluated.

    Returns:
        Lambda (> 0).

    Raises:
        ValueError: If no derived network beats the constant prediction, so
            the bound is not positive: train the supernet longer.
    """
    entropy = label_entropy(data.y_train, data.num_classes)
    counts = sorted({int(b) for b in np.linspace(1, max(supernet.widths), samples).round()})
    layouts = [Supernet.derived_layout(supernet, tuple(min(b, w) for w in supernet.widths))
               for b in counts]
    worst = max(_loss(supernet, data.x_val, data.y_val,
                      [discrete_permeability(widths) for widths in layout])[0]
                for layout in layouts)
    bound = entropy - worst
    if not bound > 0:
        raise ValueError(
            f"Theorem 1's Lambda is not positive: a derived network's validation loss ({worst:.4f}) "
            f"is above the constant prediction's ({entropy:.4f}). Train the supernet longer, "
            "or pass lam_max yourself.")
    return bound


def train_hypernet(supernet: Supernet, data: Dataset, lam_max: float | None = None,
                   cost: CostTable | list[CostTable] | None = None, epochs: int = 10,
                   batch_size: int = 32, learning_rate: float = 1e-3, seed: int | None = 0,
                   temperature: tuple[float, float] = (1.0, 0.1), warmup_steps: int = 500,
                   checkpoint_dir=None, callbacks: list | None = None,
                   log=None) -> Supernet:
    """Algorithm 1 of paper 002: a hypernetwork from lam to membrane logits.

    The supernet's weights are copied (line 1). Warm-up (lines 3-7): while
    the lam = 0 network's validation accuracy is at chance, the
    hypernetwork's logits are pulled towards its bias, an all-open network
    (at most ``warmup_steps`` steps). Training (lines 8-12): each step draws
    lam ~ U[0, lam_max] and minimizes ``cross-entropy + lam * E[cost] / cost(MLP)``;
    the network's weights are trained with the hypernetwork so that they fit
    the hard-gated networks (the one-shot weights were trained with soft
    permeabilities).

    Args:
        supernet: A trained ``Supernet`` of any shape (``mpath-tf search``'s
            one-shot model): its copy gets one set of gates per stack.
        data: Its dataset.
        lam_max: Lambda; default ``theorem_lambda(supernet, data)``.
        cost: ``CostTable`` for this network (default: parameters), or a
            list with one per stack.
        epochs: Training epochs after the warm-up.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        seed: Seeds the hypernetwork and the lam and gate noise.
        temperature: Gate temperature at the first and the last epoch.
        warmup_steps: Most warm-up steps.
        checkpoint_dir: Per-epoch checkpoints (a killed training resumes).
        callbacks: More Keras callbacks.
        log: Called with progress lines.

    Returns:
        The trained ``Supernet`` with ``lam_max``; ``derive(model, lam=x)``
        builds a network.

    Raises:
        ValueError: If ``lam_max`` is not a finite number > 0, or Theorem 1's bound is not positive.
    """
    log = log or (lambda _: None)
    if lam_max is None:
        lam_max = theorem_lambda(supernet, data)
        log(f"Lambda (Theorem 1): {lam_max:.4f}")
    _seed(seed)
    model = gate(supernet, lam_max=lam_max, costs=_per_stack(cost), seed=seed)  # line 1
    model.warmup_steps = warmup(model, data, warmup_steps)
    log(f"warm-up: {model.warmup_steps} steps")
    train(model, data, epochs, batch_size=batch_size, learning_rate=learning_rate,
          keep_best=False, checkpoint_dir=checkpoint_dir,
          callbacks=[TemperatureSchedule(epochs, *temperature), *(callbacks or [])])
    return model


def warmup(model: Supernet, data: Dataset, max_steps: int = 500, check_every: int = 25,
           seed: int = 0) -> int:
    """Lines 3-7 of Algorithm 1: fit the logits to the bias until lam = 0 works.

    Returns:
        Steps taken (0 when the lam = 0 network is already above chance).
    """
    chance = 1.0 / data.num_classes
    x, y = data.x_val[:1000], data.y_val[:1000]
    optimizer = keras.optimizers.Adam(0.05)
    rng = np.random.default_rng(seed)
    steps = 0
    at_chance = chance + 3 * math.sqrt(chance * (1 - chance) / len(x))
    while steps < max_steps and _loss(model, x, y)[1] <= at_chance:
        # the logits are LOGIT_SCALE * (bias - drop); pulled towards the bias
        for _ in range(check_every):
            lams = rng.uniform(0, model.lam_max, 8).astype("float32")
            with tf.GradientTape() as tape:
                loss = tf.add_n([tf.reduce_mean((logits - model.initial_logit) ** 2)
                                 for lam in lams for logits in model.membrane_logits(lam)])
            variables = model.hyper_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        steps += check_every
    return steps


def lambda_curve(model: Supernet, data: Dataset, lams) -> list[dict]:
    """Validation accuracy, layout and cost of the hard-gated network at each lam.

    Args:
        model: A trained hypernetwork ``Supernet`` (``train_hypernet``).
        data: Its dataset.
        lams: The lam values.

    Returns:
        One dict per lam: ``lam``, ``paths`` (over all stacks),
        ``path_counts`` (per stack), ``parameters``, ``relative_cost`` (of the
        layout, 1 = the dense network), ``val_loss``, ``val_accuracy``,
        ``val_examples``.
    """
    rows = []
    for lam in lams:
        layout = model.derived_layout(lam=float(lam))
        loss, acc = _loss(model, data.x_val, data.y_val, model.layout_permeability(layout))
        rows.append({"lam": float(lam), "paths": sum(len(widths) for widths in layout),
                     "path_counts": [len(widths) for widths in layout],
                     "parameters": model.layout_parameters(layout),
                     "relative_cost": model.layout_cost(layout),
                     "val_loss": loss, "val_accuracy": acc, "val_examples": len(data.y_val)})
    return rows


def estimate_lambda(curve: list[dict], num_classes: int) -> float | None:
    """The largest lam of ``curve`` whose network is still above chance.

    Above chance means more than three standard errors above 1 / classes on
    the row's ``val_examples`` examples.

    Returns:
        That lam, or None when no lam of the curve is above chance.

    Example:
        >>> estimate_lambda([{"lam": 0.0, "val_accuracy": 0.9, "val_examples": 500},
        ...                  {"lam": 1.0, "val_accuracy": 0.1, "val_examples": 500}], 10)
        0.0
    """
    chance = 1.0 / num_classes
    above = [r["lam"] for r in curve if r["val_accuracy"] > chance + 3 * math.sqrt(
        chance * (1 - chance) / r["val_examples"])]
    return max(above) if above else None


def lam_for_budget(model: Supernet, max_parameters: float | None = None,
                   max_relative_cost: float | None = None, steps: int = 30) -> float | None:
    """The smallest lam whose network meets the budget (bisection; costs fall with lam).

    Args:
        model: A trained hypernetwork ``Supernet`` (``train_hypernet``).
        max_parameters: Most parameters of the derived network.
        max_relative_cost: Most cost of the layout relative to the dense network's.
        steps: Bisection steps.

    Returns:
        The lam, or None when even ``lam_max`` does not meet the budget.
    """
    def meets(lam: float) -> bool:
        layout = model.derived_layout(lam=lam)
        ok = True
        if max_parameters is not None:
            ok &= model.layout_parameters(layout) <= max_parameters
        if max_relative_cost is not None:
            ok &= model.layout_cost(layout) <= max_relative_cost
        return ok

    if meets(0.0):
        return 0.0
    if not meets(model.lam_max):
        return None
    lo, hi = 0.0, model.lam_max
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if meets(mid) else (mid, hi)
    return hi
