"""Compact-MLP baselines at a parameter budget (issue: baselines).

One interface: given a dense MLP spec (input size, hidden widths, classes)
and a parameter budget, each method returns hidden widths (and a trained
Keras model) whose parameter count is within 2% of the budget. Built so
far: uniform width scaling (``uniform``) and NeuralScale's power-law
parameterization with Taylor-FO iterative pruning (``neuralscale``).
Generative Synthesis is proprietary and stays out.
"""

from mpath_tf.baselines.common import mlp_parameters, within_budget
from mpath_tf.baselines.uniform import uniform_widths

__all__ = ["mlp_parameters", "uniform_widths", "within_budget"]
