"""Export-time rewrites of block-diagonal layers, before conversion.

``group_paths`` renumbers the hidden neurons so that paths of equal width sit
side by side, in the same order in every block-diagonal layer. The function
does not change (ReLU is elementwise, so a permutation commutes with it; the
layers around absorb it in their weights), but the batched lowerings then need
no GATHER, an op XNNPACK does not take and that would split the graph.

``pad_paths`` widens each path to its bucket's width with neurons whose
weights and bias are zero (``bucket_edges`` chooses the buckets): the paths
of a bucket then have equal widths and run as one grouped op per layer.
Those zeros are the only ones a lowering adds to a file (``padding_weights``).
"""

from __future__ import annotations

from itertools import combinations

import keras
import numpy as np

from mpath_tf.core import graph
from mpath_tf.core.layers import PathChain, PathDense
from mpath_tf.core.conv import PathConv2D
from mpath_tf.core.supernet import ResidualJoin


def path_stack(model) -> list[PathDense] | None:
    """The ``PathDense`` layers of ``model`` if they follow one another and
    share their path widths (what ``chain_paths`` replaces), else None."""
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    found = [i for i, l in enumerate(layers) if isinstance(l, PathDense)]
    if not found or found != list(range(found[0], found[-1] + 1)):
        return None
    blocks = [layers[i] for i in found]
    if any(b.path_widths != blocks[0].path_widths for b in blocks):
        return None
    return blocks


def _chain(model):
    """(first Dense, [PathDense...], next Dense) if ``model`` is such a chain, else None."""
    blocks = path_stack(model)
    if blocks is None:
        return None
    layers = [l for l in model.layers if not isinstance(l, (keras.layers.InputLayer, keras.layers.Flatten))]
    before, after = layers.index(blocks[0]) - 1, layers.index(blocks[-1]) + 1
    if before < 0 or after >= len(layers):
        return None
    first, last = layers[before], layers[after]
    if not (isinstance(first, keras.layers.Dense) and isinstance(last, keras.layers.Dense)):
        return None
    return first, blocks, last


def paddable(model) -> bool:
    """Whether ``pad_paths`` applies: Dense -> PathDense stack -> Dense."""
    return _chain(model) is not None


def neighbour_weights(model) -> int:
    """Weights one padded neuron adds outside the stack (``pad_paths``): its
    column and bias in the Dense layer before, its row in the one after."""
    chain = _chain(model)
    if chain is None:
        return 0
    first, _, last = chain
    return first.get_weights()[0].shape[0] + 1 + last.get_weights()[0].shape[1]


def padded_widths(path_widths, edges) -> list[int]:
    """Each path's width raised to the smallest bucket edge that holds it.

    Example:
        >>> padded_widths([3, 5, 4, 9], [5, 9])
        [5, 5, 5, 9]
    """
    edges = np.sort(np.asarray(edges, dtype=np.int64))
    widths = np.asarray(path_widths, dtype=np.int64)
    at = np.searchsorted(edges, widths)  # the first edge >= each width
    if widths.size and (at >= len(edges)).any():
        raise ValueError(f"A path of width {int(widths.max())} fits no bucket edge of {edges.tolist()}")
    return edges[at].tolist()


def padding_weights(path_widths, edges, depth: int) -> int:
    """Zero kernel weights that padding to ``edges`` adds to a stack of
    ``depth`` block-diagonal layers (the neighbouring Dense layers' zero
    rows and columns are counted by ``pad_paths``'s caller, see
    ``stack_padding``).

    Example:
        >>> padding_weights([3, 5], [5], depth=2)
        32
    """
    return depth * sum(p * p - w * w for w, p in zip(path_widths, padded_widths(path_widths, edges)))


def bucket_edges(path_widths, cost, max_buckets: int = 4) -> list[int]:
    """The bucket edges (ascending widths) whose padded widths ``cost`` least.

    Every contiguous partition of the sorted distinct widths into at most
    ``max_buckets`` buckets is tried (a bucket's edge is its widest path);
    with many distinct widths, the candidate edges are thinned to quantiles
    first so the search stays small.

    Args:
        path_widths: The paths' widths.
        cost: ``cost(padded_widths) -> float``, for example the profiled
            cost of the ``conv`` lowering.
        max_buckets: Most buckets (ops per layer).

    Returns:
        The edges; the distinct widths themselves when padding does not pay.

    Example:
        >>> bucket_edges([1, 2, 2, 3, 8], lambda ws: len(set(ws)) * 20 + sum(w * w for w in ws))
        [3, 8]
    """
    distinct = sorted(set(int(w) for w in path_widths))
    inner = distinct[:-1]
    if len(inner) > 24:  # thin to quantiles: C(24, 3) = 2024 candidates at most
        inner = sorted(set(int(np.quantile(inner, q)) for q in np.linspace(0, 1, 24)))
    best = (cost(list(path_widths)), distinct)  # no padding
    for k in range(min(max_buckets, len(distinct))):  # k inner edges: k + 1 buckets
        for cut in combinations(inner, k):
            edges = [*cut, distinct[-1]]
            value = cost(padded_widths(path_widths, edges))
            if value < best[0] - 1e-12:
                best = (value, edges)
    return list(best[1])


def pad_paths(model: keras.Model, edges) -> keras.Model:
    """The same function with every path widened to its bucket's edge.

    Applies to models shaped like ``derive``'s output (Dense -> PathDense x k
    with shared path widths -> Dense) whose block-diagonal activation maps 0
    to 0 (ReLU, tanh, linear): a padded neuron gets zero weights in and out
    and a zero bias, so it stays 0 and changes nothing. Other models are
    returned as they are.

    Args:
        model: A functional Keras model.
        edges: Bucket widths (``bucket_edges``); every path width must fit.

    Returns:
        A new model with path widths ``padded_widths(widths, edges)`` (or
        ``model`` when nothing is padded).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> model = derive(build_supernet((4,), 2, depth=3, width=6, seed=0), 3)
        >>> widths = model.get_layer("path_dense_1").path_widths
        >>> padded = pad_paths(model, [max(widths)])
        >>> padded.get_layer("path_dense_1").path_widths == [max(widths)] * 3
        True
    """
    chain = _chain(model)
    if chain is None:
        return model
    first, blocks, last = chain
    widths = blocks[0].path_widths
    if max(widths) > max(edges):
        raise ValueError(f"bucket edges {sorted(edges)} do not hold a path of width {max(widths)}")
    target = padded_widths(widths, edges)
    zero = keras.ops.convert_to_numpy(blocks[0].activation(keras.ops.zeros((1,))))
    if target == list(widths) or np.any(zero != 0):
        return model
    new = np.concatenate([[0], np.cumsum(target)])
    keep = np.concatenate([np.arange(new[k], new[k] + w) for k, w in enumerate(widths)])
    size = int(new[-1])  # the padded width; keep[i]: new position of old neuron i

    kernel, bias = first.get_weights()
    first_kernel = np.zeros((kernel.shape[0], size), kernel.dtype)
    first_bias = np.zeros(size, bias.dtype)
    first_kernel[:, keep], first_bias[keep] = kernel, bias

    def padded_blocks(layer):
        padded = []
        for block, w, p in zip(layer.get_blocks(), widths, target):
            b = np.zeros((p, p), block.dtype)
            b[:w, :w] = block
            padded.append(b)
        bias = np.zeros(size, np.float32)
        bias[keep] = keras.ops.convert_to_numpy(layer.bias)
        return padded, bias

    kernel, bias = last.get_weights()
    last_kernel = np.zeros((size, kernel.shape[1]), kernel.dtype)
    last_kernel[keep] = kernel
    return _rebuild_chain(model, chain, [first_kernel, first_bias], target, padded_blocks,
                          [last_kernel, bias])


def stack_padding(model: keras.Model, edges) -> int:
    """All zero parameters ``pad_paths(model, edges)`` adds: the blocks'
    padding and bias entries, the zero columns and bias entries of the Dense
    layer before the stack and the zero rows of the one after it (0 for a
    model it does not apply to).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> model = derive(build_supernet((4,), 2, depth=3, width=6, seed=0), 3)
        >>> edges = [max(model.get_layer("path_dense_1").path_widths)]
        >>> stack_padding(model, edges) == (pad_paths(model, edges).count_params()
        ...                                 - model.count_params())
        True
    """
    chain = _chain(model)
    if chain is None:
        return 0
    first, blocks, last = chain
    widths = blocks[0].path_widths
    extra = sum(padded_widths(widths, edges)) - sum(widths)
    return (padding_weights(widths, edges, len(blocks)) + len(blocks) * extra
            + extra * (first.get_weights()[0].shape[0] + 1) + extra * last.get_weights()[0].shape[1])


def width_order(path_widths) -> tuple[list[int], np.ndarray | None]:
    """The paths sorted by width (stable) and the neuron permutation that
    puts them so (new neuron -> old neuron; None when already sorted).

    Example:
        >>> order, perm = width_order([2, 1])
        >>> order, perm.tolist()
        ([1, 0], [2, 0, 1])
    """
    order = sorted(range(len(path_widths)), key=lambda k: (path_widths[k], k))
    if order == list(range(len(path_widths))):
        return order, None
    offsets = np.concatenate([[0], np.cumsum(path_widths)])
    return order, np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in order])


def group_paths(model: keras.Model) -> keras.Model:
    """The same function with each width's paths contiguous (no permutation).

    Applies to models shaped like ``derive``'s output: Dense -> PathDense x k
    (all with the same path widths) -> Dense. Other models are returned as
    they are.

    Args:
        model: A functional Keras model.

    Returns:
        A new model (or ``model`` when nothing needs to move).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> model = derive(build_supernet((4,), 2, depth=3, width=6, seed=0), 3)
        >>> grouped = group_paths(model)
        >>> [l.path_widths for l in grouped.layers if hasattr(l, "path_widths")] == [
        ...     sorted(model.get_layer("path_dense_1").path_widths)] * 2
        True
    """
    chain = _chain(model)
    if chain is None:
        return model
    first, blocks, last = chain
    widths = blocks[0].path_widths
    order, perm = width_order(widths)
    if perm is None:
        return model

    kernel, bias = first.get_weights()
    first_weights = [kernel[:, perm], bias[perm]]

    def regrouped(layer):
        old_blocks = layer.get_blocks()
        return [old_blocks[k] for k in order], keras.ops.convert_to_numpy(layer.bias)[perm]

    kernel, bias = last.get_weights()
    return _rebuild_chain(model, chain, first_weights, [widths[k] for k in order], regrouped,
                          [kernel[perm, :], bias])


def _rebuild_chain(model, chain, first_weights, path_widths, blocks_of,
                   last_weights) -> keras.Model:
    """``model`` rebuilt with new weights around and in its stack
    (``chain = _chain(model)``): the Dense before it gets ``first_weights``
    (its units follow the kernel), every ``PathDense`` ``path_widths`` and
    ``blocks_of(old layer)`` (blocks, bias), the Dense after it
    ``last_weights``; other layers are copied (``clone_model``: one new
    layer per layer)."""
    first, _, last = chain

    def clone(layer):
        config = layer.get_config()
        if layer is first:
            config |= {"units": int(first_weights[0].shape[1])}
        elif isinstance(layer, PathDense):
            config |= {"path_widths": list(path_widths)}
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue  # made anew, under another name
        new = copy.get_layer(layer.name)
        if layer is first:
            new.set_weights(first_weights)
        elif isinstance(layer, PathDense):
            new.set_blocks(*blocks_of(layer))
        elif layer is last:
            new.set_weights(last_weights)
        elif layer.weights:
            new.set_weights(layer.get_weights())
    return copy


def chain_paths(model: keras.Model, implementation: str) -> keras.Model:
    """Replace a stack of ``PathDense`` layers with one ``PathChain``.

    Applies to models whose ``PathDense`` layers follow one another with the
    same path widths (``path_stack``), as in ``derive``'s output; others are
    returned unchanged. For ``conv`` and ``batch_matmul``, call
    ``group_paths`` first (or give sorted path widths).

    Args:
        model: A functional Keras model.
        implementation: ``per_path``, ``conv`` or ``batch_matmul``.

    Returns:
        A new model computing the same function (or ``model``).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> model = group_paths(derive(build_supernet((4,), 2, depth=3, width=6, seed=0), 3))
        >>> [l.__class__.__name__ for l in chain_paths(model, "conv").layers][-2:]
        ['PathChain', 'Dense']
    """
    blocks = path_stack(model)
    if blocks is None or (implementation != "per_path" and not blocks[0]._identity
                          and len(blocks[0].path_widths) > 1):
        return model
    # rebuilt by hand: k layers become one PathChain (clone_model maps each layer to one)
    inputs = keras.Input(model.input_shape[1:])
    h = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or (
                isinstance(layer, PathDense) and layer is not blocks[0]):
            continue
        if layer is blocks[0]:
            new = PathChain(layer.path_widths, len(blocks), layer.activation, implementation,
                            name="path_chain")
            h = new(h)
            for source, target in zip(blocks, new.blocks):
                target.kernel.assign(source.kernel)
                target.bias.assign(source.bias)
        else:
            new = layer.__class__.from_config(layer.get_config())
            h = new(h)
            new.set_weights(layer.get_weights())
    return keras.Model(inputs, h, name=model.name)


# Layers that keep channel i at position i and hold no weights: a stage's
# channels may be renumbered across them.
_CHANNELWISE = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Activation,
                keras.layers.ReLU, keras.layers.Dropout, keras.layers.SpatialDropout2D,
                keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _take(array, perm, axis: int):
    return array if perm is None else np.take(array, perm, axis=axis)


def _channel_groups(model):
    """Tensor id -> id of its channel group: tensors whose channel i is the
    same channel (joined by channel-wise layers, path convolutions and
    residual adds), as a union-find ``find``; None if a layer has more than
    one call in ``model``."""
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    def union(a, b) -> None:
        parent[find(id(a))] = find(id(b))

    for layer in model.layers:
        node = graph.only_call(layer)
        if node is None:
            return None
        if isinstance(layer, keras.layers.InputLayer):
            continue
        ins, out = node.input_tensors, node.output_tensors[0]
        if isinstance(layer, ResidualJoin):
            union(ins[0], out)
            if not any(isinstance(l, keras.layers.Conv2D) for l in layer.shortcut):
                union(ins[1], out)
        elif isinstance(layer, (PathConv2D, keras.layers.BatchNormalization, *_CHANNELWISE)) or (
                type(layer) is keras.layers.DepthwiseConv2D and layer.depth_multiplier == 1):
            union(ins[0], out)
    return find


def _permuted(layer, new, p_in, p_out) -> bool:
    """Give ``new`` (a fresh copy of ``layer``) the weights of ``layer`` with
    input channels renumbered by ``p_in`` and output channels by ``p_out``
    (new -> old, None: as they are); False if ``layer`` cannot be."""
    weights = layer.get_weights()
    if p_in is None and p_out is None:
        new.set_weights(weights)
    elif isinstance(layer, PathConv2D):
        order, _ = width_order(layer.path_widths)
        old = layer.get_blocks()
        new.set_blocks([old[k] for k in order],
                       keras.ops.convert_to_numpy(layer.bias)[p_out] if layer.use_bias else None)
    elif isinstance(layer, keras.layers.BatchNormalization) or (
            type(layer) is keras.layers.DepthwiseConv2D):
        axis = lambda w: 2 if w.ndim == 4 else 0  # noqa: E731 (depthwise kernel: (kh, kw, C, 1))
        new.set_weights([_take(w, p_out, axis(w)) for w in weights])
    elif type(layer) is keras.layers.Conv2D and layer.groups == 1:
        kernel, *bias = weights
        new.set_weights([_take(_take(kernel, p_in, 2), p_out, 3), *(_take(b, p_out, 0) for b in bias)])
    elif type(layer) is keras.layers.Dense and p_out is None:
        kernel, *bias = weights
        new.set_weights([_take(kernel, p_in, 0), *bias])
    elif isinstance(layer, ResidualJoin):
        current = p_in
        for old, copy in zip(layer.shortcut, new.shortcut):
            if type(old) is keras.layers.Conv2D:
                if not _permuted(old, copy, current, p_out):
                    return False
                current = p_out
            elif not _permuted(old, copy, None, current):
                return False
    elif isinstance(layer, _CHANNELWISE) and not weights:
        pass
    else:
        return False
    return True


def _fresh_inputs(model) -> tuple[list, dict]:
    """New inputs for a rebuild of ``model`` and the tensor map starting from them."""
    inputs = [keras.Input(t.shape[1:]) for t in model.inputs]
    return inputs, {id(old): new for old, new in zip(model.inputs, inputs)}


def _call_like(layer, new, tensors: dict) -> None:
    """Call ``new`` as ``layer`` is called in its model, on the rebuilt tensors."""
    node = graph.calls(layer)[0]
    args, kwargs = node.arguments.fill_in(tensors)
    tensors[id(node.output_tensors[0])] = new(*args, **kwargs)


def _model_like(model, inputs: list, tensors: dict) -> keras.Model:
    outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                       outputs if len(outputs) > 1 else outputs[0], name=model.name)


def group_conv_paths(model: keras.Model) -> keras.Model:
    """The same function with each width's channel paths contiguous.

    ``derive`` keeps a CNN stage's paths in membrane order, so paths of one
    width are scattered and ``PathConv2D`` runs one convolution per run of
    adjacent equal widths. Renumbering each stage's channels by width leaves
    one convolution per distinct width: the channels of a stage (every tensor
    the stage's path convolutions, batch normalizations, channel-wise layers
    and residual adds join) are renumbered together, the layers that make
    them (a convolution, a residual block's projection shortcut) give their
    outputs in the new order, and the layers that take them (the next
    stage's convolutions, the classifier after the global pooling) take
    their inputs in it. Applies to derived ``build_cnn`` and ResNet models
    (the stages' path convolutions share their path widths); a model with a
    layer the renumbering cannot pass (a Flatten after a stage, say) is
    returned as it is.

    Args:
        model: A functional Keras model.

    Returns:
        A new model (or ``model`` when nothing needs to move).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> net = build_supernet((8, 8), 3, depth=3, width=6, seed=0, arch="cnn")
        >>> model = group_conv_paths(derive(net, 4))
        >>> [l.path_widths for l in model.layers if hasattr(l, "path_widths")][0] == sorted(
        ...     net.derived_widths(4))
        True
    """
    find = _channel_groups(model)
    if find is None:
        return model
    perms: dict[int, np.ndarray] = {}
    for layer in model.layers:
        if isinstance(layer, PathConv2D):
            group = find(id(layer.input))
            perm = width_order(layer.path_widths)[1]
            if group in perms and not np.array_equal(perms[group], perm):
                return model  # one stage, two path layouts: leave it
            if perm is not None:
                perms[group] = perm
    if not perms:
        return model
    if any(find(id(t)) in perms for t in [*model.inputs, *model.outputs]):
        return model  # the model's own input or output would be renumbered
    def regrouped(layer):  # the same layer, a path convolution's paths by width
        config = layer.get_config()
        if isinstance(layer, PathConv2D):
            order, _ = width_order(layer.path_widths)
            config = config | {"path_widths": [layer.path_widths[k] for k in order]}
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=regrouped)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = graph.calls(layer)[0]
        # a residual add's second input is its shortcut's; every other layer has one
        p_in = perms.get(find(id(node.input_tensors[-1])))
        if not _permuted(layer, copy.get_layer(layer.name), p_in,
                         perms.get(find(id(node.output_tensors[0])))):
            return model
    return copy


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """The same function (at inference) with every BatchNormalization that
    follows a ``PathConv2D`` folded into its blocks and bias, and an
    ``Activation`` right after it into its per-width convolutions.

    The converter folds a batch normalization into a CONV_2D it directly
    follows, but not into a path convolution's per-width convolutions and
    concatenation: there it stays as a MUL and an ADD over the whole
    feature map. Folded here: the kernel's output channel j is scaled by
    ``gamma_j / sqrt(var_j + eps)`` and its bias becomes ``(bias_j - mean_j)
    * scale_j + beta_j``. Applies to path convolutions with a bias and no
    activation whose output only the batch normalization takes (and the
    activation, only the batch normalization's output).

    Args:
        model: A functional Keras model.

    Returns:
        A new model (or ``model`` when there is nothing to fold).

    Example:
        >>> from mpath_tf import build_supernet, derive
        >>> net = build_supernet((8, 8), 3, depth=0, width=4, seed=0, arch="resnet8")
        >>> folded = fold_batch_norms(derive(net, 2))
        >>> any(isinstance(l, keras.layers.BatchNormalization) and l.name.startswith("stage1_b")
        ...     for l in folded.layers)
        False
    """
    users = graph.consumers(model)  # tensor id -> the layers that take it
    folds, activations = {}, {}  # path convolution's name -> the layer folded into it
    for layer in model.layers:
        node = graph.only_call(layer)
        if type(layer) is not keras.layers.BatchNormalization or node is None:
            continue
        source = node.input_tensors[0]
        conv = graph.producer(source)[0]
        if (isinstance(conv, PathConv2D) and conv.use_bias and len(users[id(source)]) == 1
                and keras.activations.serialize(conv.activation) in ("linear", None)
                and layer.axis in (-1, len(source.shape) - 1)):
            folds[conv.name] = layer
            after = users.get(id(node.output_tensors[0]), [])
            if len(after) == 1 and type(after[0]) is keras.layers.Activation:
                activations[conv.name] = after[0]  # then the activation runs per width too
    if not folds:
        return model
    folded = {id(l) for l in [*folds.values(), *activations.values()]}
    # rebuilt by hand: the folded layers are dropped (clone_model maps each layer to one)
    inputs, tensors = _fresh_inputs(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = graph.calls(layer)[0]
        if id(layer) in folded:  # its input is already normalized
            tensors[id(node.output_tensors[0])] = tensors[id(node.input_tensors[0])]
            continue
        config = layer.get_config()
        if layer.name in activations:
            config = config | {"activation": activations[layer.name].get_config()["activation"]}
        new = layer.__class__.from_config(config)
        _call_like(layer, new, tensors)
        new.set_weights(layer.get_weights())
        if layer.name in folds:
            bn = folds[layer.name]
            ones = np.ones(layer.width, "float32")
            value = lambda w, default: default if w is None else keras.ops.convert_to_numpy(w)  # noqa: E731
            scale = value(bn.gamma, ones) / np.sqrt(value(bn.moving_variance, ones) + bn.epsilon)
            shift = value(bn.beta, 0 * ones) - value(bn.moving_mean, 0 * ones) * scale
            offsets = layer.offsets
            blocks = [block * scale[offsets[k]:offsets[k + 1]]
                      for k, block in enumerate(layer.get_blocks())]
            new.set_blocks(blocks, keras.ops.convert_to_numpy(layer.bias) * scale + shift)
    return _model_like(model, inputs, tensors)
