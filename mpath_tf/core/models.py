"""The paper's MLP (section 3 and Fig. 2), its input normalization, and the
built-in CNN and ResNet-8.

``build_mlp`` makes ``mlp-<depth>-<width>``; ``build_supernet``
(``mpath_tf.core.supernet``) makes ``mpath-<depth>-<width>`` from it with
``to_supernet``. Both have ``depth`` hidden layers of ``width`` neurons: flatten ->
[normalization] -> Dense(W) -> (depth - 1) hidden-to-hidden layers ->
Dense(num_classes, softmax). With ``normalize`` a Keras ``Normalization``
layer (``input_normalization``) standardizes each input feature with the
training split's mean and variance (``adapt_normalization``), so a model,
and the ``.tflite`` made from it, takes raw sensor readings of any scale. The first
hidden layer is always fully connected; in the supernet the upper ones are
``MembraneDense`` layers gated by one shared set of W - 1 membranes.
The paper names them ``mlp-4-500`` and ``mpath-4-500`` (4 hidden layers of 500).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from mpath_tf.core.layers import InputNormalization


NORMALIZATION = "input_normalization"  # the name of the standardizing layer, in every model
# A feature whose training variance is at most this (relative to its mean's
# square, or absolute below 1) is constant: it is centred but not scaled, so
# no division by ~0 turns a slightly different test value into a huge input.
CONSTANT_VARIANCE = 1e-12


def normalization_layer(model: keras.Model):
    """The model's ``InputNormalization`` layer, or None."""
    return next((layer for layer in model.layers if isinstance(layer, InputNormalization)), None)


def adapt_normalization(model: keras.Model, x: np.ndarray) -> keras.Model:
    """Set the model's input normalization to the mean and variance of ``x``.

    Computed in float64 over the flattened examples. A constant feature
    (variance 0, or at most ``CONSTANT_VARIANCE`` of its scale) gets variance
    1: it is centred to 0, never divided by ~0, so it gives no inf or NaN.

    Args:
        model: A model built with ``normalize=True`` (others are returned unchanged).
        x: The training examples, (batch, *input_shape).

    Returns:
        The same model.

    Example:
        >>> net = build_mlp((3,), 2, 2, 4, normalize=True)
        >>> x = np.array([[1.0, 5.0, 100.0], [3.0, 5.0, 300.0]], "float32")
        >>> net = adapt_normalization(net, x)
        >>> np.round(net.get_layer("input_normalization")(x).numpy(), 3).tolist()
        [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]
    """
    layer = normalization_layer(model)
    if layer is None:
        return model
    flat = np.asarray(x, "float64").reshape(len(x), -1)
    mean, variance = flat.mean(axis=0), flat.var(axis=0)
    constant = variance <= CONSTANT_VARIANCE * np.maximum(mean**2, 1.0)
    variance[constant] = 1.0
    weights = layer.get_weights()  # mean, variance, count
    layer.set_weights([mean.reshape(weights[0].shape).astype("float32"),
                       variance.reshape(weights[1].shape).astype("float32"),
                       *weights[2:]])
    return model


def _seed(seed: int | None) -> None:
    """Seed Keras (and NumPy, Python) so a seed gives the same initial weights."""
    if seed is not None:
        keras.utils.set_random_seed(int(seed))


def _check_architecture(input_shape, num_classes, depth, width) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(
            "`input_shape` must be the shape of one example without the batch "
            f"axis, every dimension >= 1, such as (28, 28). Received: input_shape={input_shape!r}"
        )
    if int(num_classes) < 2:
        raise ValueError(
            f"`num_classes` must be >= 2. Received: num_classes={num_classes!r}"
        )
    if int(depth) < 2:
        raise ValueError(
            "`depth` must be >= 2: the first hidden layer is fully connected and "
            "only the layers above it can be split into paths. "
            f"Received: depth={depth!r}"
        )
    if int(width) < 2:
        raise ValueError(
            "`width` must be >= 2: a membrane sits between two neurons. "
            f"Received: width={width!r}"
        )
    return shape


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int,
    width: int,
    activation: str = "relu",
    seed: int | None = None,
    normalize: bool = False,
) -> keras.Model:
    """Build the equivalent MLP ``mlp-<depth>-<width>`` (no membranes).

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer (>= 2).
        activation: Activation of the hidden layers.
        seed: If given, seeds Keras before the weights are drawn.
        normalize: Standardize the inputs in a first ``Normalization`` layer
            (identity until ``adapt_normalization`` sets it).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> build_mlp((64,), num_classes=10, depth=2, width=8).count_params()
        682
    """
    shape = _check_architecture(input_shape, num_classes, depth, width)
    _seed(seed)
    inputs = keras.Input(shape)
    h = keras.layers.Flatten(name="flatten")(inputs)
    if normalize:
        h = InputNormalization(name=NORMALIZATION)(h)
    h = keras.layers.Dense(width, activation=activation, name="dense_in")(h)
    for i in range(int(depth) - 1):
        h = keras.layers.Dense(width, activation=activation, name=f"dense_{i + 1}")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name=f"mlp-{int(depth)}-{int(width)}")



def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(height, width, channels) of an image-shaped example: (H, W) or (H, W, C).

    Raises:
        ValueError: If the example is not two- or three-dimensional (flat
            tabular features have no neighbouring pixels to convolve).

    Example:
        >>> image_shape((8, 8))
        (8, 8, 1)
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (2, 3) or min(shape[:2]) < 3:
        raise ValueError(
            "A convolutional network needs image-shaped examples, (height, width) or "
            "(height, width, channels) of at least 3 x 3 pixels. "
            f"Received: input_shape={tuple(input_shape)!r}")
    return shape if len(shape) == 3 else (*shape, 1)


def _image_input(shape: tuple[int, ...], normalize: bool):
    """(input, image tensor) of a CNN: the examples, standardized value by
    value if ``normalize``, as (H, W, C) images.

    Raises:
        ValueError: If the examples are not images.
    """
    image = image_shape(shape)
    inputs = keras.Input(shape)
    h = inputs
    if normalize:
        h = keras.layers.Flatten(name="flatten")(h)
        h = InputNormalization(name=NORMALIZATION)(h)
    if normalize or len(shape) == 2:
        h = keras.layers.Reshape(image, name="image")(h)
    return inputs, h


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int,
    width: int,
    activation: str = "relu",
    seed: int | None = None,
    normalize: bool = False,
) -> keras.Model:
    """Build the plain CNN ``cnn-<depth>-<width>`` (no membranes).

    An isotropic VGG-style network: ``depth`` 3x3 convolutions of ``width``
    channels ("same" padding), a 2x2 max pooling after every second one
    while the feature map is at least 4 pixels on a side, global average
    pooling and a softmax classifier. Every convolution has the same channel
    count, so ``to_supernet`` makes all of them after the first one stack,
    as the MLP's hidden layers: one set of membranes, paths from the first
    convolution to the classifier.

    Args:
        input_shape: Shape of one example: (H, W) (one channel) or (H, W, C).
        num_classes: Number of output classes (>= 2).
        depth: Number of convolutions (>= 2).
        width: Channels of every convolution (>= 2).
        activation: Activation of the convolutions.
        seed: If given, seeds Keras before the weights are drawn.
        normalize: Standardize every input value in a first
            ``InputNormalization`` layer (float features; images keep their
            [0, 1] scale).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: If an argument is out of range or the examples are not images.

    Example:
        >>> model = build_cnn((8, 8), num_classes=10, depth=4, width=8)
        >>> [layer.name for layer in model.layers if "pool" in layer.name]
        ['pool_1', 'pool_3', 'global_pool']
    """
    shape = _check_architecture(input_shape, num_classes, depth, width)
    inputs, h = _image_input(shape, normalize)  # no weights drawn: before the seed
    _seed(seed)
    conv = dict(kernel_size=3, padding="same", activation=activation)
    h = keras.layers.Conv2D(width, name="conv_in", **conv)(h)
    side = min(image_shape(shape)[:2])
    for i in range(1, int(depth)):
        h = keras.layers.Conv2D(width, name=f"conv_{i}", **conv)(h)
        if i % 2 == 1 and side >= 4:
            h = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(h)
            side //= 2
    h = keras.layers.GlobalAveragePooling2D(name="global_pool")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name=f"cnn-{int(depth)}-{int(width)}")


def build_resnet8(
    input_shape: Sequence[int],
    num_classes: int,
    width: int = 16,
    activation: str = "relu",
    seed: int | None = None,
    normalize: bool = False,
) -> keras.Model:
    """Build ResNet-8, MLPerf Tiny's image-classification reference network.

    A 3x3 convolution of ``width`` channels, then three stages of ``width``,
    ``2 * width`` and ``4 * width`` channels (16/32/64 by default), each two
    3x3 convolutions with batch normalization and a residual add (the
    identity in stage 1; a strided 1x1 convolution into stages 2 and 3,
    which halve the feature map), global average pooling and a softmax
    classifier; He-normal kernels. As MLPerf Tiny's ``resnet_v1_eembc``
    without its L2 kernel regularizer (``to_supernet`` splits only layers
    without one; add weight decay in the optimizer instead).
    ``to_supernet`` splits each stage: in stage 1 both of its convolutions
    (the stem is the stack's dense entry), in stages 2 and 3 the second (the
    first widens the channels and joins the paths before), the residual adds
    kept.

    Args:
        input_shape: Shape of one example: (H, W) (one channel) or (H, W, C).
        num_classes: Number of output classes (>= 2).
        width: Channels of the first stage (>= 2).
        activation: Activation after each batch normalization.
        seed: If given, seeds Keras before the weights are drawn.
        normalize: Standardize every input value in a first
            ``InputNormalization`` layer (float features; images keep their
            [0, 1] scale).

    Returns:
        A functional ``keras.Model`` named ``resnet8-<width>``.

    Raises:
        ValueError: If an argument is out of range or the examples are not images.

    Example:
        >>> model = build_resnet8((32, 32, 3), num_classes=10)  # CIFAR-10
        >>> model.count_params()  # as MLPerf Tiny's reference
        78666
    """
    shape = _check_architecture(input_shape, num_classes, 2, width)
    inputs, h = _image_input(shape, normalize)  # no weights drawn: before the seed
    _seed(seed)
    layers = keras.layers

    def conv(h, filters, name, stride=1, kernel=3):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same",
                             kernel_initializer="he_normal", name=name)(h)

    def conv_bn(h, filters, name, stride=1):
        return layers.BatchNormalization(name=f"{name}_bn")(conv(h, filters, name, stride))

    h = layers.Activation(activation, name="stem_act")(conv_bn(h, width, "stem"))
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        stride = 1 if stage == 1 else 2
        body = layers.Activation(activation, name=f"stage{stage}_a_act")(
            conv_bn(h, filters, f"stage{stage}_a", stride))
        body = conv_bn(body, filters, f"stage{stage}_b")
        shortcut = h if stage == 1 else conv(h, filters, f"stage{stage}_shortcut", stride, 1)
        h = layers.Add(name=f"stage{stage}_add")([body, shortcut])
        h = layers.Activation(activation, name=f"stage{stage}_act")(h)
    h = layers.GlobalAveragePooling2D(name="global_pool")(h)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name=f"resnet8-{int(width)}")
