"""The graph of a functional Keras model, read in one place.

Keras 3 keeps a model's graph in private attributes (a layer's
``_inbound_nodes``: one node per call; a tensor's ``_keras_history``: the
layer and node that made it). Every graph walk of mpath-tf (supernet
construction in ``core.supernet``, activation-range equalization and the
lowerings in ``converters``) reads them through these functions only, so a
change in Keras is met here once. Rebuilding a model with other layers is
``keras.models.clone_model(clone_function=...)`` where a layer maps to one
layer (``core.derivation``), and ``converters.lowering``'s rebuild where the
graph itself changes.
"""

from __future__ import annotations

import keras


def calls(layer: keras.layers.Layer) -> list:
    """The nodes of ``layer``: one per call in the models it belongs to (a
    layer called once, as nearly every layer is, has one).

    Example:
        >>> x = keras.Input((3,))
        >>> dense = keras.layers.Dense(2)
        >>> model = keras.Model(x, dense(x))
        >>> len(calls(dense))
        1
    """
    return list(layer._inbound_nodes)


def only_call(layer: keras.layers.Layer):
    """The node of a layer called once, else None (a shared layer, or one
    never called)."""
    nodes = layer._inbound_nodes
    return nodes[0] if len(nodes) == 1 else None


def producer(tensor) -> tuple:
    """(layer, node) that made a symbolic ``tensor`` of a functional model."""
    layer, node_index, _ = tensor._keras_history
    return layer, layer._inbound_nodes[node_index]


def consumers(model: keras.Model) -> dict[int, list]:
    """The layers that read each tensor of ``model``, by ``id(tensor)``
    (a layer appears once per call that reads the tensor).

    Example:
        >>> x = keras.Input((3,))
        >>> a, b = keras.layers.Dense(2), keras.layers.Dense(2)
        >>> model = keras.Model(x, keras.layers.Add()([a(x), b(x)]))
        >>> [layer.name for layer in consumers(model)[id(x)]] == [a.name, b.name]
        True
    """
    readers: dict[int, list] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                readers.setdefault(id(tensor), []).append(layer)
    return readers


def has_graph(model) -> bool:
    """Whether ``model`` is a model with a layer graph (Functional or
    Sequential), not a subclassed one."""
    return isinstance(model, keras.Model) and hasattr(model, "_inbound_nodes") and bool(
        getattr(model, "outputs", None))
