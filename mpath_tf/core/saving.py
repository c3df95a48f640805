"""Loading ``.keras`` files that hold mpath-tf layers and models.

Keras finds a custom class by its registered name (``mpath_tf>PathDense``),
so files written by any version of mpath-tf load as long as the classes are
registered, which importing their modules does; ``load_model`` imports them
all, whatever else the caller has imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpath_tf.errors import DamagedFileError


def load_model(path: str | os.PathLike):
    """Load a ``.keras`` file that holds mpath-tf layers.

    Keras finds custom layers only once their classes are registered, that
    is, once their modules are imported; ``import mpath_tf`` alone does not
    import them (the API is loaded lazily), so load through this function.
    A supernet saved in the layout of earlier versions (``MLPSupernet``,
    ``GatedSupernet``, ``HyperSupernet``) comes back as the ``Supernet``
    that computes the same function.

    Args:
        path: The ``.keras`` file.

    Returns:
        The Keras model.

    Raises:
        FileNotFoundError: The file does not exist.
        DamagedFileError: It exists but is not a model Keras can load.

    Example:
        >>> import tempfile, pathlib
        >>> from mpath_tf import build_supernet, derive
        >>> from mpath_tf.storage import atomic_save_model
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.keras"
        >>> atomic_save_model(derive(build_supernet((4,), 2, 2, 4, seed=0), 2), path)
        >>> load_model(path).name
        'mpath-2-4-b2'
    """
    import keras

    # Importing a module registers its classes; supernet imports legacy (the
    # classes of earlier versions).
    import mpath_tf.core.conv  # noqa: F401  (registers MembraneConv2D, PathConv2D)
    import mpath_tf.core.layers  # noqa: F401  (registers the layers)
    from mpath_tf.core.supernet import upgrade

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        model = keras.saving.load_model(path)
    except Exception as err:  # zip, h5 and config errors of every kind
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedFileError(path, f"not a loadable .keras model: {reason[:200]}") from err
    return upgrade(model)  # a supernet of 0.1's layout: the same function as a Supernet
