"""Derive multipath networks from a trained supernet (paper, section 3).

Pruning rule: rank the W - 1 membrane permeabilities in ascending order; for a
path count b, make the b - 1 least permeable membranes impermeable and all the
others fully permeable. Ties are broken by membrane position (stable sort), so
each b maps to exactly one network and one parameter count.

The promise of ``derive``: the derived model computes the same function as the
supernet with its permeabilities discretized to {0, 1} by that rule
(``supernet(x, permeability=discrete_permeability(path_widths(supernet, b)))``).
Only the diagonal blocks of each upper hidden layer are kept.
"""

from __future__ import annotations

import keras
import numpy as np

from mpath_tf.core.conv import MembraneConv2D, PathConv2D
from mpath_tf.core.layers import MembraneDense, PathDense
from mpath_tf.core.supernet import Supernet, run_chain
from mpath_tf.core.permeability import check_paths, squares_by_paths


def path_widths(supernet: Supernet, paths: int) -> list[int]:
    """Path widths of the network derived from ``supernet`` with ``paths`` paths.

    Args:
        supernet: A built ``Supernet``.
        paths: Path count b in [1, W].

    Returns:
        b widths in neuron order, summing to W.

    Raises:
        ValueError: If ``paths`` is outside [1, W].

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=2, width=5, seed=0)
        >>> sum(path_widths(net, 3))
        5
    """
    return supernet.derived_widths(check_paths(paths, supernet.width))


def count_parameters(
    input_dim: int, num_classes: int, depth: int, widths: list[int]
) -> int:
    """Closed-form parameter count of a derived network.

    ``input_dim*W + W`` (first layer) ``+ (depth-1) * (sum(w_i^2) + W)`` (path
    layers) ``+ W*num_classes + num_classes`` (classifier), with W = sum(widths).

    Args:
        input_dim: Number of input features after flattening.
        num_classes: Number of classes.
        depth: Number of hidden layers.
        widths: Path widths.

    Returns:
        The number of parameters; ``widths=[W]`` gives the equivalent MLP.

    Example:
        >>> count_parameters(64, 10, 2, [8])
        682
    """
    width = sum(widths)
    blocks = sum(w * w for w in widths)
    return (
        input_dim * width
        + width
        + (depth - 1) * (blocks + width)
        + width * num_classes
        + num_classes
    )


def parameter_counts_from_permeability(
    permeability, input_dim: int, num_classes: int, depth: int
) -> dict[int, int]:
    """Parameter count of the derived network for every path count in [1, W].

    Adds one cut at a time in permeability order and updates the sum of squared
    path widths, so the whole map costs O(W log W) and builds no model.

    Args:
        permeability: The W - 1 membrane permeabilities.
        input_dim: Number of input features after flattening.
        num_classes: Number of classes.
        depth: Number of hidden layers.

    Returns:
        ``{b: parameters}`` for b = 1 .. W, strictly decreasing in b.

    Example:
        >>> parameter_counts_from_permeability([0.9, 0.1, 0.5], 64, 10, 2)
        {1: 330, 2: 322, 3: 320, 4: 318}
    """
    width = len(permeability) + 1
    fixed = count_parameters(input_dim, num_classes, depth, [width]) - (depth - 1) * width * width
    return {b: fixed + (depth - 1) * squares
            for b, squares in squares_by_paths(permeability).items()}


def parameter_counts(supernet) -> dict[int, int]:
    """Parameter count of ``derive(supernet, b)`` for every b in [1, W].

    Counted from the layers: every layer but the first stack's membrane
    layers keeps its parameters (other stacks at one path, or with
    ``shared_paths`` at min(b, W_s) paths each, counted alike); each membrane
    layer becomes a ``PathDense`` with ``sum(w_i^2)`` weights in its blocks
    and W biases. The squares are updated one cut at a time in permeability
    order, so the whole map costs O(W log W) and builds no model.

    Args:
        supernet: A built ``Supernet``.

    Returns:
        ``{b: parameters}`` for b = 1 .. W, strictly decreasing in b.

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=2, width=5, seed=0)
        >>> counts = parameter_counts(net)
        >>> counts[1] == net.count_params() - 4  # the supernet also holds omega
        True
    """
    stacks = range(len(supernet.stacks) if supernet.shared_paths else 1)
    split = {name for s in stacks for name in supernet.stacks[s]}
    fixed = sum(layer.count_params() for layer in supernet.chain if layer.name not in split)
    fixed += supernet.trunk.count_params() if supernet.trunk is not None else 0
    counts = {b: fixed for b in range(1, supernet.width + 1)}
    for s in stacks:
        # a block of w neurons holds w^2 weights per kernel tap (kh * kw of a
        # convolution, 1 of a Dense layer); biases do not depend on the paths
        membranes = [supernet.get_layer(name) for name in supernet.stacks[s]]
        taps = sum(int(np.prod(getattr(l, "kernel_size", (1,)))) for l in membranes)
        biases = sum(supernet.widths[s] for l in membranes if getattr(l, "use_bias", True))
        squares = squares_by_paths(
            keras.ops.convert_to_numpy(supernet.membrane_permeability(s)))
        for b in counts:
            counts[b] += biases + taps * squares[min(b, supernet.widths[s])]
    return counts


def derive(supernet, paths: int | tuple[int, ...] | None = None,
           implementation: str = "batch_matmul",
           *, lam: float | None = None) -> keras.Model:
    """Build the standalone multipath network with ``paths`` paths (or at ``lam``).

    Every membrane layer becomes a ``PathDense`` holding only its diagonal
    blocks (named ``path_<dense layer>``); every other layer is copied with
    its weights. The result gives
    the same outputs as ``supernet(x, permeability=P)`` with P the {0, 1}
    matrix of the derived layout (up to float rounding, <= 1e-5 in float32).

    The layout: for ``paths``, the paper's ranking (the ``paths - 1`` least
    permeable membranes cut); for a supernet with a trade-off (``gate``)
    without ``paths``, its gates (membranes with logit <= 0 cut), for a
    hypernetwork those it gives at ``lam`` (``mpath_tf.core.gates``).

    Args:
        supernet: A built (usually trained) ``Supernet``.
        paths: Path count b in [1, W]; 1 gives the equivalent dense model. For
            a supernet of several stacks, one count per stack (a tuple), or
            one count for the first stack (the others keep one path).
        implementation: How ``PathDense`` computes (``"batch_matmul"`` to
            train, ``"per_path"`` as exported; same weights, same function).
        lam: Trade-off of a hypernetwork (>= 0).

    Returns:
        A functional ``keras.Model`` named ``<supernet name>-b<paths>``.

    Raises:
        ValueError: If ``paths`` is outside [1, W], or the supernet cannot
            derive the layout asked for (``lam`` for a paper supernet, no
            ``paths`` for one without gates, a negative ``lam``).

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=3, width=6, seed=0)
        >>> model = derive(net, paths=3)
        >>> model.count_params() == parameter_counts(net)[3]
        True
    """
    return _derive_chain(supernet, paths, implementation, lam)


def with_implementation(model: keras.Model, implementation: str | dict[str, str]) -> keras.Model:
    """A copy of ``model`` whose ``PathDense`` layers use ``implementation``.

    The weights are shared layouts, so they are copied unchanged and the copy
    computes the same function.

    Args:
        model: A functional model, such as one returned by ``derive``.
        implementation: ``"batch_matmul"``, ``"per_path"`` or ``"conv"``, or a
            dict from layer name to one of those (layers not named keep theirs).

    Returns:
        The new model (``model`` itself if nothing changes).

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=2, width=4, seed=0)
        >>> model = with_implementation(derive(net, 2), "per_path")
        >>> model.get_layer("path_dense_1").implementation
        'per_path'
    """
    layers = [l for l in model.layers if isinstance(l, PathDense)]
    wanted = (implementation if isinstance(implementation, dict)
              else {l.name: implementation for l in layers})
    if all(l.implementation == wanted.get(l.name, l.implementation) for l in layers):
        return model

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, PathDense):
            config["implementation"] = wanted.get(layer.name, layer.implementation)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy



def with_conv_implementation(model: keras.Model, implementation: str | dict[str, str]
                             ) -> keras.Model:
    """A copy of ``model`` whose ``PathConv2D`` layers use ``implementation``
    (one for all, or ``{layer name: implementation}``; layers not named keep theirs).

    A path convolution's kernels are stored per run of its implementation,
    so the copy gets the same diagonal blocks and bias: the same function.
    ``"split"`` trains faster on CPU where paths of one width sit side by
    side (TensorFlow trains a grouped ``Conv2D`` there about 17x slower
    than the same paths as separate convolutions, measured on ResNet-8);
    ``"grouped"`` is what exports lower to one op per width.

    Args:
        model: A functional model, such as one returned by ``derive``.
        implementation: ``"grouped"`` or ``"split"``, or a dict of them by layer name.

    Returns:
        The new model (``model`` itself if nothing changes).

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((8, 8), num_classes=2, depth=3, width=4, seed=0, arch="cnn")
        >>> split = with_conv_implementation(derive(net, 2), "split")
        >>> {l.implementation for l in split.layers if isinstance(l, PathConv2D)}
        {'split'}
    """
    wanted = {l.name: (implementation.get(l.name, l.implementation)
                       if isinstance(implementation, dict) else implementation)
              for l in model.layers if isinstance(l, PathConv2D)}
    if all(l.implementation == wanted[l.name] for l in model.layers if l.name in wanted):
        return model

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, PathConv2D):
            config["implementation"] = wanted[layer.name]
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, copy.layers):
        if isinstance(old, PathConv2D):
            new.set_blocks(old.get_blocks(),
                           keras.ops.convert_to_numpy(old.bias) if old.use_bias else None)
        else:
            new.set_weights(old.get_weights())
    return copy

def _trunk(supernet: Supernet, inputs):
    """The supernet's trunk (a copy with its weights) applied to ``inputs``."""
    if supernet.trunk is None:
        return inputs
    trunk = keras.models.clone_model(supernet.trunk)
    trunk.set_weights(supernet.trunk.get_weights())
    return trunk(inputs)


def _copied(source, h):
    """A copy of chain layer ``source`` with its weights, applied to ``h``."""
    layer = source.__class__.from_config(source.get_config())
    h = layer(h)
    layer.set_weights(source.get_weights())
    return h


def _derive_chain(supernet: Supernet, paths, implementation: str, lam) -> keras.Model:
    layout = supernet.derived_layout(paths, lam)  # path widths per stack
    stack_of = {name: s for s, names in enumerate(supernet.stacks) for name in names}
    inputs = keras.Input(supernet.example_shape)

    def apply(source, h):
        if source.name in stack_of:
            widths = layout[stack_of[source.name]]
            name = "path_" + source.name.removeprefix("membrane_")
            if isinstance(source, MembraneConv2D):
                layer = PathConv2D(widths, source.kernel_size, strides=source.strides,
                                   padding=source.padding, dilation_rate=source.dilation_rate,
                                   activation=source.activation, use_bias=source.use_bias,
                                   implementation="split" if implementation == "per_path"
                                   else "grouped", name=name)
            else:
                layer = PathDense(widths, activation=source.activation,
                                  implementation=implementation, name=name)
            h = layer(h)
            kernel, *bias = source.get_weights()
            offsets = np.concatenate([[0], np.cumsum(widths)])
            # the diagonal blocks over the (in, out) axes, the last two of either kernel
            layer.set_blocks([kernel[..., lo:hi, lo:hi]
                              for lo, hi in zip(offsets[:-1], offsets[1:])], *bias)
            return h
        return _copied(source, h)

    h = run_chain(supernet.chain, _trunk(supernet, inputs), apply)
    counts = "x".join(str(len(widths)) for widths in layout)
    return keras.Model(inputs, h, name=f"{supernet.name}-b{counts}")


def to_dense(supernet) -> keras.Model:
    """The dense model of a supernet: every membrane layer a plain ``Dense``
    with its kernel and bias, no membrane applied (for ``to_supernet(model)``
    before training, the function of ``model``).

    The baseline a derived model is timed and compared against: the same
    layers, fully connected.

    Args:
        supernet: A built ``Supernet``.

    Returns:
        A functional ``keras.Model``: ``mlp-<depth>-<width>`` for the built-in
        supernet ``mpath-<depth>-<width>``, else ``<model name>-dense``.

    Example:
        >>> from mpath_tf import build_supernet
        >>> net = build_supernet((4,), num_classes=2, depth=3, width=6, seed=0)
        >>> to_dense(net).count_params() == parameter_counts(net)[1]
        True
    """
    inputs = keras.Input(supernet.example_shape)

    def apply(source, h):
        if isinstance(source, MembraneConv2D):
            layer = keras.layers.Conv2D(
                source.width, source.kernel_size, strides=source.strides, padding=source.padding,
                dilation_rate=source.dilation_rate, activation=source.activation,
                use_bias=source.use_bias, name=source.name.removeprefix("membrane_"))
        elif isinstance(source, MembraneDense):
            layer = keras.layers.Dense(source.width, activation=source.activation,
                                       name=source.name.removeprefix("membrane_"))
        else:
            return _copied(source, h)
        h = layer(h)
        layer.set_weights(source.get_weights())
        return h

    h = run_chain(supernet.chain, _trunk(supernet, inputs), apply)
    name = supernet.name.removesuffix("-supernet")
    name = "mlp-" + name.removeprefix("mpath-") if name.startswith("mpath-") else f"{name}-dense"
    return keras.Model(inputs, h, name=name)
