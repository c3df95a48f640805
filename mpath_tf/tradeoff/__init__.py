"""Cost-regularized training (paper 002): a gated supernet at one ``lam``
or a lam-hypernetwork (``train``). The search method that runs them in a
run directory is ``mpath_tf.pipeline.tradeoff``; this package imports no
part of the pipeline."""
