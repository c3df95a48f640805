"""Cost-regularized searches (paper 002): training a gated supernet at one
``lam`` or a lam-hypernetwork (``train``), and the search method that runs
them in a run directory (``search``)."""
