"""The one-shot supernet and the equivalent MLP (paper, section 3 and Fig. 2).

Both have ``depth`` hidden layers of ``width`` neurons: flatten -> Dense(W) ->
(depth - 1) hidden-to-hidden layers -> Dense(num_classes, softmax). The first
hidden layer is always fully connected; in the supernet the upper ones are
``MembraneDense`` layers gated by one shared set of W - 1 membranes.
The paper names them ``mlp-4-500`` and ``mpath-4-500`` (4 hidden layers of 500).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mpath_tf.layers import MembraneDense
from mpath_tf.permeability import RangeMinIndex


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


@keras.saving.register_keras_serializable(package="mpath_tf")
class Supernet(keras.Model):
    """One-shot MpathNN: an MLP whose upper hidden layers share membranes.

    The model owns a single variable ``omega`` of shape (W - 1,), initialized
    from U(-1, 1) (Eq. 4). Each step computes the membrane permeabilities
    sigmoid(omega) (Eq. 1), turns them into the (W, W) connection matrix of
    Eq. 2 once, and gates every ``MembraneDense`` layer with it (Eq. 3).

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer W (>= 2).
        activation: Activation of the hidden layers.
        **kwargs: Base ``keras.Model`` arguments such as ``name``.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> net = build_supernet((8, 8), num_classes=10, depth=3, width=6)
        >>> tuple(net.omega.shape)
        (5,)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int,
        width: int,
        activation: str = "relu",
        **kwargs,
    ):
        kwargs.setdefault("name", f"mpath-{int(depth)}-{int(width)}")
        super().__init__(**kwargs)
        self.example_shape = _check_architecture(input_shape, num_classes, depth, width)
        self.num_classes = int(num_classes)
        self.depth = int(depth)
        self.width = int(width)
        self.activation = activation
        self.flatten = keras.layers.Flatten(name="flatten")
        self.first = keras.layers.Dense(width, activation=activation, name="dense_in")
        self.membrane_layers = [
            MembraneDense(width, activation=activation, name=f"membrane_dense_{i + 1}")
            for i in range(self.depth - 1)
        ]
        self.classifier = keras.layers.Dense(
            num_classes, activation="softmax", name="classifier"
        )

    def build(self, input_shape):
        self.omega = self.add_weight(
            name="omega",
            shape=(self.width - 1,),
            initializer=keras.initializers.RandomUniform(-1.0, 1.0),
        )
        self._range_min = RangeMinIndex(self.width)
        flat = (input_shape[0], int(np.prod(input_shape[1:])))
        self.flatten.build(input_shape)
        self.first.build(flat)
        for layer in self.membrane_layers:
            layer.build((input_shape[0], self.width))
        self.classifier.build((input_shape[0], self.width))

    def membrane_permeability(self):
        """The W - 1 membrane permeabilities sigmoid(omega) (Eq. 1)."""
        return ops.sigmoid(self.omega)

    def connection_permeability(self):
        """The (W, W) connection permeability matrix (Eq. 2)."""
        return self._range_min(self.membrane_permeability())

    def call(self, inputs, permeability=None):
        """Forward pass; ``permeability`` overrides the learned (W, W) matrix.

        Passing a {0, 1} matrix (``mpath_tf.discrete_permeability``) gives the
        discretized supernet that a derived model must reproduce exactly.
        """
        if permeability is None:
            permeability = self.connection_permeability()
        h = self.first(self.flatten(inputs))
        for layer in self.membrane_layers:
            h = layer(h, permeability)
        return self.classifier(h)

    def derived_widths(self, paths: int | None = None, lam: float | None = None) -> list[int]:
        """Path widths of the network derived with ``paths`` paths (the paper's
        ranking: the ``paths - 1`` least permeable membranes are cut).

        Raises:
            ValueError: If ``paths`` is missing or outside [1, W], or ``lam`` is
                given (a trade-off applies to ``GatedSupernet`` models).
        """
        from mpath_tf.derivation import widths_from_permeability

        if lam is not None:
            raise ValueError(
                "This supernet was trained without a cost term, so it has no "
                "architecture per lam; derive it by path count (paths=...), or train "
                "a HyperSupernet (`mpath-tf search --method hypernet`). "
                f"Received: lam={lam!r}")
        if paths is None:
            raise ValueError("Pass `paths`, the path count to derive (1 .. W). Received: paths=None")
        return widths_from_permeability(ops.convert_to_numpy(self.membrane_permeability()), paths)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": list(self.example_shape),
            "num_classes": self.num_classes,
            "depth": self.depth,
            "width": self.width,
            "activation": self.activation,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_supernet(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int,
    width: int,
    activation: str = "relu",
    seed: int | None = None,
) -> Supernet:
    """Build the one-shot supernet ``mpath-<depth>-<width>``, ready to train.

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer (>= 2).
        activation: Activation of the hidden layers.
        seed: If given, seeds Keras (and NumPy/Python) before the weights are
            drawn, so the same seed gives the same initial network.

    Returns:
        A built ``Supernet``.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> net = build_supernet((64,), num_classes=10, depth=4, width=8, seed=0)
        >>> net.name
        'mpath-4-8'
    """
    shape = _check_architecture(input_shape, num_classes, depth, width)
    _seed(seed)
    model = Supernet(shape, num_classes, depth, width, activation=activation)
    model.build((None, *shape))
    return model


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int,
    width: int,
    activation: str = "relu",
    seed: int | None = None,
) -> keras.Model:
    """Build the equivalent MLP ``mlp-<depth>-<width>`` (no membranes).

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes (>= 2).
        depth: Number of hidden layers (>= 2).
        width: Neurons per hidden layer (>= 2).
        activation: Activation of the hidden layers.
        seed: If given, seeds Keras before the weights are drawn.

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
    h = keras.layers.Dense(width, activation=activation, name="dense_in")(h)
    for i in range(int(depth) - 1):
        h = keras.layers.Dense(width, activation=activation, name=f"dense_{i + 1}")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(h)
    return keras.Model(inputs, outputs, name=f"mlp-{int(depth)}-{int(width)}")
