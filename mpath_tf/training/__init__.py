"""Training a supernet or a derived model: the loop with its per-epoch
checkpoints (``loop``) and multi-worker training (``distributed``)."""
