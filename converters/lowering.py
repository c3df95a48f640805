"""Export-time rewrites of block-diagonal layers, before conversion.

``group_paths`` renumbers the hidden neurons so that paths of equal width sit
side by side, in the same order in every block-diagonal layer. The function
does not change (ReLU is elementwise, so a permutation commutes with it; the
layers around absorb it in their weights), but the batched lowerings then need
no GATHER, an op XNNPACK does not take and that would split the graph.
"""

from __future__ import annotations

import keras
import numpy as np

from mpath_tf.layers import PathDense


def _chain(model):
    """(first Dense, [PathDense...], next Dense) if ``model`` is such a chain, else None."""
    layers = [l for l in model.layers if not isinstance(l, (keras.layers.InputLayer, keras.layers.Flatten))]
    paths = [i for i, l in enumerate(layers) if isinstance(l, PathDense)]
    if not paths or paths != list(range(paths[0], paths[-1] + 1)):
        return None
    before, after = paths[0] - 1, paths[-1] + 1
    if before < 0 or after >= len(layers):
        return None
    first, last = layers[before], layers[after]
    blocks = [layers[i] for i in paths]
    if not (isinstance(first, keras.layers.Dense) and isinstance(last, keras.layers.Dense)):
        return None
    if any(b.path_widths != blocks[0].path_widths for b in blocks):
        return None
    return first, blocks, last


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
    order = sorted(range(len(widths)), key=lambda k: (widths[k], k))
    if order == list(range(len(widths))):
        return model
    offsets = np.concatenate([[0], np.cumsum(widths)])
    perm = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in order])  # new -> old neuron

    inputs = keras.Input(model.input_shape[1:])
    h = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer is first:
            new = keras.layers.Dense.from_config(layer.get_config())
            h = new(h)
            kernel, bias = layer.get_weights()
            new.set_weights([kernel[:, perm], bias[perm]])
        elif isinstance(layer, PathDense):
            config = layer.get_config() | {"path_widths": [widths[k] for k in order]}
            new = PathDense.from_config(config)
            h = new(h)
            old_blocks = layer.get_blocks()
            bias = keras.ops.convert_to_numpy(layer.bias)
            new.set_blocks([old_blocks[k] for k in order], bias[perm])
        elif layer is last:
            new = keras.layers.Dense.from_config(layer.get_config())
            h = new(h)
            kernel, bias = layer.get_weights()
            new.set_weights([kernel[perm, :], bias])
        else:
            new = layer.__class__.from_config(layer.get_config())
            h = new(h)
            new.set_weights(layer.get_weights())
    return keras.Model(inputs, h, name=model.name)
