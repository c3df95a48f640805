"""Keras layers of a multipath convolutional network: channels as paths.

- ``MembraneConv2D``: the one-shot layer. A C -> C convolution whose
  (kh, kw, C, C) kernel is multiplied over its (in, out) axes by the (C, C)
  connection-permeability matrix of the membranes between adjacent output
  channels (Eq. 2 and 3 of the paper, with channels for neurons). A stage of
  such layers shares one matrix, as the Dense stack does.
- ``PathConv2D``: the derived layer. Independent channel paths of possibly
  unequal widths, stored as their (kh, kw, w, w) diagonal blocks only.

Both take channels-last inputs (batch, height, width, C).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mpath_tf.core.layers import concat_tree

CONV_IMPLEMENTATIONS = ("grouped", "split")


def _pair(value, name: str) -> tuple[int, int]:
    values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != 2 or any(isinstance(v, bool) or int(v) < 1 for v in values):
        raise ValueError(f"`{name}` must be a positive integer or a pair of them. "
                         f"Received: {name}={value!r}")
    return int(values[0]), int(values[1])


def _padding(padding) -> str:
    if padding not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
    return padding


def _output_size(size, kernel: int, stride: int, dilation: int, padding: str):
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


class _ChannelConv(keras.layers.Layer):
    """The convolution settings and output shape shared by both layers."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _check_channels(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.width:
            raise ValueError(
                f"{type(self).__name__} of {self.width} channels expects channels-last inputs "
                f"(batch, height, width, {self.width}), the output of the layer before it. "
                f"Received: input_shape={tuple(input_shape)}")

    def _conv(self, x, kernel):
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding,
                        dilation_rate=self.dilation_rate)

    def _finish(self, x):
        if self.use_bias:
            x = x + self.bias
        return x if self.activation is None else self.activation(x)

    def _output_shape(self, input_shape):
        rows, cols = (_output_size(input_shape[1 + i], self.kernel_size[i], self.strides[i],
                                   self.dilation_rate[i], self.padding) for i in range(2))
        return (input_shape[0], rows, cols, self.width)

    def get_config(self):
        config = super().get_config()
        config.update({
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="mpath_tf")
class MembraneConv2D(_ChannelConv):
    """C -> C convolution gated by membrane permeabilities between channels.

    ``outputs = activation(conv(inputs, kernel * P[None, None]) + bias)``,
    where ``P`` is the (C, C) connection-permeability matrix (Eq. 2) passed at
    call time, so that one set of membranes gates every layer of a stage.

    Input shape: (batch, height, width, C). Permeability: (C, C).
    Output shape: (batch, new_height, new_width, C).

    Args:
        filters: Input and output channels C (>= 2).
        kernel_size: Kernel height and width (an int or a pair).
        strides: Strides (an int or a pair).
        padding: ``"valid"`` or ``"same"``.
        dilation_rate: Dilation (an int or a pair).
        activation: Activation name or callable; ``None`` means linear.
        use_bias: Whether the layer adds a (C,) bias.
        kernel_initializer: Initializer of the (kh, kw, C, C) kernel.
        bias_initializer: Initializer of the bias.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: If an argument is out of range, or (in ``build``) the
            input does not have C channels.

    Example:
        >>> layer = MembraneConv2D(4, 3, padding="same")
        >>> x = np.ones((2, 5, 5, 4), "float32")
        >>> tuple(layer(x, np.eye(4, dtype="float32")).shape)
        (2, 5, 5, 4)
    """

    def __init__(self, filters: int, kernel_size, **kwargs):
        super().__init__(kernel_size, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 2:
            raise ValueError("`filters` must be an integer >= 2 (a membrane sits between two "
                             f"channels). Received: filters={filters!r}")
        self.width = int(filters)

    @property
    def filters(self) -> int:
        return self.width

    def build(self, input_shape):
        self._check_channels(input_shape)
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, self.width,
                                                            self.width),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.width,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)

    def call(self, inputs, permeability):
        # (kh, kw, C_in, C_out) * (1, 1, C_in, C_out): Eq. 3 over the channel axes.
        return self._finish(self._conv(inputs, self.kernel * permeability[None, None]))

    def compute_output_shape(self, input_shape, permeability_shape=None):
        return self._output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.width}


@keras.saving.register_keras_serializable(package="mpath_tf")
class PathConv2D(_ChannelConv):
    """Block-diagonal convolution: independent channel paths, blocks only.

    Path ``k`` maps input channels ``offsets[k] : offsets[k] + widths[k]`` to
    the same output channels through its own (kh, kw, w_k, w_k) block; no
    zero is stored, so ``count_params()`` is ``kh * kw * sum(w**2) + C`` (with
    a bias). Two implementations compute the same function from the same
    weights:

    - ``"grouped"`` (default): each run of adjacent paths of one width w >= 2
      is one grouped convolution (TFLite: one CONV_2D with groups), each run
      of single-channel paths one depthwise convolution (DEPTHWISE_CONV_2D);
    - ``"split"``: one convolution per path (a STRIDED_SLICE and a CONV_2D
      per path, CONCATENATION), which runtimes without a grouped-convolution
      kernel run at full speed.

    Input shape: (batch, height, width, C). Output shape: (batch, new_height,
    new_width, C).

    Args:
        path_widths: Channels of each path, in channel order; each >= 1.
        kernel_size, strides, padding, dilation_rate, activation, use_bias,
        kernel_initializer, bias_initializer: As ``MembraneConv2D``.
        implementation: ``"grouped"`` or ``"split"``.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: If a path width is not a positive integer, the
            implementation is unknown, or (in ``build``) the input does not
            have ``sum(path_widths)`` channels.

    Example:
        >>> layer = PathConv2D([2, 1, 1], 3, padding="same")
        >>> tuple(layer(np.ones((1, 4, 4, 4), "float32")).shape)
        (1, 4, 4, 4)
        >>> layer.count_params()  # 9 * (4 + 1 + 1) + 4
        58
    """

    def __init__(self, path_widths: Sequence[int], kernel_size, implementation: str = "grouped",
                 **kwargs):
        super().__init__(kernel_size, **kwargs)
        widths = list(path_widths) if not isinstance(path_widths, (int, str)) else None
        if not widths or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1
                             for w in widths):
            raise ValueError("`path_widths` must be a non-empty list of positive integers, one "
                             f"per path. Received: path_widths={path_widths!r}")
        if implementation not in CONV_IMPLEMENTATIONS:
            raise ValueError(f"`implementation` must be one of {CONV_IMPLEMENTATIONS}. "
                             f"Received: implementation={implementation!r}")
        self.path_widths = [int(w) for w in widths]
        self.implementation = implementation
        self.width = sum(self.path_widths)
        self.offsets = np.concatenate([[0], np.cumsum(self.path_widths)]).astype(int).tolist()
        # Bias and an elementwise activation are applied to each run before the
        # join: the same function, and the converter fuses both into the run's
        # CONV_2D / DEPTHWISE_CONV_2D instead of an ADD after the CONCATENATION.
        self._per_run = self.activation is None or keras.activations.serialize(
            self.activation) not in ("softmax", "log_softmax")

    def runs(self) -> list[tuple[int, int, int]]:
        """``(first path, path count, width)`` of each run of adjacent paths of
        one width: what the ``grouped`` implementation computes in one op."""
        runs = []
        for k, w in enumerate(self.path_widths):
            if runs and runs[-1][2] == w and self.implementation == "grouped":
                first, n, _ = runs[-1]
                runs[-1] = (first, n + 1, w)
            else:
                runs.append((k, 1, w))
        return runs

    def build(self, input_shape):
        self._check_channels(input_shape)
        # One variable per run, already in the layout its op takes:
        # grouped (kh, kw, w, n * w); depthwise (kh, kw, n, 1).
        self.run_kernels = []
        for first, n, w in self.runs():
            shape = (*self.kernel_size, n, 1) if w == 1 and n > 1 else (*self.kernel_size, w, n * w)
            self.run_kernels.append(self.add_weight(
                name=f"kernel_{first}", shape=shape, initializer=self._init_run(w, n)))
        self.bias = (self.add_weight(name="bias", shape=(self.width,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)

    def _init_run(self, w: int, n: int):
        def init(shape, dtype=None):
            # Each block drawn as the (kh, kw, w, w) kernel it is (fan-in of one path).
            blocks = [self.kernel_initializer((*self.kernel_size, w, w), dtype=dtype)
                      for _ in range(n)]
            return ops.convert_to_tensor(self._run_layout(
                [ops.convert_to_numpy(b) for b in blocks], w), dtype=dtype)
        return init

    @staticmethod
    def _run_layout(blocks, w: int) -> np.ndarray:
        """A run's blocks (kh, kw, w, w) in the variable's layout."""
        if w == 1 and len(blocks) > 1:
            return np.concatenate(blocks, axis=2)  # (kh, kw, n, 1)
        return np.concatenate(blocks, axis=3)  # (kh, kw, w, n * w)

    def get_blocks(self) -> list[np.ndarray]:
        """The (kh, kw, w, w) kernel blocks in path order, as NumPy arrays."""
        blocks = []
        for (_, n, w), kernel in zip(self.runs(), self.run_kernels):
            kernel = ops.convert_to_numpy(kernel)
            if w == 1 and n > 1:
                blocks += [kernel[:, :, i:i + 1, :] for i in range(n)]
            else:
                blocks += [kernel[..., i * w:(i + 1) * w] for i in range(n)]
        return blocks

    def set_blocks(self, blocks, bias=None) -> None:
        """Set the (kh, kw, w, w) kernel blocks (path order) and optionally the bias.

        Raises:
            ValueError: If a block has the wrong shape.
        """
        blocks = [np.asarray(b, "float32") for b in blocks]
        for k, (block, w) in enumerate(zip(blocks, self.path_widths)):
            if block.shape != (*self.kernel_size, w, w):
                raise ValueError(f"Block {k} must have shape {(*self.kernel_size, w, w)}. "
                                 f"Received: {block.shape}")
        for (first, n, w), kernel in zip(self.runs(), self.run_kernels):
            kernel.assign(self._run_layout(blocks[first:first + n], w))
        if bias is not None and self.use_bias:
            self.bias.assign(np.asarray(bias, "float32"))

    def call(self, inputs):
        per_run = self._per_run
        outputs = []
        for (first, n, w), kernel in zip(self.runs(), self.run_kernels):
            lo, hi = self.offsets[first], self.offsets[first + n]
            x = inputs[..., lo:hi]
            if w == 1 and n > 1:  # single channels: a depthwise convolution
                y = ops.depthwise_conv(x, kernel, strides=self.strides, padding=self.padding,
                                       dilation_rate=self.dilation_rate)
            else:  # one path, or n paths of width w as a convolution of n groups
                y = self._conv(x, kernel)
            if per_run:
                y = y + self.bias[lo:hi] if self.use_bias else y
                y = y if self.activation is None else self.activation(y)
            outputs.append(y)
        h = concat_tree(outputs)
        return h if per_run else self._finish(h)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "path_widths": list(self.path_widths),
                "implementation": self.implementation}
