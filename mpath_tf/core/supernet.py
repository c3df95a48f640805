"""A supernet made from any Keras model: the wrap half of ``derive``.

``to_supernet(model)`` finds, in a built Sequential or Functional model, the
runs of two or more consecutive ``Dense`` layers of equal width (a *stack*).
The first layer of a run stays fully connected, as in the paper; every later
one becomes a ``MembraneDense`` gated by the stack's one shared set of W - 1
membranes. The trained weights are kept and every other layer is carried
over unchanged. ``mpath_tf.derive`` is the strip half: it replaces each
membrane layer by a ``PathDense`` with only the diagonal blocks.

Runs of two or more consecutive ``Conv2D`` layers of equal channel count
become stacks the same way, with membranes between adjacent output channels
(``MembraneConv2D``), through per-channel layers such as BatchNormalization
and pooling.

The result is a ``Supernet``: the layers after the model's last branch or
join (``chain``, run in order, the stacks among them) and, before them, the
rest of the model as one nested functional model (``trunk``; None for a
chain from input to output, such as every Sequential model). A residual
block in that chain (a branch that an ``Add`` joins again: ResNet's identity
or projection shortcut) stays in it as a ``ResidualFork`` marker, the
block's own layers, and a ``ResidualJoin`` holding the shortcut's layers;
a stack runs through both, since the join adds channel i to channel i. The
built-in MLP (``build_supernet``) is ``to_supernet(build_mlp(...))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mpath_tf.core import ARCHITECTURES, graph, legacy
from mpath_tf.core.conv import MembraneConv2D
from mpath_tf.core.costs import CostTable, expected_cost
from mpath_tf.core.gates import (LOGIT_SCALE, check_lam, check_lam_max, gate_widths,
                                 sample_gates, stack_parameter_costs, warn_above)
from mpath_tf.core.layers import MembraneDense
from mpath_tf.core.models import build_cnn, build_mlp, build_resnet8
from mpath_tf.core.permeability import (RangeMinIndex, discrete_permeability,
                                        widths_from_permeability)
from mpath_tf.errors import ConfigError

# Layers that keep neuron (channel) i at position i (elementwise, per neuron
# or per channel): a stack may run through them, its paths stay independent.
NEURONWISE = (
    keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.GaussianNoise,
    keras.layers.AlphaDropout, keras.layers.SpatialDropout2D, keras.layers.Activation,
    keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
    keras.layers.BatchNormalization, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
)


@keras.saving.register_keras_serializable(package="mpath_tf")
class ResidualFork(keras.layers.Layer):
    """Marks, in a supernet's chain, where a residual block's shortcut
    starts: the chain's runners keep the tensor here for the next
    ``ResidualJoin``. Computes nothing.

    Example:
        >>> tuple(ResidualFork(name="fork")(keras.ops.ones((1, 2))).shape)
        (1, 2)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # no weights; the chain's runners never call it

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="mpath_tf")
class ResidualJoin(keras.layers.Layer):
    """The end of a residual block: ``body + shortcut(kept)``, where ``kept``
    is the tensor at the block's ``ResidualFork`` and ``shortcut`` runs its
    layers in order (none: the identity).

    Args:
        shortcut: The shortcut's layers (such as a strided 1x1 Conv2D and its
            BatchNormalization), or their serialized configs.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Raises:
        ValueError: If the body and shortcut shapes differ.

    Example:
        >>> join = ResidualJoin([], name="add")
        >>> keras.ops.convert_to_numpy(join([keras.ops.ones((1, 2)), keras.ops.ones((1, 2))]))
        array([[2., 2.]], dtype=float32)
    """

    def __init__(self, shortcut=(), **kwargs):
        super().__init__(**kwargs)
        self.shortcut = [layer if isinstance(layer, keras.layers.Layer)
                         else keras.saving.deserialize_keras_object(layer)
                         for layer in shortcut]

    def build(self, input_shape):
        body, shape = (tuple(s) for s in input_shape)
        for layer in self.shortcut:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        if tuple(body[1:]) != tuple(shape[1:]):
            raise ValueError(f"{self.name}: the block gives {body[1:]} but its shortcut gives "
                             f"{shape[1:]}; a residual add needs equal shapes.")

    def call(self, inputs):
        body, kept = inputs
        for layer in self.shortcut:
            kept = layer(kept)
        return body + kept

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(),
                "shortcut": [keras.saving.serialize_keras_object(l) for l in self.shortcut]}


def run_chain(layers, h, apply):
    """Run a chain's ``layers`` on ``h``: ``apply(layer, h)`` for each, a
    ``ResidualJoin`` on ``[h, tensor kept at its fork]``; returns the output."""
    kept = []
    for layer in layers:
        if isinstance(layer, ResidualFork):
            kept.append(h)
        elif isinstance(layer, ResidualJoin):
            h = apply(layer, [h, kept.pop()])
        else:
            h = apply(layer, h)
    return h


def _branch(tensor, used):
    """(layers, start tensor) of the single-input, single-use layers that
    end at ``tensor``, walked back to the first tensor read more than once."""
    layers = []
    while used.get(id(tensor), 0) <= 1:
        layer, node = graph.producer(tensor)
        if (isinstance(layer, keras.layers.InputLayer) or len(node.input_tensors) != 1
                or graph.only_call(layer) is None):
            return None
        layers.insert(0, layer)
        tensor = node.input_tensors[0]
    return layers, tensor


def _residual(layer, node, used):
    """(fork tensor, body layers, join) if ``layer`` is an ``Add`` of two
    branches from one tensor that nothing else reads, else None."""
    if (type(layer) is not keras.layers.Add or len(node.input_tensors) != 2
            or graph.only_call(layer) is None):
        return None
    branches = []
    for tensor in node.input_tensors:
        if used.get(id(tensor), 0) > 1:  # the fork itself: an identity shortcut
            branches.append(([], tensor))
            continue
        branch = _branch(tensor, used)
        if branch is None:
            return None
        branches.append(branch)
    (body, fork), (shortcut, other) = sorted(branches, key=lambda b: -len(b[0]))
    if id(fork) != id(other) or used.get(id(fork), 0) != 2 or not body:
        return None
    return fork, body, ResidualJoin([_copy(l) for l in shortcut], name=layer.name)


def split_chain(model: keras.Model):
    """(trunk output tensor or None, chain of layers) of a built model.

    The chain is the longest run of single-input, single-use layers that ends
    at the model's output, through residual blocks (an ``Add`` of a branch
    of such layers and a shortcut from the same tensor: the block is
    ``ResidualFork``, its layers, ``ResidualJoin``); the trunk is everything
    before it.

    Raises:
        ValueError: If the model is not built, or has several inputs or outputs.
    """
    if isinstance(model, keras.Sequential):
        if not model.built:
            raise ValueError(
                f"to_supernet needs a built model; {model.name} has no input shape yet. Build it "
                "first (model.build((None, *input_shape)), or start it with keras.Input).")
        return None, list(model.layers)
    if not graph.has_graph(model):
        raise ValueError(
            "to_supernet takes a built Sequential or Functional Keras model (a subclassed "
            f"model has no layer graph to rewrite). Received: {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"to_supernet takes a model with one input and one output; {model.name} has "
            f"{len(model.inputs)} and {len(model.outputs)}.")
    used = {key: len(readers) for key, readers in graph.consumers(model).items()}
    chain, tensor = [], model.outputs[0]
    while True:
        layer, node = graph.producer(tensor)
        if isinstance(layer, keras.layers.InputLayer):
            return None, chain
        block = _residual(layer, node, used)
        if block is not None:  # on from its fork, which only the block reads
            tensor, body, join = block
            chain[:0] = [ResidualFork(name=f"{join.name}_fork"), *body, join]
            continue
        if len(node.input_tensors) != 1 or graph.only_call(layer) is None:
            return tensor, chain
        chain.insert(0, layer)
        tensor = node.input_tensors[0]
        if used.get(id(tensor), 0) > 1:
            return tensor, chain


# Activations that mix neurons: a layer with one is never split into paths.
MIXING = {"softmax", "log_softmax"}


def _elementwise(activation) -> bool:
    return activation is None or keras.activations.serialize(activation) not in MIXING


def _neuronwise(layer) -> bool:
    return isinstance(layer, NEURONWISE) and _elementwise(getattr(layer, "activation", None))


def _kind(layer) -> tuple | None:
    """``("dense", units)`` or ``("conv", filters)`` for a layer a membrane
    layer can replace with the same function, else None."""
    if type(layer) not in (keras.layers.Dense, keras.layers.Conv2D):
        return None
    plain = (_elementwise(layer.activation) and layer.kernel_regularizer is None
             and layer.bias_regularizer is None and layer.kernel_constraint is None
             and layer.bias_constraint is None)
    if not plain:
        return None
    if type(layer) is keras.layers.Dense:
        return ("dense", layer.units) if layer.use_bias and len(layer.input.shape) == 2 else None
    if layer.groups == 1 and layer.data_format == "channels_last":
        return ("conv", layer.filters)
    return None


def _runs(chain) -> list[list]:
    """Maximal runs of >= 2 eligible Dense layers of equal units, or Conv2D
    layers of equal filters, in ``chain``, through neuron-wise layers and
    residual forks and joins only; the model's output layer (the
    classifier) never joins one."""
    runs, current = [], []
    for layer in chain[:-1]:
        kind = _kind(layer)
        if kind is not None and current and kind == _kind(current[0]):
            current.append(layer)
        elif (_neuronwise(layer) or isinstance(layer, (ResidualFork, ResidualJoin))) and current:
            continue  # a residual join adds channel i to channel i
        else:
            if len(current) >= 2:
                runs.append(current)
            current = [layer] if kind is not None else []
    if len(current) >= 2:
        runs.append(current)
    return runs


def _copy(layer):
    new = layer.__class__.from_config(layer.get_config())
    new.build(layer.input.shape)
    new.set_weights(layer.get_weights())
    return new


@keras.saving.register_keras_serializable(package="mpath_tf")
class Supernet(keras.Model):
    """One-shot multipath network: a chain of layers in which each stack of
    ``MembraneDense`` layers shares one set of membranes.

    Stack s owns a variable of shape (W_s - 1,), initialized from U(-1, 1)
    (Eq. 4). A forward pass turns sigmoid(omega_s) (Eq. 1) into the (W_s, W_s)
    connection matrix of Eq. 2 once and gates every membrane layer of the
    stack with it (Eq. 3). Made by ``to_supernet`` or ``build_supernet``.

    With a trade-off (``lam`` or ``lam_max``; made by ``gate``) the membranes
    are gates (``mpath_tf.core.gates``): omega_s holds the membrane logits
    (over ``LOGIT_SCALE``); training samples binary-concrete gates at the
    ``temperature`` and adds ``lam * E[cost] / dense cost`` over every stack
    (``costs``: one table per stack); inference, ``derive(model)`` and
    ``derived_layout()`` use the hard gates ``logit > 0``. With ``lam_max``
    the logits are a function of lam (paper 002's hypernetwork: ``logit =
    LOGIT_SCALE * (omega - |slope| * lam / lam_max)``, non-increasing in lam,
    so a larger lam never opens a membrane), each training step draws lam ~
    U[0, lam_max], and ``derive(model, lam=x)`` gives any trade-off.

    Args:
        chain: The layers run in order after the trunk; the membrane layers
            among them are named in ``stacks``.
        stacks: For each stack, the names of its ``MembraneDense`` layers in
            chain order (all of one width).
        trunk: A functional model run before the chain, or None.
        shared_paths: One path count applies to every stack (at most its
            width: ``min(b, W_s)``), as in a ResNet whose stages are split
            alike; else it applies to the first stack and the others keep one
            path.
        lam: Weight of the relative cost of a fixed trade-off (>= 0).
        lam_max: Lambda, the top of a hypernetwork's training range U[0,
            lam_max] (> 0); instead of ``lam``.
        costs: With a trade-off, one ``CostTable`` (or its ``to_dict``) per
            stack; default parameters (``stack_parameter_costs``).
        initial_logit: With a trade-off, the membrane logits start at U(-1,
            1) plus this (1: nearly every membrane open).
        seed: Seed of the gate noise.
        **kwargs: Base ``keras.Model`` arguments such as ``name``.

    Raises:
        ValueError: If ``stacks`` names a layer that is not a ``MembraneDense``
            of the chain, a stack is empty or mixes widths, both ``lam`` and
            ``lam_max`` are given, or either is out of range.
        ConfigError: At build, if ``costs`` does not have one table per stack
            of that stack's width and depth.

    Example:
        >>> net = build_supernet((8, 8), num_classes=10, depth=3, width=6)
        >>> net.width, net.depth, tuple(net.omega.shape), net.trade_off
        (6, 3, (5,), 'rank')
    """

    def __init__(self, chain, stacks, trunk=None, shared_paths: bool = False,
                 lam: float | None = None, lam_max: float | None = None, costs=None,
                 initial_logit: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.shared_paths = bool(shared_paths)
        self.chain = list(chain)
        by_name = {layer.name: layer for layer in self.chain}
        self.stacks = [list(names) for names in stacks]
        if not self.stacks or any(not names for names in self.stacks):
            raise ValueError(f"`stacks` must list at least one stack of membrane layer names. "
                             f"Received: stacks={stacks!r}")
        for names in self.stacks:
            layers = [by_name.get(n) for n in names]
            if any(not isinstance(l, (MembraneDense, MembraneConv2D)) for l in layers) or len(
                    {l.width for l in layers}) != 1:
                raise ValueError(
                    "Each stack must name membrane layers (MembraneDense or MembraneConv2D) of "
                    "the chain, all of one width. "
                    f"Received: stacks={stacks!r}, chain={list(by_name)}")
        self._stack_of = {name: s for s, names in enumerate(self.stacks) for name in names}
        self.widths = [by_name[names[0]].width for names in self.stacks]
        if lam is not None and lam_max is not None:
            raise ValueError("Pass one of `lam` (a fixed trade-off) or `lam_max` (a "
                             f"hypernetwork). Received: lam={lam!r}, lam_max={lam_max!r}")
        self.lam = None if lam is None else check_lam(lam)
        self.lam_max = None if lam_max is None else check_lam_max(lam_max)
        self.costs = None if costs is None else [
            c if isinstance(c, CostTable) else CostTable.from_dict(c) for c in costs]
        self.initial_logit = float(initial_logit)
        self.seed = seed
        if self.trade_off != "rank":
            self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def trade_off(self) -> str:
        """How the membranes decide: ``"rank"`` (the paper: by permeability,
        for a path count), ``"lambda"`` (gates at ``lam``) or ``"hypernet"``
        (gates at any lam up to ``lam_max``)."""
        return "rank" if self.lam is None and self.lam_max is None else (
            "lambda" if self.lam is not None else "hypernet")

    @property
    def width(self) -> int:
        """Neurons per layer W of the first stack (the one a search splits)."""
        return self.widths[0]

    @property
    def depth(self) -> int:
        """Layers of the first stack: its fully connected entry layer and its
        membrane layers (the paper's number of hidden layers)."""
        return len(self.stacks[0]) + 1

    @property
    def membrane_layers(self) -> list[MembraneDense]:
        """The first stack's membrane layers."""
        return [self.get_layer(name) for name in self.stacks[0]]

    @property
    def num_classes(self) -> int:
        return int(self.output_spec_shape[-1])

    def build(self, input_shape):
        self.example_shape = tuple(int(d) for d in input_shape[1:])
        self.omegas = [
            self.add_weight(name="omega" if s == 0 else f"omega_{s + 1}", shape=(w - 1,),
                            initializer=keras.initializers.RandomUniform(-1.0, 1.0))
            for s, w in enumerate(self.widths)]
        self._range_mins = [RangeMinIndex(w) for w in self.widths]
        shape = tuple(input_shape)
        if self.trunk is not None:
            shape = tuple(self.trunk.compute_output_shape(shape))

        def build(layer, shape):
            if not layer.built:
                layer.build(shape)
            return tuple(layer.compute_output_shape(shape))

        self.output_spec_shape = run_chain(self.chain, shape, build)
        self.parameter_costs = stack_parameter_costs(self)
        if self.trade_off != "rank":
            self._build_gates()

    def _build_gates(self):
        if self.costs is None:
            self.costs = self.parameter_costs
        if len(self.costs) != len(self.stacks):
            raise ConfigError(f"{self.name} has {len(self.stacks)} stacks but {len(self.costs)} "
                              f"cost tables; pass one per stack (widths {self.widths}).")
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
        if self.trade_off == "hypernet":
            # Stored over LOGIT_SCALE, as omega. Nearly 0: hardly any dependence
            # on lam before training, but not exactly 0, where |slope| has no gradient.
            self.slopes = [self.add_weight(name="slope" if s == 0 else f"slope_{s + 1}",
                                           shape=(w - 1,),
                                           initializer=keras.initializers.Constant(1e-3))
                           for s, w in enumerate(self.widths)]

    @property
    def omega(self):
        """The first stack's membrane variable (W - 1,)."""
        return self.omegas[0]

    @property
    def hyper_variables(self) -> list:
        """The hypernetwork's variables: the omegas (logits at lam = 0) and slopes."""
        return [*self.omegas, *self.slopes]

    def membrane_logits(self, lam: float | None = None) -> list:
        """Each stack's W_s - 1 membrane logits: omega itself for a ranked
        supernet, the gate logits with a trade-off (those at ``lam``, default
        0, for a hypernetwork; non-increasing in ``lam``)."""
        if self.trade_off == "rank":
            return list(self.omegas)
        if self.trade_off == "lambda":
            return [omega * LOGIT_SCALE for omega in self.omegas]
        x = ops.convert_to_tensor(0.0 if lam is None else lam, "float32") / self.lam_max
        return [(omega - ops.abs(slope) * x) * LOGIT_SCALE
                for omega, slope in zip(self.omegas, self.slopes)]

    def thresholds(self, stack: int = 0) -> np.ndarray:
        """The lam above which each membrane of a hypernetwork's stack is cut
        (inf: never; 0: always)."""
        omega = ops.convert_to_numpy(self.omegas[stack]).astype("float64")
        slope = np.abs(ops.convert_to_numpy(self.slopes[stack])).astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):  # slope 0: inf, never cut
            return np.where(omega <= 0, 0.0, self.lam_max * omega / slope)

    def membrane_permeability(self, stack: int = 0):
        """The W - 1 membrane permeabilities of a stack, sigmoid of its logits
        (Eq. 1; with a trade-off, the gates' open probabilities at lam = 0):
        the ranking when a layout is derived by path count."""
        return ops.sigmoid(self.membrane_logits()[stack])

    def connection_permeability(self, stack: int = 0):
        """The (W, W) connection permeability matrix of a stack (Eq. 2)."""
        return self._range_mins[stack](self.membrane_permeability(stack))

    def relative_cost(self, lam: float | None = None):
        """Expected cost of all stacks' gates over their dense cost (1: every
        membrane open)."""
        total = sum(expected_cost(ops.sigmoid(logits), block)
                    for logits, block in zip(self.membrane_logits(lam), self._blocks))
        return total / self._dense

    def _gate_matrices(self, training, lam) -> list:
        """The connection matrices of the gates (sampled in training, hard
        otherwise); in training adds the cost term to the loss."""
        if training:
            lam = self.lam if self.trade_off == "lambda" else keras.random.uniform(
                (), 0.0, self.lam_max, seed=self.seed_generator)
        matrices = [self._range_mins[s](sample_gates(logits, training, self.temperature,
                                                     self.seed_generator))
                    for s, logits in enumerate(self.membrane_logits(lam))]
        if training:
            self.add_loss(lam * self.relative_cost(lam))
        return matrices

    def call(self, inputs, permeability=None, training=None, lam=None):
        """Forward pass; ``permeability`` overrides the learned matrices: one
        (W, W) matrix for the first stack, or a list with one per stack (None
        entries keep the learned one). With a trade-off the matrices are the
        gates' (sampled in training, else hard: for a hypernetwork those of
        ``lam``, default 0).

        Passing {0, 1} matrices (``mpath_tf.discrete_permeability``) gives the
        discretized supernet that a derived model must reproduce exactly.
        ``training`` reaches every layer of the chain (batch normalization and
        dropout train in ``fit``: Keras passes it only to a ``call`` that
        takes it).
        """
        if permeability is None and self.trade_off != "rank":
            permeability = self._gate_matrices(training, lam)
        given = permeability if isinstance(permeability, (list, tuple)) else [permeability]
        given = list(given) + [None] * (len(self.stacks) - len(given))
        matrices = [p if p is not None else self.connection_permeability(s)
                    for s, p in enumerate(given)]
        h = inputs if self.trunk is None else self.trunk(inputs, training=training)

        def apply(layer, h):
            stack = self._stack_of.get(layer.name)
            return (layer(h, training=training) if stack is None
                    else layer(h, matrices[stack], training=training))

        return run_chain(self.chain, h, apply)

    def derived_widths(self, paths: int | None = None, lam: float | None = None) -> list[int]:
        """Path widths of the first stack (``derived_layout``)."""
        return self.derived_layout(paths, lam)[0]

    def derived_layout(self, paths=None, lam: float | None = None) -> list[list[int]]:
        """Path widths of every stack, read off the gates (with a trade-off,
        no ``paths``: those at ``lam`` for a hypernetwork) or ranked for
        ``paths`` (the paper: the ``paths - 1`` least permeable membranes
        cut). ``paths`` is one count (the first stack, the others keeping one
        path; with ``shared_paths``, every stack, at most its width) or a
        tuple with one count per stack.

        Warns when ``lam`` is above a hypernetwork's ``lam_max``: it never saw it.

        Raises:
            ValueError: If a count is outside [1, W] of its stack, the tuple's
                length is not the number of stacks, ``lam`` is negative, or a
                ranked supernet gets ``lam`` or no ``paths``.
        """
        if self.trade_off == "rank":
            check_ranked(paths, lam)
        elif self.trade_off == "hypernet":
            warn_above(lam, self.lam_max)
        if paths is None:
            return [gate_widths(ops.convert_to_numpy(logits))
                    for logits in self.membrane_logits(lam)]
        if isinstance(paths, (list, tuple)):
            counts = tuple(paths)
        elif self.shared_paths:
            counts = (paths,) + tuple(min(paths, w) for w in self.widths[1:])
        else:
            counts = (paths,) + (1,) * (len(self.stacks) - 1)
        if len(counts) != len(self.stacks):
            raise ValueError(
                f"`paths` must give one path count per stack ({len(self.stacks)}: widths "
                f"{self.widths}), or one count for the first stack. Received: paths={paths!r}")
        return [widths_from_permeability(ops.convert_to_numpy(self.membrane_permeability(s)), b)
                for s, b in enumerate(counts)]

    def layout_parameters(self, layout) -> int:
        """Parameters of the network derived with ``layout`` (widths per stack)."""
        dense = sum(layer.count_params() for layer in self.chain) + (
            0 if self.trunk is None else self.trunk.count_params())
        return int(dense - sum(t.dense - t.cost(widths)
                               for t, widths in zip(self.parameter_costs, layout)))

    def layout_cost(self, layout) -> float:
        """Cost of ``layout`` over the dense network's (by ``costs``, default
        parameters; 1 = every membrane open)."""
        tables = self.costs or self.parameter_costs
        return float(sum(t.cost(widths) for t, widths in zip(tables, layout))
                     / sum(t.dense for t in tables))

    def layout_permeability(self, layout) -> list:
        """The {0, 1} permeabilities that ``call`` takes for ``layout``."""
        return [discrete_permeability(widths) for widths in layout]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_spec_shape[1:])

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "chain": [keras.saving.serialize_keras_object(layer) for layer in self.chain],
            "stacks": [list(names) for names in self.stacks],
            "trunk": (None if self.trunk is None
                      else keras.saving.serialize_keras_object(self.trunk)),
            "shared_paths": self.shared_paths,
        }
        if self.trade_off == "rank":
            return config
        trade_off = {"lam": self.lam} if self.lam is not None else {"lam_max": self.lam_max}
        return {**config, **trade_off, "costs": [t.to_dict() for t in self.costs or []] or None,
                "initial_logit": self.initial_logit, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        if "depth" in config:  # written by mpath-tf 0.1, whose supernet was the fixed MLP
            return legacy.MLPSupernet.from_config(config)
        config = dict(config)
        chain = [keras.saving.deserialize_keras_object(c) for c in config.pop("chain")]
        trunk = config.pop("trunk")
        trunk = None if trunk is None else keras.saving.deserialize_keras_object(trunk)
        return cls(chain, config.pop("stacks"), trunk, **config)


def to_supernet(model: keras.Model, layers: Sequence[str] | None = None,
                name: str | None = None, shared_paths: bool = False) -> Supernet:
    """A supernet made from a built Keras model, keeping its weights.

    Every run of two or more consecutive ``Dense`` layers of equal width (or
    the runs holding the layers named in ``layers``) becomes a membrane
    stack: its first layer stays fully connected, the later ones become
    ``MembraneDense`` layers with the same kernels and biases under one
    shared set of membranes. A run may pass through neuron-wise layers
    (Dropout, Activation, BatchNormalization) and residual blocks (kept as
    ``ResidualFork`` ... ``ResidualJoin``); its Dense layers must have a
    bias, no regularizer or constraint, and flat (batch, features) inputs.
    Runs of ``Conv2D`` layers of equal channel count become stacks of
    ``MembraneConv2D`` layers the same way. Every other layer is copied
    with its weights.

    Args:
        model: A built Sequential or Functional model with one input and one
            output (it is not changed).
        layers: Names of Dense layers whose runs become stacks (default: every run).
        name: Name of the supernet (default: ``<model name>-supernet``).
        shared_paths: One path count for every stack (see ``Supernet``).

    Returns:
        A built ``Supernet`` whose membranes start at U(-1, 1).

    Raises:
        ValueError: If the model has no such run (the message lists its Dense
            layers), or a name in ``layers`` is not in one.

    Example:
        >>> inputs = keras.Input((10,))
        >>> h = keras.layers.Dense(16, activation="relu")(inputs)
        >>> h = keras.layers.Dense(16, activation="relu")(h)
        >>> outputs = keras.layers.Dense(3, activation="softmax")(h)
        >>> net = to_supernet(keras.Model(inputs, outputs))
        >>> net.width, net.depth
        (16, 2)
    """
    trunk_output, chain = split_chain(model)
    runs = _runs(chain)
    if layers is not None:
        wanted = list(layers)
        found = [run for run in runs if any(l.name in wanted for l in run)]
        missing = [n for n in wanted if not any(l.name == n for run in found for l in run)]
        if missing:
            raise ValueError(
                f"`layers` names {missing}, which are not in a run of two or more consecutive "
                f"Dense layers of equal width in {model.name}'s final chain. Runs found: "
                f"{[[l.name for l in run] for run in runs] or 'none'}. Received: layers={wanted!r}")
        runs = found
    if not runs:
        found = [f"{l.name}({l.units if isinstance(l, keras.layers.Dense) else l.filters})"
                 for l in chain if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D))]
        raise ValueError(
            f"{model.name} has no stack to split into paths: to_supernet needs two or more "
            "consecutive Dense layers of equal width (for example Dense(128) -> Dense(128); "
            "with a bias, no regularizer or constraint, on flat (batch, features) inputs) or "
            "Conv2D layers of equal channel count, after the model's last branch. Its Dense "
            f"and Conv2D layers there: {', '.join(found) or 'none'}. Add such a pair before "
            "the classifier.")
    membranes = {id(l) for run in runs for l in run[1:]}
    new_chain = []
    for layer in chain:
        if isinstance(layer, (ResidualFork, ResidualJoin)):
            new_chain.append(layer)  # made by split_chain, with copies of the shortcut
            continue
        if id(layer) not in membranes:
            new_chain.append(_copy(layer))
            continue
        if isinstance(layer, keras.layers.Conv2D):
            new = MembraneConv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                 padding=layer.padding, dilation_rate=layer.dilation_rate,
                                 activation=layer.activation, use_bias=layer.use_bias,
                                 name=f"membrane_{layer.name}")
        else:
            new = MembraneDense(layer.units, activation=layer.activation,
                                name=f"membrane_{layer.name}")
        new.build(layer.input.shape)
        new.set_weights(layer.get_weights())  # the same kernel (and bias), gated from now on
        new_chain.append(new)
    trunk = None
    if trunk_output is not None:
        source = keras.Model(model.inputs, trunk_output)
        trunk = keras.models.clone_model(source)
        trunk.set_weights(source.get_weights())
    stacks = [[f"membrane_{l.name}" for l in run[1:]] for run in runs]
    net = Supernet(new_chain, stacks, trunk, shared_paths, name=name or f"{model.name}-supernet")
    net.build((None, *model.inputs[0].shape[1:]))
    return net


def build_supernet(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int,
    width: int,
    activation: str = "relu",
    seed: int | None = None,
    normalize: bool = False,
    arch: str = "mlp",
) -> Supernet:
    """Build the one-shot supernet ``mpath-<depth>-<width>``, ready to train.

    ``to_supernet`` of the MLP ``build_mlp`` makes with the same arguments:
    flatten -> [normalization] -> Dense(W) -> (depth - 1) membrane layers of
    width W sharing one set of membranes -> Dense(num_classes, softmax).
    With ``arch="cnn"``, of the CNN ``build_cnn`` makes (``mpath-cnn-<depth>-<width>``):
    3x3 convolutions of W channels, the later ``depth - 1`` of them
    ``MembraneConv2D`` layers under one set of membranes between channels.
    With ``arch="resnet8"``, of ``build_resnet8`` (``mpath-resnet8-<width>``:
    stages of W, 2W and 4W channels; ``depth`` is not used): three stacks,
    one per stage, that one path count b splits alike (``min(b, W_s)``).

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer (>= 2).
        activation: Activation of the hidden layers.
        seed: If given, seeds Keras (and NumPy/Python) before the weights are
            drawn, so the same seed gives the same initial network.
        normalize: Standardize the inputs in a first ``Normalization`` layer
            (identity until ``adapt_normalization`` sets it).
        arch: ``"mlp"``, ``"cnn"`` or ``"resnet8"`` (image-shaped examples only).

    Returns:
        A built ``Supernet``.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> net = build_supernet((64,), num_classes=10, depth=4, width=8, seed=0)
        >>> net.name, [layer.name for layer in net.membrane_layers]
        ('mpath-4-8', ['membrane_dense_1', 'membrane_dense_2', 'membrane_dense_3'])
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"`arch` must be one of {ARCHITECTURES}. Received: arch={arch!r}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if arch == "cnn":  # build_cnn checks the arguments
        cnn = build_cnn(input_shape, num_classes, depth, width, activation, None, normalize)
        return to_supernet(cnn, name=f"mpath-cnn-{int(depth)}-{int(width)}")
    if arch == "resnet8":  # build_resnet8 checks the arguments; depth is its own
        resnet = build_resnet8(input_shape, num_classes, width, activation, None, normalize)
        return to_supernet(resnet, name=f"mpath-resnet8-{int(width)}", shared_paths=True)
    # build_mlp checks the arguments
    mlp = build_mlp(input_shape, num_classes, depth, width, activation, None, normalize)
    # Drawn next, as 0.1's fixed supernet drew them: a seed gives the same network as then.
    omega = keras.initializers.RandomUniform(-1.0, 1.0)((int(width) - 1,))
    net = to_supernet(mlp, name=f"mpath-{int(depth)}-{int(width)}")
    net.omega.assign(omega)
    return net


def check_ranked(paths, lam) -> None:
    """Refuse what a supernet trained without a cost term cannot derive: a
    layout at ``lam``, or no path count.

    Raises:
        ValueError: ``lam`` is given, or ``paths`` is None.
    """
    if lam is not None:
        raise ValueError(
            "This supernet was trained without a cost term, so it has no "
            "architecture per lam; derive it by path count (paths=...), or train "
            "a hypernetwork (`gate(supernet, lam_max=...)`, `mpath-tf search --method hypernet`). "
            f"Received: lam={lam!r}")
    if paths is None:
        raise ValueError("Pass `paths`, the path count to derive (1 .. W). Received: paths=None")


def _with_trade_off(supernet: Supernet, name: str, trade_off: dict) -> Supernet:
    """A copy of a built supernet with ``trade_off`` (``Supernet``'s lam or
    lam_max, costs, initial_logit, seed), its layers' weights, fresh membranes."""
    config = {key: value for key, value in supernet.get_config().items()
              if key in ("chain", "stacks", "trunk", "shared_paths")}
    model = Supernet.from_config({**config, **trade_off, "name": name})  # fresh layers
    model.build((None, *supernet.example_shape))
    for mine, theirs in zip(model.chain, supernet.chain):
        mine.set_weights(theirs.get_weights())
    if model.trunk is not None:
        model.trunk.set_weights(supernet.trunk.get_weights())
    return model


def gate(supernet: Supernet, lam: float | None = None, lam_max: float | None = None,
         costs=None, seed: int | None = None) -> Supernet:
    """A gated copy of a built supernet, a fixed trade-off at ``lam`` or a
    hypernetwork up to ``lam_max``, with the supernet's layer weights (its
    membranes start again as open gates).

    Args:
        supernet: A built ``Supernet`` (``build_supernet``, or ``to_supernet``
            of any model).
        lam: Cost weight of a fixed trade-off.
        lam_max: Lambda of a hypernetwork (instead of ``lam``).
        costs: One ``CostTable`` per stack; default parameters.
        seed: Seed of the gate noise.

    Returns:
        The built ``Supernet`` with untrained gates, named ``gated-<name>``.

    Raises:
        ValueError: Neither or both of ``lam`` and ``lam_max``, or a bad value.
        ConfigError: ``costs`` is not one table per stack of its width and depth.

    Example:
        >>> net = build_supernet((4,), num_classes=2, depth=3, width=6)
        >>> gate(net, lam=0.1).trade_off, gate(net, lam_max=1.0).trade_off
        ('lambda', 'hypernet')
    """
    if (lam is None) == (lam_max is None):
        raise ValueError("Pass one of `lam` (a fixed trade-off) or `lam_max` (a hypernetwork). "
                         f"Received: lam={lam!r}, lam_max={lam_max!r}")
    trade_off = {"lam": lam} if lam is not None else {"lam_max": lam_max}
    return _with_trade_off(supernet, f"gated-{supernet.name}",
                           {**trade_off, "costs": costs, "seed": seed})


def upgrade(model):
    """The ``Supernet`` that computes what a 0.1-layout MLP supernet computes
    (``mpath_tf.core.legacy``: ``MLPSupernet``, ``GatedSupernet``,
    ``HyperSupernet`` as loaded from a file), with its weights; any other
    model is returned as it is. ``mpath_tf.load_model`` calls it.
    """
    if not isinstance(model, legacy.MLPSupernet):
        return model
    mlp = build_mlp(model.example_shape, model.num_classes, model.depth, model.width,
                    model.activation, normalize=model.normalize)
    net = to_supernet(mlp, name=model.name)
    if model.gating:
        net = _with_trade_off(net, model.name, model.gating)
    for mine, theirs in zip([l for l in net.chain if l.weights], model.layers_by_role):
        mine.set_weights(theirs.get_weights())
    net.omega.assign(model.omega)
    if model.gating:
        net.temperature.assign(model.temperature)
    if net.trade_off == "hypernet":
        net.slopes[0].assign(model.slope)
    return net


@keras.saving.register_keras_serializable(package="mpath_tf")
class GatedStacks(Supernet):
    """Loads a supernet saved as ``GatedStacks`` (a fixed trade-off, before
    ``Supernet`` took one): the same config and weights as ``Supernet``'s,
    so ``from_config`` gives a ``Supernet`` (nothing makes this class)."""

    @classmethod
    def from_config(cls, config):
        return Supernet.from_config(config)


@keras.saving.register_keras_serializable(package="mpath_tf")
class HyperStacks(GatedStacks):
    """Loads a supernet saved as ``HyperStacks`` (a hypernetwork, before
    ``Supernet`` took one): the same config and weights as ``Supernet``'s."""
