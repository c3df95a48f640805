"""Compact-MLP baselines at a parameter budget (issue: baselines).

One interface: ``compress(method, spec, data, budget, ...)`` takes a dense
MLP spec, a dataset and a parameter budget and returns a ``BaselineResult``
whose trained Keras model is within 2% of the budget. Methods:

- ``uniform``: the same width multiplier on every layer (MobileNets).
- ``neuralscale``: Taylor-FO iterative pruning, per-layer power laws,
  architecture descent (``../shared/papers/003_...txt``).
- ``morphnet``: L1 on per-neuron normalization scales, then uniform expand.
- ``group_lasso``: group lasso on each neuron's incoming weights.
- ``variational_dropout``: sparse VD, neurons with mostly dropped weights removed.
- ``magnitude``: unstructured magnitude pruning with tfmot (zeros in dense kernels).

The structured methods find widths and train that MLP from scratch.
Generative Synthesis (compared in ``../shared/papers/001_...txt``) is
proprietary (DarwinAI) and not included.

Example:
    >>> from mpath_tf.data import load_dataset
    >>> data = load_dataset("digits")
    >>> spec = MLPSpec(data.input_shape, (32, 32), data.num_classes)
    >>> result = compress("uniform", spec, data, budget=spec.parameters // 2, epochs=1)
    >>> result.widths, within_budget(result.parameters, spec.parameters // 2)
    ([18, 19], True)
"""

from __future__ import annotations

import importlib

from mpath_tf.baselines.common import (
    BaselineResult,
    MLPSpec,
    mlp_parameters,
    within_budget,
)
from mpath_tf.baselines.uniform import uniform_widths
from mpath_tf.errors import ConfigError

METHODS = ("uniform", "neuralscale", "morphnet", "group_lasso", "variational_dropout", "magnitude")

__all__ = ["METHODS", "BaselineResult", "MLPSpec", "compress", "mlp_parameters",
           "uniform_widths", "within_budget"]


def compress(method: str, spec: MLPSpec, data, budget: int, **options) -> BaselineResult:
    """Shrink ``spec`` to ``budget`` parameters with ``method`` and train the result.

    Args:
        method: One of ``METHODS``.
        spec: The dense MLP (input shape, hidden widths, classes).
        data: A ``mpath_tf.data.Dataset``.
        budget: Parameter budget (non-zero parameters for ``magnitude``).
        **options: The method's own options (``epochs``, ``seed``,
            ``batch_size`` for all; see each module's ``compress``).

    Returns:
        A ``BaselineResult``.

    Raises:
        ConfigError: Unknown method, or a budget no MLP of this depth meets.
    """
    if method not in METHODS:
        raise ConfigError(f"Unknown baseline method {method!r}; expected one of {', '.join(METHODS)}.")
    module = importlib.import_module(f"mpath_tf.baselines.{method}")
    return module.compress(spec, data, budget, **options)
