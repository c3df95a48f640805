"""Loaders for the supernet classes of earlier versions: ``from_config`` shims.

Every supernet is now one class, ``mpath_tf.core.supernet.Supernet``, gated
or not. Files written before keep loading:

- ``GatedStacks`` and ``HyperStacks`` (the gated supernets of any shape,
  shims in ``mpath_tf.core.supernet``) were ``Supernet`` with a trade-off in
  their config; their ``from_config`` gives that ``Supernet``, whose weights
  are stored the same way.
- ``MLPSupernet`` (mpath-tf 0.1's ``Supernet``, the fixed-shape MLP),
  ``GatedSupernet`` and ``HyperSupernet`` (its gated forms) kept their
  layers as attributes. Their ``from_config`` builds a holder with that
  layout, so Keras reads the weights into it; ``mpath_tf.load_model`` then
  copies them into the equivalent ``Supernet`` (``upgrade``), which computes
  the same function. A holder only holds weights: load these files through
  ``mpath_tf.load_model``.
"""

from __future__ import annotations

import keras
import numpy as np

from mpath_tf.core.costs import CostTable
from mpath_tf.core.layers import InputNormalization, MembraneDense


@keras.saving.register_keras_serializable(package="mpath_tf")
class MLPSupernet(keras.Model):
    """The weights of a fixed-shape MLP supernet of mpath-tf 0.1 (a file's
    ``Supernet`` with ``depth`` in its config), laid out as 0.1 stored them.

    Building it draws the weights in 0.1's order, so a seed gives the
    network it gave then (``build_supernet`` draws the same).

    Args:
        input_shape: Shape of one example, without the batch axis.
        num_classes: Number of output classes.
        depth: Number of hidden layers.
        width: Neurons per hidden layer W.
        activation: Activation of the hidden layers.
        normalize: Whether the flattened inputs are standardized first.
        **kwargs: Base ``keras.Model`` arguments such as ``name``.
    """

    def __init__(self, input_shape, num_classes, depth, width, activation="relu",
                 normalize: bool = False, **kwargs):
        kwargs.setdefault("name", f"mpath-{int(depth)}-{int(width)}")
        super().__init__(**kwargs)
        self.example_shape = tuple(int(d) for d in input_shape)
        self.num_classes, self.depth, self.width = int(num_classes), int(depth), int(width)
        self.activation = activation
        self.normalize = bool(normalize)
        self.flatten = keras.layers.Flatten(name="flatten")
        self.normalizer = InputNormalization(name="input_normalization") if normalize else None
        self.first = keras.layers.Dense(width, activation=activation, name="dense_in")
        self.membrane_layers = [MembraneDense(width, activation=activation,
                                              name=f"membrane_dense_{i + 1}")
                                for i in range(self.depth - 1)]
        self.classifier = keras.layers.Dense(num_classes, activation="softmax",
                                             name="classifier")

    def build(self, input_shape):
        self.omega = self.add_weight(name="omega", shape=(self.width - 1,),
                                     initializer=keras.initializers.RandomUniform(-1.0, 1.0))
        flat = (input_shape[0], int(np.prod(input_shape[1:])))
        self.flatten.build(input_shape)
        if self.normalizer is not None:
            self.normalizer.build(flat)
        self.first.build(flat)
        for layer in self.membrane_layers:
            layer.build((input_shape[0], self.width))
        self.classifier.build((input_shape[0], self.width))

    @property
    def layers_by_role(self) -> list:
        """The layers with weights in network order (normalizer, first,
        membrane layers, classifier): the ``Supernet``'s chain order."""
        return [l for l in [self.normalizer, self.first, *self.membrane_layers, self.classifier]
                if l is not None]

    @property
    def gating(self) -> dict:
        """The trade-off arguments of the equivalent ``Supernet`` (none: ranked)."""
        return {}

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "input_shape": list(self.example_shape), "num_classes": self.num_classes,
                "depth": self.depth, "width": self.width, "activation": self.activation,
                "normalize": self.normalize}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _GatedMLP(MLPSupernet):
    """The weights of an MLP supernet trained with a cost term (before
    ``Supernet`` took gates): ``omega`` holds the logits over ``LOGIT_SCALE``,
    ``temperature`` the gates' last one; the trade-off is ``TRADE_OFF``."""

    TRADE_OFF = "lam"
    DEFAULT = 0.0

    def __init__(self, input_shape, num_classes, depth, width, activation="relu", cost=None,
                 initial_logit: float = 1.0, seed: int | None = None, **kwargs):
        value = kwargs.pop(self.TRADE_OFF, self.DEFAULT)
        super().__init__(input_shape, num_classes, depth, width, activation, **kwargs)
        self.trade_off_value = value
        self.cost = None if cost is None else CostTable.from_dict(cost)
        self.initial_logit, self.seed = float(initial_logit), seed

    def build(self, input_shape):
        super().build(input_shape)
        self.temperature = self.add_weight(name="temperature", shape=(), trainable=False,
                                           initializer="ones")

    @property
    def gating(self) -> dict:
        return {self.TRADE_OFF: self.trade_off_value,
                "costs": None if self.cost is None else [self.cost],
                "initial_logit": self.initial_logit, "seed": self.seed}

    def get_config(self):
        return {**super().get_config(), self.TRADE_OFF: self.trade_off_value,
                "cost": None if self.cost is None else self.cost.to_dict(),
                "initial_logit": self.initial_logit, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mpath_tf")
class GatedSupernet(_GatedMLP):
    """An MLP supernet trained at a fixed ``lam`` (``_GatedMLP``)."""

    TRADE_OFF, DEFAULT = "lam", 0.0


@keras.saving.register_keras_serializable(package="mpath_tf")
class HyperSupernet(_GatedMLP):
    """An MLP hypernetwork supernet (``_GatedMLP``): ``omega`` and ``slope``
    give the logits at each ``lam`` up to ``lam_max``."""

    TRADE_OFF, DEFAULT = "lam_max", 1.0

    def build(self, input_shape):
        super().build(input_shape)
        self.slope = self.add_weight(name="slope", shape=(self.width - 1,), initializer="zeros")
