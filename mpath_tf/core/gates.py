"""Supernets whose membranes decide: cost-regularized one-shot training.

The paper ranks membranes by permeability and cuts the least permeable; the
cost of the result is only known afterwards. Here each membrane k carries a
logit, is open with probability q_k = sigmoid(logit_k), and training
minimizes ``cross-entropy + lam * E[cost] / cost(MLP)`` with the expected
cost of ``mpath_tf.core.costs`` (parameters, or latency measured on a device), as
in FBNet / DARTS-CC and ``../shared/papers/002_0f618713dd3e460c.txt``.

- Training samples a binary-concrete (Gumbel-sigmoid) gate per membrane,
  ``z = sigmoid((logit + log u - log(1 - u)) / tau)``, with the temperature
  tau annealed towards 0 (``TemperatureSchedule``), so the network learns to
  work with hard gates; the connection permeabilities are Eq. 2 on z.
- Inference uses the hard gates ``logit > 0``: the validation accuracy of an
  epoch is the accuracy of the derived network, which is read off the gates
  (``derived_widths``); ``derive`` copies the blocks as for the paper's
  derivation, with the same promise (same function as the discretized supernet).

A ``Supernet`` (``mpath_tf.core.supernet``) trained this way has gates in
every stack, each with its own cost table; the cost term is the expected
cost of all stacks over their dense cost, so one ``lam`` chooses a path
count per stack. With a fixed ``lam`` it learns one architecture; with
``lam_max`` (a hypernetwork, Algorithm 1 of paper 002) it learns a map from
``lam`` to the membrane logits, each training step drawing lam ~ U[0,
lam_max], so after one run ``derive(model, lam=x)`` gives the architecture
for any trade-off. ``gate(supernet, ...)`` makes one from a supernet of any
shape, keeping its weights. This module holds the parts that do not depend
on the network: the gate samples, the cost tables of a stack, the
temperature schedule.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
from keras import ops

from mpath_tf.core.costs import CostTable
from mpath_tf.core.permeability import widths_from_cuts

# Adam moves a variable by about the learning rate per step, but a gate's logit
# must travel several units within a few hundred steps to close a membrane;
# the logits are stored divided by this factor (a 10x learning rate for them).
LOGIT_SCALE = 10.0


def check_lam(lam, name: str = "lam") -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)) or (
            not math.isfinite(lam) or lam < 0):
        raise ValueError(f"`{name}` is the weight of the cost term and must be a finite number "
                         f">= 0 (0: accuracy only). Received: {name}={lam!r}")
    return float(lam)


def check_lam_max(lam_max) -> float:
    """Lambda of a hypernetwork: a finite number > 0 (its training range is U[0, lam_max])."""
    lam_max = check_lam(lam_max, "lam_max")
    if lam_max == 0:
        raise ValueError("`lam_max` must be > 0 (the training range is U[0, lam_max]). "
                         "Received: lam_max=0.0")
    return lam_max


def sample_gates(logits, training: bool, temperature, seed_generator):
    """Membrane gates: binary-concrete samples at ``temperature`` in training,
    else the hard gates ``logits > 0``."""
    if not training:
        return ops.cast(logits > 0, "float32")
    u = keras.random.uniform(ops.shape(logits), 1e-6, 1 - 1e-6, seed=seed_generator)
    return ops.sigmoid((logits + ops.log(u) - ops.log(1 - u)) / temperature)


def warn_above(lam, lam_max: float) -> None:
    """Warn when a hypernetwork is asked for a ``lam`` above its training range."""
    if lam is not None and check_lam(lam) > lam_max:
        warnings.warn(
            f"lam={lam} is above Lambda={lam_max:g}, the top of the range the "
            "hypernetwork was trained on, so its architecture is extrapolated "
            "(a multipath layer always keeps every neuron as a path, so no layer "
            "is left without one); train with a larger lam_max to rely on it.",
            stacklevel=4)


def gate_widths(logits) -> list[int]:
    """Path widths of the layout whose cuts are the membranes with logit <= 0.

    Args:
        logits: The W - 1 membrane logits.

    Returns:
        Path widths in neuron order, summing to W.

    Example:
        >>> gate_widths([2.0, -1.0, 0.5, -3.0])
        [2, 2, 1]
    """
    logits = np.asarray(logits, dtype="float64")
    return widths_from_cuts(np.flatnonzero(logits <= 0), logits.shape[0] + 1)


def stack_parameter_costs(supernet) -> list[CostTable]:
    """Parameter ``CostTable`` of each stack of a built supernet: a path of
    width w costs ``taps * w^2 + w`` (weights and bias) in each membrane
    layer, taps = 1 for Dense and kh * kw for a convolution.

    Example:
        >>> from mpath_tf.core.supernet import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=3, width=4)
        >>> stack_parameter_costs(net)[0] == CostTable.params(width=4, depth=3)
        True
    """
    tables = []
    for names in supernet.stacks:
        layers = [supernet.get_layer(name) for name in names]
        block = tuple(float(sum(
            int(np.prod(layer.kernel.shape[:-2])) * w * w + (w if layer.bias is not None else 0)
            for layer in layers)) for w in range(1, layers[0].width + 1))
        tables.append(CostTable("params", layers[0].width, len(names) + 1, block).validate())
    return tables


class TemperatureSchedule(keras.callbacks.Callback):
    """Anneal the gate temperature geometrically from ``start`` to ``end``.

    Epoch e of E (0-based) uses ``start * (end / start) ** (e / (E - 1))``.

    Args:
        epochs: Training epochs E.
        start: First temperature (> 0).
        end: Last temperature (> 0).
    """

    def __init__(self, epochs: int, start: float = 1.0, end: float = 0.1):
        super().__init__()
        if not (start > 0 and end > 0):
            raise ValueError(f"Temperatures must be > 0. Received: start={start}, end={end}")
        self.epochs, self.start, self.end = int(epochs), float(start), float(end)

    def value(self, epoch: int) -> float:
        """The temperature of ``epoch``."""
        fraction = epoch / (self.epochs - 1) if self.epochs > 1 else 1.0
        return self.start * (self.end / self.start) ** min(1.0, fraction)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.temperature.assign(self.value(epoch))
