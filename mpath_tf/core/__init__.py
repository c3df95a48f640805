"""The multipath network itself: membrane and path layers, the permeability
and width arithmetic, supernets (built-in or made from a user's Keras model),
derivation into block-diagonal models, gated supernets and their costs.

Nothing here reaches up into training, the search, the converters or the CLI.
"""

# The built-in networks (``build_mlp``, ``build_cnn``, ``build_resnet8``); here, free of Keras,
# so the settings and the CLI's help can name them without loading TensorFlow.
ARCHITECTURES = ("mlp", "cnn", "resnet8")
