"""mpath-tf: multipath neural networks with a chosen accuracy/latency balance.

The public API reads as the pipeline: data, a supernet (built in or made
from your Keras model with ``to_supernet``), ``derive``, ``finetune``,
``search`` and its predictors, ``load_model``. Export and timing live in the
``converters`` and ``edge_bench`` packages. Names are imported lazily (on
first attribute access) so that ``mpath-tf --help`` starts without TensorFlow.

Example:
    >>> import mpath_tf
    >>> net = mpath_tf.build_supernet((8, 8), num_classes=10, depth=4, width=16, seed=0)
    >>> model = mpath_tf.derive(net, paths=4)
    >>> model.count_params() == mpath_tf.parameter_counts(net)[4]
    True
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # data
    "load_dataset": "mpath_tf.data",
    "Dataset": "mpath_tf.data",
    # a supernet: built in, or from the user's Keras model
    "build_mlp": "mpath_tf.core.models",
    "build_resnet8": "mpath_tf.core.models",
    "build_supernet": "mpath_tf.core.supernet",
    "to_supernet": "mpath_tf.core.supernet",
    "Supernet": "mpath_tf.core.supernet",
    "adapt_normalization": "mpath_tf.core.models",
    # derivation: block-diagonal models, their sizes, the dense baseline
    "derive": "mpath_tf.core.derivation",
    "to_dense": "mpath_tf.core.derivation",
    "path_widths": "mpath_tf.core.derivation",
    "parameter_counts": "mpath_tf.core.derivation",
    "discrete_permeability": "mpath_tf.core.permeability",
    "MembraneDense": "mpath_tf.core.layers",
    "PathDense": "mpath_tf.core.layers",
    "MembraneConv2D": "mpath_tf.core.conv",
    "PathConv2D": "mpath_tf.core.conv",
    # training and search
    "train": "mpath_tf.training.loop",
    "recalibrate_batch_norms": "mpath_tf.training.loop",
    "finetune": "mpath_tf.pipeline.steps",
    "SearchConfig": "mpath_tf.pipeline.config",
    "search": "mpath_tf.pipeline.run",
    "PaperPredictor": "mpath_tf.pipeline.predictors",
    "make_predictor": "mpath_tf.pipeline.predictors",
    # files
    "load_model": "mpath_tf.core.saving",
    # errors
    "MpathError": "mpath_tf.errors",
    "ConfigError": "mpath_tf.errors",
    "DataError": "mpath_tf.errors",
    "RunDirError": "mpath_tf.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpath_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
