"""Activation-range equalization before full-integer quantization.

Full int8 gives every activation tensor one scale: a hidden layer whose
neurons reach very different values is rounded to steps sized for its largest
neuron, and its small neurons keep only a few levels. ReLU is positively
homogeneous (``relu(s * z) = s * relu(z)`` for ``s > 0``), so a neuron's
incoming weights and bias can be multiplied by ``s`` and its outgoing weights
divided by ``s`` without changing the float function (Nagel et al., 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction",
section 4.1, here applied to activation ranges measured on the calibration
data). ``equalize_ranges`` scales each neuron ``j`` of a hidden layer by
``s_j = (R / r_j) ** strength``, where ``r_j`` is the neuron's largest
activation on the calibration examples and ``R`` the layer's. ``strength`` 1
gives every neuron the full range, but the divided outgoing weights then lose
int8 weight precision; 0.5 splits the difference and measured best on MNIST
(``benchmarks/parity.py``; docs/results.md, "Parity").

Only the weights change: the equalized model has the same layers, so lowering
and the parameter count are unchanged. Layers whose int8 weights get one scale
for the whole tensor (the constant operand of BATCH_MATMUL, ``convert`` passes
them as ``keep``) are left alone: rescaling their rows or columns spreads the
weights over one int8 range and costs more than the activations gain
(measured on MNIST, 2 paths: p99 4.4 -> 27 output steps).
"""

from __future__ import annotations

import numpy as np

from mpath_tf.core import graph
from mpath_tf.errors import ConfigError
import keras
from mpath_tf.core.layers import PathDense

# Examples the neuron ranges are measured on (the converter's own calibration
# takes Int8.num_samples, 200 by default): a neuron that is rarely active
# needs more than 200 examples to show its range, and a range measured too
# small would scale the neuron into clipping. Forward passes only, so cheap.
RANGE_SAMPLES = 2000

# Largest factor one neuron is scaled by: keeps a nearly dead neuron (largest
# activation ~1e-9 of the layer's) from getting huge incoming weights.
MAX_SCALE = 1e3


def _relu_chain(model, keep=()) -> list[tuple]:
    """Pairs (layer, next layer) where ``layer`` is a ReLU Dense or PathDense
    whose output feeds only ``next layer``, a Dense or PathDense, and neither
    is named in ``keep``."""
    kinds = (keras.layers.Dense, PathDense)
    readers = graph.consumers(model)
    pairs = []
    for layer in model.layers:
        if not isinstance(layer, kinds) or layer.activation is not keras.activations.relu:
            continue
        if graph.only_call(layer) is None or layer.name in keep:
            continue  # a shared layer: scaling it would change its other uses
        after = readers.get(id(layer.output), [])
        if (len(after) == 1 and isinstance(after[0], kinds)
                and graph.only_call(after[0]) is not None and after[0].name not in keep):
            pairs.append((layer, after[0]))
    return pairs


def _scale_outputs(layer, s: np.ndarray) -> None:
    """Multiply the incoming weights and bias of every output neuron by ``s``."""
    if isinstance(layer, PathDense):
        bias = layer.get_weights()[1]
        layer.set_blocks([b * s[o:o + b.shape[1]][None, :]  # (w_k, w_k), (in, out)
                          for b, o in zip(layer.get_blocks(), layer.offsets)], bias * s)
    else:
        kernel, bias = layer.get_weights()  # (in, out), (out,)
        layer.set_weights([kernel * s[None, :], bias * s])


def _scale_inputs(layer, s: np.ndarray) -> None:
    """Divide the weights each input neuron feeds by ``s``."""
    if isinstance(layer, PathDense):
        layer.set_blocks([b / s[o:o + b.shape[0]][:, None]
                          for b, o in zip(layer.get_blocks(), layer.offsets)])
    else:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel / s[:, None], bias])


def equalize_ranges(model, x: np.ndarray, strength: float = 0.5, keep=()):
    """A copy of ``model`` whose ReLU layers' neurons have more equal ranges.

    Each hidden layer that is a ReLU ``Dense`` or ``PathDense`` feeding only
    another ``Dense`` or ``PathDense`` has its neurons rescaled as the module
    docstring explains; other layers are left as they are. The copy computes
    the same function in float (to float32 rounding).

    Args:
        model: A functional Keras model (``model`` is not changed).
        x: Calibration examples, (n, *input_shape); ``convert`` passes
            ``RANGE_SAMPLES`` training examples.
        strength: Exponent of the scale, in [0, 1]; 0 returns ``model``.
        keep: Names of layers whose weights must not change (and so are not
            rescaled on either side).

    Returns:
        The equalized copy (or ``model`` itself when nothing is rescaled).

    Raises:
        ConfigError: If ``strength`` is outside [0, 1] or ``x`` is empty.

    Example:
        >>> import numpy as np
        >>> from mpath_tf import build_supernet, derive
        >>> model = derive(build_supernet((4,), 2, depth=3, width=6, seed=0), 3)
        >>> x = np.random.default_rng(0).random((32, 4), dtype="float32")
        >>> same = equalize_ranges(model, x)
        >>> bool(np.allclose(same.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6))
        True
    """
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(
            f"Range equalization strength must be in [0, 1] (0 turns it off). "
            f"Received: {strength}"
        )
    if len(x) == 0:
        raise ConfigError("Range equalization needs calibration examples; received none.")
    if strength == 0.0 or not _relu_chain(model, keep):
        return model
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    pairs = _relu_chain(copy, keep)
    # One forward pass gives every layer's ranges: rescaling a layer leaves the
    # outputs of every other layer unchanged (the next one divides it back).
    outputs = keras.Model(copy.inputs, [layer.output for layer, _ in pairs]).predict(
        x, batch_size=1024, verbose=0)
    for (layer, after), activations in zip(pairs, outputs):
        r = activations.reshape(-1, activations.shape[-1]).max(axis=0)  # (neurons,)
        live = r > 0
        if not live.any():
            continue
        s = np.ones_like(r, dtype="float64")
        s[live] = np.minimum((r.max() / r[live]) ** strength, MAX_SCALE)
        s = s.astype("float32")
        _scale_outputs(layer, s)
        _scale_inputs(after, s)
    return copy
