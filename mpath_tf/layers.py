"""Keras layers of a multipath network.

- ``MembraneDense``: the one-shot layer. A dense W -> W layer whose kernel is
  multiplied elementwise by a connection-permeability matrix P (Eq. 3). The
  membranes themselves (Omega) belong to the supernet, which computes P once per
  step and hands the same matrix to every ``MembraneDense`` layer, so all layers
  share one Omega variable.
- ``PathDense``: the derived layer. Independent paths of possibly unequal
  widths, stored as their diagonal blocks only (no zeros), computed one block
  per path so that TFLite sees one FULLY_CONNECTED op per path.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops


def _check_width(width, name: str = "width") -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 2:
        raise ValueError(
            f"`{name}` must be an integer >= 2 (a layer with one neuron has no "
            f"membrane to split). Received: {name}={width!r}"
        )
    return int(width)


@keras.saving.register_keras_serializable(package="mpath_tf")
class MembraneDense(keras.layers.Layer):
    """Hidden-to-hidden dense layer gated by membrane permeabilities (Eq. 3).

    ``outputs = activation(inputs @ (kernel * permeability) + bias)``, where
    ``permeability`` is the (W, W) connection-permeability matrix of Eq. 2
    (see ``mpath_tf.permeability``), passed at call time so that one set of
    membranes can gate every layer of a supernet.

    Args:
        width: Number of input and output neurons W (>= 2).
        activation: Activation name or callable; ``None`` means linear.
        kernel_initializer: Initializer of the (W, W) kernel.
        bias_initializer: Initializer of the (W,) bias.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``...).

    Raises:
        ValueError: If ``width`` < 2, or (in ``build``) the input width is not W.

    Example:
        >>> import numpy as np
        >>> layer = MembraneDense(3, activation=None)
        >>> x = np.ones((2, 3), dtype="float32")
        >>> tuple(layer(x, np.eye(3, dtype="float32")).shape)
        (2, 3)
    """

    def __init__(
        self,
        width: int,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.width = _check_width(width)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] != self.width:
            raise ValueError(
                f"MembraneDense(width={self.width}) expects inputs of width "
                f"{self.width}, the width of the layer before it. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.width, self.width),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.width,), initializer=self.bias_initializer
        )

    def call(self, inputs, permeability):
        # (batch, W) @ (W, W): Eq. 3 applied to the whole kernel at once.
        outputs = ops.matmul(inputs, self.kernel * permeability) + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape, permeability_shape=None):
        return tuple(input_shape[:-1]) + (self.width,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "width": self.width,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mpath_tf")
class PathDense(keras.layers.Layer):
    """Block-diagonal dense layer: independent paths, diagonal blocks only.

    Path ``k`` maps input neurons ``offsets[k] : offsets[k] + widths[k]`` to the
    same output neurons through its own ``(widths[k], widths[k])`` block. The
    blocks are stored back to back in one flat ``kernel`` variable of length
    ``sum(w**2)``; no zero is stored, so ``count_params()`` is
    ``sum(w**2 for w in widths) + sum(widths)``.

    Args:
        path_widths: Width of each path, in neuron order; each >= 1, at least one
            path. Their sum is the layer width W.
        activation: Activation name or callable; ``None`` means linear.
        kernel_initializer: Initializer of the flat kernel.
        bias_initializer: Initializer of the (W,) bias.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: If a path width is not a positive integer, or (in ``build``)
            the input width is not ``sum(path_widths)``.

    Example:
        >>> import numpy as np
        >>> layer = PathDense([2, 1])
        >>> tuple(layer(np.ones((4, 3), dtype="float32")).shape)
        (4, 3)
        >>> layer.count_params()
        8
    """

    def __init__(
        self,
        path_widths: Sequence[int],
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        widths = list(path_widths) if not isinstance(path_widths, (int, str)) else None
        if not widths or any(
            isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1
            for w in widths
        ):
            raise ValueError(
                "`path_widths` must be a non-empty list of positive integers, one "
                f"per path. Received: path_widths={path_widths!r}"
            )
        self.path_widths = [int(w) for w in widths]
        self.width = sum(self.path_widths)
        self.offsets = np.concatenate([[0], np.cumsum(self.path_widths)]).tolist()
        sizes = [w * w for w in self.path_widths]
        self.kernel_offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] != self.width:
            raise ValueError(
                f"PathDense path widths {self.path_widths} sum to {self.width}, but "
                f"the input has width {input_shape[-1]}; the path widths must sum "
                f"to the width of the layer before it. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_offsets[-1],),
            initializer=self._init_blocks,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.width,), initializer=self.bias_initializer
        )

    def _init_blocks(self, shape, dtype=None):
        # Initialize each block as the (w, w) matrix it is, so fan-in based
        # initializers see the path width, not the length of the flat vector.
        blocks = [
            ops.reshape(self.kernel_initializer((w, w), dtype=dtype), (-1,))
            for w in self.path_widths
        ]
        return ops.concatenate(blocks, axis=0)

    def block(self, k: int):
        """The (w_k, w_k) kernel block of path ``k``."""
        w = self.path_widths[k]
        start = self.kernel_offsets[k]
        return ops.reshape(self.kernel[start : start + w * w], (w, w))

    def call(self, inputs):
        outputs = []
        for k, w in enumerate(self.path_widths):
            lo = self.offsets[k]
            # (batch, w) @ (w, w) + (w,): one FULLY_CONNECTED per path in TFLite.
            y = ops.matmul(inputs[..., lo : lo + w], self.block(k))
            outputs.append(y + self.bias[lo : lo + w])
        outputs = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.width,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "path_widths": list(self.path_widths),
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
