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

The structured methods (all but ``magnitude``) search once, whatever the
budget (``search(method, ...)`` returns a ``Search``), then draw widths for a
budget and train that MLP from scratch; ``compress`` does both.
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
    Search,
    mlp_parameters,
    within_budget,
)
from mpath_tf.baselines.uniform import uniform_widths
from mpath_tf.errors import ConfigError
from mpath_tf.baselines.magnitude import compress as prune

STRUCTURED = ("uniform", "neuralscale", "morphnet", "group_lasso", "variational_dropout")
METHODS = (*STRUCTURED, "magnitude")

__all__ = ["METHODS", "STRUCTURED", "BaselineResult", "MLPSpec", "Search", "compress",
           "mlp_parameters", "search", "uniform_widths", "within_budget"]


def _module(method: str, methods: tuple[str, ...]):
    if method not in methods:
        raise ConfigError(f"Unknown baseline method {method!r}; expected one of {', '.join(methods)}.")
    return importlib.import_module(f"mpath_tf.baselines.{method}")


def search(method: str, spec: MLPSpec, data, **options) -> Search:
    """Run a structured method's budget-independent search once.

    Args:
        method: One of ``STRUCTURED``.
        spec: The dense MLP.
        data: A ``mpath_tf.data.Dataset``.
        **options: The method's ``search`` options (``seed``, ``batch_size``, ...).

    Returns:
        A ``Search``: ``widths(budget)`` and ``train(data, budget, epochs, seed)``.

    Raises:
        ConfigError: Unknown (or unstructured) method.
    """
    return _module(method, STRUCTURED).search(spec, data, **options)


def compress(method: str, spec: MLPSpec, data, budget: int, epochs: int = 5, seed: int = 0,
             batch_size: int = 128, **options) -> BaselineResult:
    """Shrink ``spec`` to ``budget`` parameters with ``method`` and train the result.

    A structured method searches (``search``) and trains the MLP of the
    widths it draws for ``budget`` from scratch; ``magnitude`` prunes the
    dense MLP while training it.

    Args:
        method: One of ``METHODS``.
        spec: The dense MLP (input shape, hidden widths, classes).
        data: A ``mpath_tf.data.Dataset``.
        budget: Parameter budget (non-zero parameters for ``magnitude``).
        epochs: Training epochs of the final model.
        seed: Seed of the search and of the final initialization.
        batch_size: Mini-batch size.
        **options: The method's own options (see its ``search``, or
            ``magnitude.compress``).

    Returns:
        A ``BaselineResult``.

    Raises:
        ConfigError: Unknown method, or a budget no MLP of this depth meets.
    """
    if method == "magnitude":
        return prune(spec, data, budget, epochs, seed, batch_size, **options)
    module = _module(method, METHODS)
    spec.check(budget)
    found = module.search(spec, data, seed=seed, batch_size=batch_size, **options)
    return found.train(data, budget, epochs, seed, batch_size)
