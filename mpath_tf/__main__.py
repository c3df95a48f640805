"""``python -m mpath_tf`` runs the CLI."""

from mpath_tf.cli import main

main()
