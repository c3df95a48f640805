"""Keras layers of a multipath network.

- ``MembraneDense``: the one-shot layer. A dense W -> W layer whose kernel is
  multiplied elementwise by a connection-permeability matrix P (Eq. 3). The
  membranes themselves (Omega) belong to the supernet, which computes P once per
  step and hands the same matrix to every ``MembraneDense`` layer, so all layers
  share one Omega variable.
- ``PathDense``: the derived layer. Independent paths of possibly unequal
  widths, stored as their diagonal blocks only (no zeros), computed one block
  per path so that TFLite sees one FULLY_CONNECTED op per path.
- ``PathChain``: a stack of ``PathDense`` layers with the same paths, run
  path by path from the first layer to the last (``converters.lowering``
  swaps it in when that is the faster lowering).
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
    (see ``mpath_tf.core.permeability``), passed at call time so that one set of
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


IMPLEMENTATIONS = ("batch_matmul", "per_path", "conv")
# The name in files of earlier versions: "grouped" was batch_matmul (the word
# now means grouped convolutions only, ``PathConv2D``).
_OLD_IMPLEMENTATIONS = {"grouped": "batch_matmul"}

# XNNPACK takes a CONCATENATION with at most this many inputs (its source,
# tensorflow/lite/delegates/xnnpack); wider ones fall back to the reference
# kernel and split the graph into several delegate partitions.
MAX_CONCAT_INPUTS = 5


def concat_tree(tensors: list, fan_in: int = MAX_CONCAT_INPUTS):
    """Concatenate along the last axis with ops of at most ``fan_in`` inputs."""
    while len(tensors) > 1:
        tensors = [
            tensors[i] if len(tensors[i : i + fan_in]) == 1
            else ops.concatenate(tensors[i : i + fan_in], axis=-1)
            for i in range(0, len(tensors), fan_in)
        ]
    return tensors[0]


def _permute(x, perm, inverse):
    """``x[..., perm]`` whose gradient is a gather too (not a scatter-add)."""

    @ops.custom_gradient
    def forward(t):
        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.take(upstream, inverse, axis=-1)

        return ops.take(t, perm, axis=-1), grad

    return forward(x)


@keras.saving.register_keras_serializable(package="mpath_tf")
class PathDense(keras.layers.Layer):
    """Block-diagonal dense layer: independent paths, diagonal blocks only.

    Path ``k`` maps input neurons ``offsets[k] : offsets[k] + widths[k]`` to the
    same output neurons through its own ``(widths[k], widths[k])`` block. Only
    the blocks are stored, in one flat ``kernel`` variable; no zero is stored,
    so ``count_params()`` is ``sum(w**2 for w in widths) + sum(widths)``. Use
    ``get_blocks`` / ``set_blocks`` to read and write them in path order.

    Storage order: blocks are grouped by width (ascending), in path order
    within a width, so that all paths of one width form one contiguous
    ``(n, w, w)`` tensor.

    Three implementations compute the same function from the same weights;
    they differ in the ops TFLite lowers them to (``converters`` picks one),
    and are named after them:

    - ``"batch_matmul"`` (default): one batched matmul per distinct path width, with
      a permutation of the neurons around it (TFLite: GATHER, BATCH_MATMUL).
      Fast to train, even with hundreds of paths.
    - ``"per_path"``: one matmul per path (TFLite: one FULLY_CONNECTED per
      path), joined by a tree of concatenations of at most 5 inputs so that
      XNNPACK keeps them in one partition.
    - ``"conv"``: one grouped 1x1 convolution per distinct path width
      (TFLite: CONV_2D with groups).

    With a single path every implementation is one plain matmul.

    Args:
        path_widths: Width of each path, in neuron order; each >= 1, at least one
            path. Their sum is the layer width W.
        activation: Activation name or callable; ``None`` means linear.
        implementation: ``"batch_matmul"``, ``"per_path"`` or ``"conv"``
            (``"grouped"``, the name in files of earlier versions, is read as
            ``"batch_matmul"``).
        kernel_initializer: Initializer applied to each (w, w) block.
        bias_initializer: Initializer of the (W,) bias.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: If a path width is not a positive integer, the
            implementation is unknown, or (in ``build``) the input width is not
            ``sum(path_widths)``.

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
        implementation: str = "batch_matmul",
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
        implementation = _OLD_IMPLEMENTATIONS.get(implementation, implementation)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        self.path_widths = [int(w) for w in widths]
        self.implementation = implementation
        self.width = sum(self.path_widths)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._plan()

    def _plan(self):
        """Static index bookkeeping shared by both implementations."""
        widths = self.path_widths
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int).tolist()
        # Paths sorted by (width, position): the storage and grouping order.
        order = sorted(range(len(widths)), key=lambda k: (widths[k], k))
        self._groups = []  # (width, path indices, kernel start, neuron start)
        kernel_start = neuron_start = 0
        self._kernel_start = {}
        for w in sorted(set(widths)):
            paths = [k for k in order if widths[k] == w]
            self._groups.append((w, paths, kernel_start, neuron_start))
            for k in paths:
                self._kernel_start[k] = kernel_start
                kernel_start += w * w
            neuron_start += w * len(paths)
        self._kernel_size = kernel_start
        perm = np.concatenate(
            [np.arange(self.offsets[k], self.offsets[k] + widths[k]) for k in order]
        )
        self._perm = perm.astype("int32")  # grouped position -> neuron
        self._inverse = np.argsort(perm).astype("int32")  # neuron -> grouped position
        self._identity = bool(np.all(perm == np.arange(self.width)))

    def build(self, input_shape):
        if input_shape[-1] != self.width:
            raise ValueError(
                f"PathDense path widths {self.path_widths} sum to {self.width}, but "
                f"the input has width {input_shape[-1]}; the path widths must sum "
                f"to the width of the layer before it. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self._kernel_size,), initializer=self._init_blocks
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.width,), initializer=self.bias_initializer
        )

    def _init_blocks(self, shape, dtype=None):
        # Initialize each block as the (w, w) matrix it is, so fan-in based
        # initializers see the path width, not the length of the flat vector.
        blocks = [self.kernel_initializer((w, w), dtype=dtype) for w in self.path_widths]
        return ops.convert_to_tensor(self._flatten_blocks(blocks), dtype=dtype)

    def _flatten_blocks(self, blocks) -> np.ndarray:
        flat = np.zeros((self._kernel_size,), dtype="float32")
        for k, w in enumerate(self.path_widths):
            block = np.asarray(blocks[k], dtype="float32")
            if block.shape != (w, w):
                raise ValueError(
                    f"Block {k} must have shape ({w}, {w}). Received: {block.shape}"
                )
            start = self._kernel_start[k]
            flat[start : start + w * w] = block.reshape(-1)
        return flat

    def get_blocks(self) -> list[np.ndarray]:
        """The kernel blocks in path order, as NumPy arrays."""
        flat = keras.ops.convert_to_numpy(self.kernel)
        return [
            flat[self._kernel_start[k] : self._kernel_start[k] + w * w].reshape(w, w)
            for k, w in enumerate(self.path_widths)
        ]

    def set_blocks(self, blocks, bias=None) -> None:
        """Set the kernel blocks (path order) and optionally the bias.

        Raises:
            ValueError: If a block has the wrong shape.
        """
        self.kernel.assign(self._flatten_blocks(blocks))
        if bias is not None:
            self.bias.assign(np.asarray(bias, dtype="float32"))

    def block(self, k: int):
        """The (w_k, w_k) kernel block of path ``k``, as a tensor."""
        w = self.path_widths[k]
        start = self._kernel_start[k]
        return ops.reshape(self.kernel[start : start + w * w], (w, w))

    def _activate(self, x):
        return x if self.activation is None else self.activation(x)

    def _call_per_path(self, inputs):
        outputs = []
        for k, w in enumerate(self.path_widths):
            lo = self.offsets[k]
            # (batch, w) @ (w, w) + (w,), activated per path: one FULLY_CONNECTED
            # with a fused activation per path in TFLite (an elementwise
            # activation commutes with the concatenation).
            y = ops.matmul(inputs[..., lo : lo + w], self.block(k))
            outputs.append(self._activate(y + self.bias[lo : lo + w]))
        return concat_tree(outputs)

    def _group_kernels(self, kernel_start: int, n: int, w: int):
        """The (n, w, w) blocks of one width group, in grouped order."""
        return ops.reshape(self.kernel[kernel_start : kernel_start + n * w * w], (n, w, w))

    def _conv_kernel(self, kernel_start: int, n: int, w: int):
        """One width group as a grouped 1x1 conv kernel, (1, 1, w_in, n * w_out):
        output channel g*w + j of group g reads input channels g*w .. g*w + w - 1."""
        kernel = ops.transpose(self._group_kernels(kernel_start, n, w), (1, 0, 2))
        return ops.reshape(kernel, (1, 1, w, n * w))

    def _call_conv(self, inputs):
        x = inputs if self._identity else _permute(inputs, self._perm, self._inverse)
        outputs = []
        for w, paths, kernel_start, neuron_start in self._groups:
            n = len(paths)
            xs = ops.reshape(x[..., neuron_start : neuron_start + n * w], (-1, 1, 1, n * w))
            y = ops.conv(xs, self._conv_kernel(kernel_start, n, w), padding="valid")
            y = ops.reshape(y, (-1, n * w))
            if self._identity:  # bias and activation per group: fused into CONV_2D
                y = self._activate(y + self.bias[neuron_start : neuron_start + n * w])
            outputs.append(y)
        y = concat_tree(outputs)
        if self._identity:
            return y
        return self._activate(_permute(y, self._inverse, self._perm) + self.bias)

    def _call_grouped(self, inputs):
        x = inputs if self._identity else _permute(inputs, self._perm, self._inverse)
        outputs = []
        for w, paths, kernel_start, neuron_start in self._groups:
            n = len(paths)
            xs = ops.reshape(x[..., neuron_start : neuron_start + n * w], (-1, n, w))
            kernels = self._group_kernels(kernel_start, n, w)
            # (batch, n, w) x (n, w, w) -> (batch, n, w): all paths of width w.
            y = ops.einsum("bni,nij->bnj", xs, kernels)
            outputs.append(ops.reshape(y, (-1, n * w)))
        y = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        if not self._identity:
            y = _permute(y, self._inverse, self._perm)
        return y + self.bias

    def call(self, inputs):
        if self.implementation == "per_path" or len(self.path_widths) == 1:
            return self._call_per_path(inputs)
        if self.implementation == "conv":
            return self._call_conv(inputs)
        return self._activate(self._call_grouped(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.width,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "path_widths": list(self.path_widths),
                "activation": keras.activations.serialize(self.activation),
                "implementation": self.implementation,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mpath_tf")
class InputNormalization(keras.layers.Normalization):
    """Keras ``Normalization`` that reads its mean and variance variables on every call.

    Keras's layer computes its mean and variance tensors once, when it is
    adapted or loaded (``finalize_state``), so weights copied into it with
    ``set_weights`` (as every clone in derivation and lowering does) would
    be ignored. This one standardizes with the variables themselves:
    ``(x - mean) / max(sqrt(variance), epsilon)``. Set them with
    ``mpath_tf.adapt_normalization``. Otherwise the same layer and arguments.

    Input shape:
        (batch, features); the statistics are per feature (``axis=-1``).

    Output shape:
        Same as the input.

    Example:
        >>> layer = InputNormalization()
        >>> layer.build((None, 2))
        >>> layer.set_weights([np.array([1.0, 2.0]), np.array([4.0, 1.0]), np.array(0)])
        >>> layer(np.array([[3.0, 2.0]], "float32")).numpy().tolist()
        [[1.0, 0.0]]
    """

    def call(self, inputs):
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        mean = ops.cast(ops.reshape(self.adapt_mean, self._broadcast_shape), self.compute_dtype)
        variance = ops.cast(ops.reshape(self.adapt_variance, self._broadcast_shape),
                            self.compute_dtype)
        return (inputs - mean) / ops.maximum(ops.sqrt(variance), keras.backend.epsilon())


@keras.saving.register_keras_serializable(package="mpath_tf")
class PathChain(keras.layers.Layer):
    """``depth`` block-diagonal layers with the same paths, run path by path.

    Paths that share their neurons in every layer never exchange data, so the
    stack computes each path (or each group of equal-width paths) from the
    first layer to the last and joins the paths once at the end. Lowered to
    TFLite, this saves the slice and concatenation ops that separate
    ``PathDense`` layers put between every pair of layers. The function is
    the one of the ``PathDense`` stack it replaces (``chain_paths``).

    Args:
        path_widths: Width of each path, in neuron order (as ``PathDense``).
            The ``conv`` and ``batch_matmul`` implementations need equal
            widths to be contiguous (``group_paths`` arranges that).
        depth: Number of stacked block-diagonal layers (>= 1).
        activation: Activation after every layer.
        implementation: ``"per_path"`` (FULLY_CONNECTED per path and layer),
            ``"conv"`` (grouped 1x1 CONV_2D per width group and layer) or
            ``"batch_matmul"`` (BATCH_MATMUL per width group and layer).
        **kwargs: Base layer arguments.

    Raises:
        ValueError: Bad widths, depth or implementation, or (conv,
            batch_matmul) equal widths that are not contiguous.

    Example:
        >>> import numpy as np
        >>> chain = PathChain([1, 2, 2], depth=2, activation="relu", implementation="conv")
        >>> tuple(chain(np.ones((3, 5), dtype="float32")).shape)
        (3, 5)
    """

    def __init__(self, path_widths, depth: int, activation=None, implementation: str = "per_path",
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"`depth` must be an integer >= 1. Received: depth={depth!r}")
        self.depth = int(depth)
        self.blocks = [
            PathDense(path_widths, activation, implementation, name=f"blocks_{i + 1}")
            for i in range(self.depth)
        ]
        first = self.blocks[0]
        if implementation != "per_path" and len(first.path_widths) > 1 and not first._identity:
            raise ValueError(
                f"PathChain with implementation={implementation!r} needs paths of equal width "
                f"side by side (sorted widths); apply group_paths first. "
                f"Received: path_widths={first.path_widths}"
            )
        self.path_widths = first.path_widths
        self.implementation = first.implementation
        self.activation = first.activation

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)

    def _per_path(self, x):
        outputs = []
        for k, w in enumerate(self.path_widths):
            lo = self.blocks[0].offsets[k]
            h = x if w == self.blocks[0].width else x[..., lo : lo + w]  # (batch, w): path k
            for block in self.blocks:
                h = block._activate(ops.matmul(h, block.block(k)) + block.bias[lo : lo + w])
            outputs.append(h)
        return concat_tree(outputs)

    def _batched(self, x, conv: bool):
        outputs = []
        for w, paths, kernel_start, neuron_start in self.blocks[0]._groups:
            n = len(paths)
            h = x if n * w == self.blocks[0].width else x[..., neuron_start : neuron_start + n * w]
            # conv: (batch, 1, 1, n * w) through grouped 1x1 convolutions;
            # grouped: (n, batch, w) through batched matmuls.
            h = (ops.reshape(h, (-1, 1, 1, n * w)) if conv
                 else ops.transpose(ops.reshape(h, (-1, n, w)), (1, 0, 2)))
            for block in self.blocks:
                bias = block.bias[neuron_start : neuron_start + n * w]
                if conv:
                    kernel = block._conv_kernel(kernel_start, n, w)
                    h = block._activate(ops.conv(h, kernel, padding="valid") + bias)
                else:
                    kernels = block._group_kernels(kernel_start, n, w)  # (n, w_in, w_out)
                    h = block._activate(ops.matmul(h, kernels) + ops.reshape(bias, (n, 1, w)))
            outputs.append(ops.reshape(h if conv else ops.transpose(h, (1, 0, 2)), (-1, n * w)))
        return concat_tree(outputs)

    def call(self, inputs):
        if self.implementation == "per_path" or len(self.path_widths) == 1:
            return self._per_path(inputs)
        return self._batched(inputs, conv=self.implementation == "conv")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "path_widths": list(self.path_widths),
            "depth": self.depth,
            "activation": keras.activations.serialize(self.activation),
            "implementation": self.implementation,
        })
        return config
