"""mpath-tf: multipath neural networks with a chosen accuracy/latency balance.

The public API is imported lazily (on first attribute access) so that
``mpath-tf --help`` and the data and config modules start without TensorFlow.

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
    "MembraneDense": "mpath_tf.core.layers",
    "PathDense": "mpath_tf.core.layers",
    "Supernet": "mpath_tf.core.models",
    "build_supernet": "mpath_tf.core.models",
    "build_mlp": "mpath_tf.core.models",
    "adapt_normalization": "mpath_tf.core.models",
    "connection_permeability": "mpath_tf.core.permeability",
    "discrete_permeability": "mpath_tf.core.permeability",
    "derive": "mpath_tf.core.derivation",
    "path_widths": "mpath_tf.core.derivation",
    "parameter_counts": "mpath_tf.core.derivation",
    "count_parameters": "mpath_tf.core.derivation",
    "PaperPredictor": "mpath_tf.pipeline.predictors",
    "SearchConfig": "mpath_tf.pipeline.config",
    "search": "mpath_tf.pipeline.run",
    "make_strategy": "mpath_tf.training.distributed",
    "train_distributed": "mpath_tf.training.distributed",
    "local_tf_configs": "mpath_tf.training.distributed",
    "load_dataset": "mpath_tf.data",
    "load_model": "mpath_tf.storage",
    "Dataset": "mpath_tf.data",
    "ConfigError": "mpath_tf.errors",
    "DataError": "mpath_tf.errors",
    "MpathError": "mpath_tf.errors",
    "RunDirError": "mpath_tf.errors",
    "ClusterError": "mpath_tf.errors",
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
