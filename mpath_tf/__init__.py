"""mpath-tf: multipath neural networks with a chosen accuracy/latency balance."""

from mpath_tf.derive import (
    count_parameters,
    derive,
    parameter_counts,
    path_widths,
)
from mpath_tf.layers import MembraneDense, PathDense
from mpath_tf.models import Supernet, build_mlp, build_supernet
from mpath_tf.permeability import connection_permeability, discrete_permeability

__version__ = "0.1.0"
