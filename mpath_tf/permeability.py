"""Connection permeabilities from membrane permeabilities (Eq. 2 of the paper).

A network of width W has W - 1 membranes; membrane k sits between neurons k
and k + 1 and has permeability p_k = sigmoid(Omega_k) (Eq. 1). A connection
between neurons i and j crosses membranes min(i, j) .. max(i, j) - 1, and its
permeability is the smallest of theirs (Eq. 2); it is 1 when i == j.

Computing the (W, W) matrix with a loop over neurons would make every training
step cost O(W^2) Python work. Instead we use a sparse table for range-minimum
queries: level k holds the minimum of every window of 2^k membranes, and any
range [lo, hi) is covered by two (overlapping) windows of the largest 2^k that
fits. Which windows cover which connection depends only on W, so the index
arrays are built once with NumPy and every step is two gathers and one minimum.
Gradients flow to the membrane that attains the minimum, as for ``min`` itself.
"""

from __future__ import annotations

import numpy as np
from keras import ops

# A value larger than any sigmoid output; pads windows that run off the end.
_PAD = 2.0


class RangeMinIndex:
    """Precomputed gather indices that turn a sparse table into Eq. 2.

    Args:
        width: Number of neurons W (at least 2).

    Raises:
        ValueError: If ``width`` is below 2.

    Example:
        >>> import numpy as np
        >>> index = RangeMinIndex(3)
        >>> np.asarray(index(np.array([0.2, 0.7], dtype="float32")))
        array([[1. , 0.2, 0.2],
               [0.2, 1. , 0.7],
               [0.2, 0.7, 1. ]], dtype=float32)
    """

    def __init__(self, width: int):
        if int(width) < 2:
            raise ValueError(
                f"A membrane layer needs at least 2 neurons. Received: width={width}"
            )
        self.width = int(width)
        n = self.width - 1  # number of membranes
        self.levels = max(1, int(np.floor(np.log2(n))) + 1)
        i, j = np.meshgrid(np.arange(self.width), np.arange(self.width), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        span = hi - lo  # number of membranes crossed, (W, W)
        level = np.floor(np.log2(np.maximum(span, 1))).astype(np.int64)
        # Two windows of length 2^level starting at lo and at hi - 2^level.
        first = level * n + np.minimum(lo, n - 1)
        second = level * n + np.clip(hi - (1 << level), 0, n - 1)
        self.first = first.astype("int32")
        self.second = second.astype("int32")
        self.diagonal = span == 0

    def table(self, p):
        """Sparse table of window minima, flattened to (levels * (W - 1),)."""
        rows = [p]
        current = p
        for k in range(1, self.levels):
            shift = 1 << (k - 1)
            pad = ops.full((shift,), _PAD, dtype=p.dtype)
            shifted = ops.concatenate([current[shift:], pad], axis=0)
            current = ops.minimum(current, shifted)
            rows.append(current)
        return ops.reshape(ops.stack(rows), (-1,))

    def __call__(self, p):
        """Return the (W, W) connection permeability matrix for ``p``."""
        p = ops.convert_to_tensor(p)
        table = self.table(p)
        mins = ops.minimum(ops.take(table, self.first), ops.take(table, self.second))
        return ops.where(self.diagonal, ops.ones_like(mins), mins)


def connection_permeability(p):
    """Eq. 2: permeability of every connection between two layers of width W.

    Args:
        p: Membrane permeabilities, shape (W - 1,), values in [0, 1].

    Returns:
        A symmetric (W, W) tensor whose entry (i, j) is the minimum of
        ``p[min(i, j):max(i, j)]``, and 1 on the diagonal.

    Raises:
        ValueError: If ``p`` has fewer than one element.

    Example:
        >>> import numpy as np
        >>> P = connection_permeability(np.array([0.9, 0.1, 0.5], dtype="float32"))
        >>> float(P[0, 3])
        0.1
    """
    width = int(p.shape[0]) + 1
    return RangeMinIndex(width)(p)


def discrete_permeability(widths: list[int]) -> np.ndarray:
    """The {0, 1} connection matrix of paths with the given widths.

    Args:
        widths: Widths of consecutive paths; they sum to W.

    Returns:
        A (W, W) float32 array: 1 where both neurons are on the same path.

    Example:
        >>> discrete_permeability([1, 2]).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    """
    path_of = np.repeat(np.arange(len(widths)), widths)
    return (path_of[:, None] == path_of[None, :]).astype("float32")
