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

``GatedSupernet`` learns one architecture for one ``lam``.
``HyperSupernet`` learns a map from ``lam`` to the membrane logits (Algorithm 1
of paper 002): each training step draws lam ~ U[0, lam_max], so after one run
``derive(model, lam=x)`` gives the architecture for any trade-off.

Both are the built-in MLP. ``GatedStacks`` and ``HyperStacks`` do the same
for a ``Supernet`` of any shape (``to_supernet`` of a CNN, a ResNet, a
user's model): each stack has its own gates and its own cost table, and the
cost term is the expected cost of all stacks over their dense cost, so one
``lam`` chooses a path count per stack. ``gate(supernet, ...)`` makes one
from a supernet, keeping its weights.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
from keras import ops

from mpath_tf.core.costs import CostTable, expected_cost
from mpath_tf.core.models import MLPSupernet
from mpath_tf.core.permeability import discrete_permeability, widths_from_cuts
from mpath_tf.core.supernet import Supernet
from mpath_tf.errors import ConfigError

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


def _cost_table(cost, width: int, depth: int) -> CostTable:
    if cost is None:
        return CostTable.params(width, depth)
    table = cost if isinstance(cost, CostTable) else CostTable.from_dict(cost)
    table.check(width, depth)
    return table


def sample_gates(logits, training: bool, temperature, seed_generator):
    """Membrane gates: binary-concrete samples at ``temperature`` in training,
    else the hard gates ``logits > 0``."""
    if not training:
        return ops.cast(logits > 0, "float32")
    u = keras.random.uniform(ops.shape(logits), 1e-6, 1 - 1e-6, seed=seed_generator)
    return ops.sigmoid((logits + ops.log(u) - ops.log(1 - u)) / temperature)


def _warn_above(lam, lam_max: float) -> None:
    """Warn when a hypernetwork is asked for a ``lam`` above its training range."""
    if lam is not None and check_lam(lam) > lam_max:
        warnings.warn(
            f"lam={lam} is above Lambda={lam_max:g}, the top of the range the "
            "hypernetwork was trained on, so its architecture is extrapolated "
            "(a multipath layer always keeps every neuron as a path, so no layer "
            "is left without one); train with a larger lam_max to rely on it.",
            stacklevel=3)


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


@keras.saving.register_keras_serializable(package="mpath_tf")
class GatedSupernet(MLPSupernet):
    """Supernet trained with a cost term at a fixed ``lam``; membranes are gates.

    ``omega`` holds the membrane logits. The temperature is a non-trainable
    variable that ``TemperatureSchedule`` lowers during training.

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer W (>= 2).
        activation: Activation of the hidden layers.
        lam: Weight of the normalized cost (>= 0; 0: accuracy only).
        cost: A ``CostTable`` (or its ``to_dict``) for this network; default
            parameters.
        initial_logit: Membrane logits start at U(-1, 1) plus this (1: every
            membranes open, so training starts near the MLP and cuts).
        seed: Seed of the gate noise.
        **kwargs: Base ``keras.Model`` arguments such as ``name``.

    Raises:
        ValueError: If ``lam`` is negative or not finite, or an argument is out of range.
        ConfigError: If the cost table is for another network.

    Example:
        >>> net = GatedSupernet((4,), 2, depth=3, width=6, lam=0.5)
        >>> net.build((None, 4))
        >>> sum(net.derived_widths())
        6
    """

    def __init__(self, input_shape, num_classes, depth, width, activation="relu", lam=0.0,
                 cost=None, initial_logit: float = 1.0, seed: int | None = None, **kwargs):
        kwargs.setdefault("name", f"gated-mpath-{int(depth)}-{int(width)}")
        super().__init__(input_shape, num_classes, depth, width, activation, **kwargs)
        self.lam = check_lam(lam)
        self.cost = _cost_table(cost, self.width, self.depth)
        self.initial_logit = float(initial_logit)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._block = np.asarray(self.cost.block, "float32") / np.float32(self.cost.dense)

    def build(self, input_shape):
        super().build(input_shape)
        self.omega.assign((self.omega + self.initial_logit) / LOGIT_SCALE)
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer=keras.initializers.Constant(1.0),
            trainable=False)

    def membrane_logits(self, lam=None):
        """The W - 1 membrane logits (``lam`` is for ``HyperSupernet``)."""
        return self.omega * LOGIT_SCALE

    def relative_cost(self, lam=None):
        """Expected cost of the layout over the MLP's (1: every membrane open)."""
        return expected_cost(ops.sigmoid(self.membrane_logits(lam)), self._block)

    def _gates(self, logits, training):
        return sample_gates(logits, training, self.temperature, self.seed_generator)

    def _training_lam(self):
        return self.lam

    def call(self, inputs, permeability=None, training=False):
        """Forward pass with sampled gates (training) or hard gates (inference);
        ``permeability`` overrides both, as for ``Supernet``."""
        if permeability is None:
            lam = self._training_lam() if training else None
            logits = self.membrane_logits(lam)
            permeability = self._range_min(self._gates(logits, training))
            if training:
                self.add_loss(lam * self.relative_cost(lam))
        return super().call(inputs, permeability)

    def derived_widths(self, paths: int | None = None, lam: float | None = None) -> list[int]:
        """Path widths of the derived network: read off the gates, or ranked for ``paths``."""
        if paths is not None:
            return super().derived_widths(paths)
        return gate_widths(ops.convert_to_numpy(self.membrane_logits(lam)))

    def derived_layout(self, paths: int | None = None, lam: float | None = None) -> list[list[int]]:
        """``[derived_widths(paths, lam)]``: the layout of the one stack (as ``GatedStacks``)."""
        return [self.derived_widths(paths, lam)]

    def layout_parameters(self, layout) -> int:
        """Parameters of the network derived with ``layout`` (one stack's widths)."""
        from mpath_tf.core.derivation import count_parameters

        return count_parameters(int(np.prod(self.example_shape)), self.num_classes, self.depth,
                                list(layout[0]))

    def layout_cost(self, layout) -> float:
        """Cost of ``layout`` relative to the MLP's (``cost``; 1 = every membrane open)."""
        return self.cost.cost(layout[0]) / self.cost.dense

    def layout_permeability(self, layout):
        """The {0, 1} permeability that ``call`` takes for ``layout``."""
        return discrete_permeability(layout[0])

    def get_config(self):
        return {**super().get_config(), "lam": self.lam, "cost": self.cost.to_dict(),
                "initial_logit": self.initial_logit, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mpath_tf")
class HyperSupernet(GatedSupernet):
    """Supernet whose membrane logits are a function of ``lam`` (paper 002, Algorithm 1).

    The hypernetwork maps lam to ``logit_k = s * (omega_k - v_k * lam / lam_max)``
    with ``v_k = |slope_k| >= 0`` (s = ``LOGIT_SCALE``). A hard gate only
    depends on the sign of its logit, so membrane k is cut exactly when
    ``lam > lam_max * omega_k / v_k``: one threshold per membrane, which is
    every nested family of layouts. Nested is the property wanted: a larger
    ``lam`` never opens a membrane, so the cost never grows with ``lam``
    (a larger hypernetwork, tried first, learned the same thresholds more slowly).

    Args:
        input_shape, num_classes, depth, width, activation, cost, initial_logit, seed:
            As ``GatedSupernet``.
        lam_max: Lambda, the top of the training range U[0, lam_max] (> 0).
        **kwargs: Base ``keras.Model`` arguments.

    Raises:
        ValueError: If ``lam_max`` is not a finite number > 0.

    Example:
        >>> net = HyperSupernet((4,), 2, depth=3, width=6, lam_max=1.0)
        >>> net.build((None, 4))
        >>> len(net.derived_widths(lam=0.0)) <= len(net.derived_widths(lam=1.0))
        True
    """

    def __init__(self, input_shape, num_classes, depth, width, activation="relu",
                 lam_max: float = 1.0, cost=None, initial_logit: float = 1.0,
                 seed: int | None = None, **kwargs):
        kwargs.setdefault("name", f"hyper-mpath-{int(depth)}-{int(width)}")
        kwargs.pop("lam", None)
        super().__init__(input_shape, num_classes, depth, width, activation, 0.0, cost,
                         initial_logit, seed, **kwargs)
        self.lam_max = check_lam_max(lam_max)

    def build(self, input_shape):
        super().build(input_shape)
        # Stored divided by LOGIT_SCALE, as omega (see LOGIT_SCALE). Nearly 0:
        # hardly any dependence on lam before training, but not exactly 0,
        # where |slope| has no gradient.
        self.slope = self.add_weight(name="slope", shape=(self.width - 1,),
                                     initializer=keras.initializers.Constant(1e-3))

    @property
    def hyper_variables(self) -> list:
        """The hypernetwork's variables: ``omega`` (the logits at lam = 0) and ``slope``."""
        return [self.omega, self.slope]

    def membrane_logits(self, lam=None):
        """The W - 1 membrane logits at ``lam`` (default 0); non-increasing in ``lam``."""
        lam = 0.0 if lam is None else lam
        x = ops.convert_to_tensor(lam, "float32") / self.lam_max
        return (self.omega - ops.abs(self.slope) * x) * LOGIT_SCALE

    def thresholds(self) -> np.ndarray:
        """The lam above which each membrane is cut (inf: never; 0: always)."""
        omega = ops.convert_to_numpy(self.omega).astype("float64")
        slope = np.abs(ops.convert_to_numpy(self.slope)).astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):  # slope 0: inf, never cut
            return np.where(omega <= 0, 0.0, self.lam_max * omega / slope)

    def membrane_permeability(self):
        """Open probabilities sigmoid(logits) at lam = 0 (the ranking for ``paths``)."""
        return ops.sigmoid(self.membrane_logits(0.0))

    def _training_lam(self):
        return keras.random.uniform((), 0.0, self.lam_max, seed=self.seed_generator)

    def call(self, inputs, permeability=None, training=False, lam=None):
        """As ``GatedSupernet``; at inference the gates are those of ``lam`` (default 0)."""
        if permeability is None and not training:
            permeability = self._range_min(self._gates(self.membrane_logits(lam), False))
        return super().call(inputs, permeability, training=training)

    def derived_widths(self, paths: int | None = None, lam: float | None = None) -> list[int]:
        """Widths at ``lam`` (read off the gates), or ranked at lam = 0 for ``paths``.

        Warns when ``lam`` is above ``lam_max``: the hypernetwork never saw it.
        """
        _warn_above(lam, self.lam_max)
        return super().derived_widths(paths, lam)

    def get_config(self):
        config = super().get_config()
        config.pop("lam")
        return {**config, "lam_max": self.lam_max}


def stack_parameter_costs(supernet: Supernet) -> list[CostTable]:
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


@keras.saving.register_keras_serializable(package="mpath_tf")
class GatedStacks(Supernet):
    """A ``Supernet`` of any shape trained with a cost term at a fixed ``lam``:
    each stack's membranes are gates (as ``GatedSupernet``'s), with its own
    cost table.

    Training minimizes ``cross-entropy + lam * sum_s E[cost_s] / sum_s
    dense_s``; inference, ``derive(model)`` and ``derived_layout()`` use the
    hard gates, so one ``lam`` chooses a path count for every stack. Make one
    with ``gate``.

    Args:
        chain, stacks, trunk, shared_paths: As ``Supernet``.
        lam: Weight of the relative cost (>= 0).
        costs: One ``CostTable`` (or its ``to_dict``) per stack; default:
            parameters (``stack_parameter_costs``).
        initial_logit: Membrane logits start at U(-1, 1) plus this.
        seed: Seed of the gate noise.
        **kwargs: Base ``keras.Model`` arguments such as ``name``.

    Raises:
        ValueError: If ``lam`` is negative or not finite.
        ConfigError: At build, if ``costs`` does not have one table per stack
            of that stack's width and depth.

    Example:
        >>> from mpath_tf.core.models import build_cnn
        >>> from mpath_tf.core.supernet import to_supernet
        >>> net = gate(to_supernet(build_cnn((8, 8, 1), 3, depth=3, width=4)), lam=0.5)
        >>> [sum(widths) for widths in net.derived_layout()]
        [4]
    """

    def __init__(self, chain, stacks, trunk=None, shared_paths: bool = False, lam=0.0,
                 costs=None, initial_logit: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(chain, stacks, trunk, shared_paths, **kwargs)
        self.lam = check_lam(lam)
        self.costs = None if costs is None else [
            c if isinstance(c, CostTable) else CostTable.from_dict(c) for c in costs]
        self.initial_logit = float(initial_logit)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        super().build(input_shape)
        self.parameter_costs = stack_parameter_costs(self)
        if self.costs is None:
            self.costs = self.parameter_costs
        if len(self.costs) != len(self.stacks):
            raise ConfigError(f"{self.name} has {len(self.stacks)} stacks but {len(self.costs)} "
                              "cost tables; pass one per stack (widths "
                              f"{self.widths}).")
        for table, names in zip(self.costs, self.stacks):
            if (table.width, table.depth) != (self.get_layer(names[0]).width, len(names) + 1):
                raise ConfigError(
                    f"The cost table of stack {names[0]}.. is for width {table.width} and "
                    f"depth {table.depth}, not {self.get_layer(names[0]).width} and "
                    f"{len(names) + 1}; make the tables for this network.")
        self._blocks = [np.asarray(t.block, "float32") for t in self.costs]
        self._dense = np.float32(sum(t.dense for t in self.costs))
        for omega in self.omegas:
            omega.assign((omega + self.initial_logit) / LOGIT_SCALE)
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer=keras.initializers.Constant(1.0),
            trainable=False)

    def membrane_logits(self, lam=None) -> list:
        """Each stack's W_s - 1 membrane logits (``lam`` is for ``HyperStacks``)."""
        return [omega * LOGIT_SCALE for omega in self.omegas]

    def membrane_permeability(self, stack: int = 0):
        """Open probabilities sigmoid(logits) of a stack (at lam = 0): the
        ranking when a layout is derived by path count."""
        return ops.sigmoid(self.membrane_logits(None)[stack])

    def relative_cost(self, lam=None):
        """Expected cost of all stacks over their dense cost (1: every membrane open)."""
        total = sum(expected_cost(ops.sigmoid(logits), block)
                    for logits, block in zip(self.membrane_logits(lam), self._blocks))
        return total / self._dense

    def _training_lam(self):
        return self.lam

    def call(self, inputs, permeability=None, training=False, lam=None):
        """Forward pass with sampled gates (training) or hard gates (inference;
        for ``HyperStacks`` those of ``lam``, default 0); ``permeability`` (a
        list, one matrix per stack) overrides both."""
        if permeability is None:
            lam = self._training_lam() if training else lam
            permeability = [
                self._range_mins[s](sample_gates(logits, training, self.temperature,
                                                 self.seed_generator))
                for s, logits in enumerate(self.membrane_logits(lam))]
            if training:
                self.add_loss(lam * self.relative_cost(lam))
        return super().call(inputs, permeability, training=training)

    def derived_layout(self, paths=None, lam: float | None = None) -> list[list[int]]:
        """Path widths of every stack: read off the gates, or ranked for ``paths``
        (as ``Supernet.derived_layout``)."""
        if paths is not None:
            return super().derived_layout(paths)
        return [gate_widths(ops.convert_to_numpy(logits))
                for logits in self.membrane_logits(lam)]

    def derived_widths(self, paths: int | None = None, lam: float | None = None) -> list[int]:
        """The first stack's path widths (``derived_layout``)."""
        return self.derived_layout(paths, lam)[0]

    def layout_parameters(self, layout) -> int:
        """Parameters of the network derived with ``layout`` (widths per stack)."""
        dense = sum(layer.count_params() for layer in self.chain) + (
            0 if self.trunk is None else self.trunk.count_params())
        return int(dense - sum(t.dense - t.cost(widths)
                               for t, widths in zip(self.parameter_costs, layout)))

    def layout_cost(self, layout) -> float:
        """Cost of ``layout`` over the dense network's (``costs``; 1 = every membrane open)."""
        return float(sum(t.cost(widths) for t, widths in zip(self.costs, layout)) / self._dense)

    def layout_permeability(self, layout) -> list:
        """The {0, 1} permeabilities that ``call`` takes for ``layout``."""
        return [discrete_permeability(widths) for widths in layout]

    def get_config(self):
        return {**super().get_config(), "lam": self.lam,
                "costs": [t.to_dict() for t in self.costs or []] or None,
                "initial_logit": self.initial_logit, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mpath_tf")
class HyperStacks(GatedStacks):
    """``GatedStacks`` whose logits are a function of ``lam`` (as
    ``HyperSupernet``, one omega and slope per stack): ``derive(model, lam=x)``
    gives the network of any trade-off in [0, lam_max].

    Args:
        chain, stacks, trunk, shared_paths, costs, initial_logit, seed: As ``GatedStacks``.
        lam_max: Lambda, the top of the training range U[0, lam_max] (> 0).
        **kwargs: Base ``keras.Model`` arguments.

    Raises:
        ValueError: If ``lam_max`` is not a finite number > 0.

    Example:
        >>> from mpath_tf.core.models import build_cnn
        >>> from mpath_tf.core.supernet import to_supernet
        >>> net = gate(to_supernet(build_cnn((8, 8, 1), 3, depth=3, width=4)), lam_max=1.0)
        >>> len(net.derived_layout(lam=0.0)[0]) <= len(net.derived_layout(lam=1.0)[0])
        True
    """

    def __init__(self, chain, stacks, trunk=None, shared_paths: bool = False,
                 lam_max: float = 1.0, costs=None, initial_logit: float = 1.0,
                 seed: int | None = None, **kwargs):
        kwargs.pop("lam", None)
        super().__init__(chain, stacks, trunk, shared_paths, 0.0, costs, initial_logit, seed,
                         **kwargs)
        self.lam_max = check_lam_max(lam_max)

    def build(self, input_shape):
        super().build(input_shape)
        # as HyperSupernet.slope: stored divided by LOGIT_SCALE, nearly 0
        self.slopes = [self.add_weight(name=f"slope_{s + 1}", shape=(w - 1,),
                                       initializer=keras.initializers.Constant(1e-3))
                       for s, w in enumerate(self.widths)]

    @property
    def hyper_variables(self) -> list:
        """The hypernetwork's variables: the omegas (logits at lam = 0) and slopes."""
        return [*self.omegas, *self.slopes]

    def membrane_logits(self, lam=None) -> list:
        """Each stack's membrane logits at ``lam`` (default 0); non-increasing in ``lam``."""
        x = ops.convert_to_tensor(0.0 if lam is None else lam, "float32") / self.lam_max
        return [(omega - ops.abs(slope) * x) * LOGIT_SCALE
                for omega, slope in zip(self.omegas, self.slopes)]

    def _training_lam(self):
        return keras.random.uniform((), 0.0, self.lam_max, seed=self.seed_generator)

    def derived_layout(self, paths=None, lam: float | None = None) -> list[list[int]]:
        """Widths per stack at ``lam`` (read off the gates), or ranked at lam = 0
        for ``paths``. Warns when ``lam`` is above ``lam_max``."""
        _warn_above(lam, self.lam_max)
        return super().derived_layout(paths, lam)

    def get_config(self):
        config = super().get_config()
        config.pop("lam")
        return {**config, "lam_max": self.lam_max}


def gate(supernet: Supernet, lam: float | None = None, lam_max: float | None = None,
         costs=None, seed: int | None = None) -> GatedStacks:
    """A gated copy of a built supernet: ``GatedStacks`` at ``lam``, or
    ``HyperStacks`` up to ``lam_max``, with the supernet's layer weights
    (its membranes start again as open gates).

    Args:
        supernet: A built ``Supernet`` (``to_supernet`` of any model).
        lam: Cost weight of a fixed-lambda model.
        lam_max: Lambda of a hypernetwork (instead of ``lam``).
        costs: One ``CostTable`` per stack; default parameters.
        seed: Seed of the gate noise.

    Returns:
        The built, untrained-gates model.

    Raises:
        ValueError: Neither or both of ``lam`` and ``lam_max``, or a bad value.

    Example:
        >>> from mpath_tf.core.supernet import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=3, width=6)
        >>> type(gate(net, lam=0.1)).__name__
        'GatedStacks'
    """
    if (lam is None) == (lam_max is None):
        raise ValueError("Pass one of `lam` (a fixed trade-off) or `lam_max` (a hypernetwork). "
                         f"Received: lam={lam!r}, lam_max={lam_max!r}")
    config = {key: value for key, value in supernet.get_config().items()
              if key in ("chain", "stacks", "trunk", "shared_paths")}
    config = {**config, "name": f"gated-{supernet.name}", "costs": costs, "seed": seed}
    cls, trade_off = ((GatedStacks, {"lam": lam}) if lam is not None
                      else (HyperStacks, {"lam_max": lam_max}))
    model = cls.from_config({**config, **trade_off})  # fresh layers, as a .keras file gives
    model.build((None, *supernet.example_shape))
    for mine, theirs in zip(model.chain, supernet.chain):
        mine.set_weights(theirs.get_weights())
    if model.trunk is not None:
        model.trunk.set_weights(supernet.trunk.get_weights())
    return model


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
