"""Connection permeabilities from membrane permeabilities (Eq. 2 of the paper).

A network of width W has W - 1 membranes; membrane k sits between neurons k
and k + 1 and has permeability p_k = sigmoid(Omega_k) (Eq. 1). A connection
between neurons i and j crosses membranes min(i, j) .. max(i, j) - 1, and its
permeability is the smallest of theirs (Eq. 2); it is 1 when i == j.

Computing the (W, W) matrix with a loop over neurons would cost O(W^2) Python
work per training step, and gathers and scatters over W^2 entries are slow on
CPU. Instead, every step is a handful of dense O(W^2) tensor ops:

1. A sparse table for range-minimum queries: level k holds the minimum of every
   window of 2^k consecutive membranes (K = floor(log2(W - 1)) + 1 levels).
2. For i < j, the range [i, j) of span s = j - i is covered exactly by the
   two windows of level k(s) = floor(log2 s) that start at i and end at j.
   In "relative" coordinates (i, s) the first window's value is
   table[i, k(s)], which is a (W, K) @ (K, W) product with a constant one-hot
   level matrix; a pad-and-reshape skew (the relative-position trick of
   Transformer-XL) moves it to absolute coordinates (i, j). The window ending
   at j is the same construction on the reversed membranes, flipped back.
3. P is the minimum of the two, mirrored to the lower triangle, 1 on the
   diagonal.

Gradients flow to the membrane that attains each minimum, as for ``min``.
"""

from __future__ import annotations

import bisect

import numpy as np
from keras import ops

# A value larger than any sigmoid output; pads windows that run off the end.
_PAD = 2.0


class RangeMinIndex:
    """Constant tensors of Eq. 2 for one width; call it on permeabilities.

    Args:
        width: Number of neurons W (at least 2).

    Raises:
        ValueError: If ``width`` is below 2.

    Example:
        >>> import numpy as np
        >>> index = RangeMinIndex(3)
        >>> np.asarray(index(np.array([0.25, 0.75], dtype="float32")))
        array([[1.  , 0.25, 0.25],
               [0.25, 1.  , 0.75],
               [0.25, 0.75, 1.  ]], dtype=float32)
    """

    def __init__(self, width: int):
        if isinstance(width, bool) or int(width) != width or width < 2:
            raise ValueError(
                f"A membrane layer needs at least 2 neurons. Received: width={width}"
            )
        self.width = int(width)
        n = self.width - 1  # number of membranes
        self.levels = int(np.floor(np.log2(n))) + 1
        span = np.arange(self.width)
        level = np.floor(np.log2(np.maximum(span, 1))).astype(int)
        one_hot = level[None, :] == np.arange(self.levels)[:, None]
        one_hot[:, 0] = False  # span 0 is the diagonal, set to 1 below
        self.level_one_hot = one_hot.astype("float32")  # (K, W)
        i, j = np.meshgrid(span, span, indexing="ij")
        self.upper = j > i
        self.diagonal = i == j

    def table(self, p):
        """Sparse table, (W, K): entry [m, k] = min(p[m : m + 2^k]), padded."""
        columns = [p]
        current = p
        for k in range(1, self.levels):
            shift = 1 << (k - 1)
            pad = ops.full((shift,), _PAD, dtype=p.dtype)
            current = ops.minimum(current, ops.concatenate([current[shift:], pad], 0))
            columns.append(current)
        table = ops.stack(columns, axis=1)  # (W - 1, K)
        return ops.concatenate([table, ops.full((1, self.levels), _PAD, p.dtype)], 0)

    def _window_from_start(self, p):
        """(W, W) whose [i, j] (j > i) is the min of the level-k(j-i) window at i."""
        relative = ops.matmul(self.table(p), self.level_one_hot)  # (W, W): [i, span]
        w = self.width
        # Skew: absolute[i, j] = relative[i, j - i] for j >= i (rest unused).
        padded = ops.pad(relative, [[0, 0], [0, 1]])  # (W, W + 1)
        return ops.reshape(ops.reshape(padded, (-1,))[: w * w], (w, w))

    def __call__(self, p):
        """Return the (W, W) connection permeability matrix for ``p``."""
        p = ops.convert_to_tensor(p)
        from_start = self._window_from_start(p)
        # The window ending at j is the window starting at W-1-j in the
        # reversed network; flip both axes back and transpose.
        to_end = ops.transpose(ops.flip(self._window_from_start(ops.flip(p, 0)), (0, 1)))
        upper = ops.minimum(from_start, to_end)
        full = ops.where(self.upper, upper, ops.transpose(upper))
        return ops.where(self.diagonal, ops.ones_like(full), full)


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
        >>> P = connection_permeability(np.array([0.875, 0.125, 0.5], dtype="float32"))
        >>> float(P[0, 3]), float(P[2, 3])
        (0.125, 0.5)
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


def check_paths(paths, width: int) -> int:
    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)):
        raise ValueError(f"`paths` must be an integer. Received: paths={paths!r}")
    if not 1 <= paths <= width:
        raise ValueError(
            f"`paths` must be in [1, {width}] for a network of width {width} "
            f"(1 path is the equivalent MLP, {width} paths are single neurons). "
            f"Received: paths={paths}"
        )
    return int(paths)


def membrane_order(permeability) -> np.ndarray:
    """Membrane indices sorted by ascending permeability (stable for ties).

    Args:
        permeability: The W - 1 membrane permeabilities.

    Returns:
        An int array of length W - 1; the first b - 1 entries are the membranes
        made impermeable for b paths.

    Example:
        >>> membrane_order([0.9, 0.1, 0.5]).tolist()
        [1, 2, 0]
    """
    return np.argsort(np.asarray(permeability, dtype="float64"), kind="stable")


def widths_from_cuts(membranes, width: int) -> list[int]:
    """Path widths, in neuron order, when the given membranes are cut.

    Membrane k separates neuron k from neuron k + 1, so cutting membranes
    ``{k}`` splits [0, W) at ``k + 1``.

    Args:
        membranes: Indices in [0, W - 2] of the cut membranes, in any order.
        width: Layer width W.

    Returns:
        ``len(membranes) + 1`` positive widths that sum to W.

    Example:
        >>> widths_from_cuts([2, 0], 5)
        [1, 2, 2]
    """
    cuts = np.sort(np.asarray(membranes, dtype=int)) + 1
    return np.diff(np.concatenate([[0], cuts, [width]])).astype(int).tolist()


def widths_from_permeability(permeability, paths: int) -> list[int]:
    """Path widths, in neuron order, for ``paths`` paths.

    Args:
        permeability: The W - 1 membrane permeabilities.
        paths: Path count b in [1, W].

    Returns:
        b positive widths that sum to W.

    Raises:
        ValueError: If ``paths`` is outside [1, W].

    Example:
        >>> widths_from_permeability([0.9, 0.1, 0.5], paths=2)
        [2, 2]
    """
    p = np.asarray(permeability)
    width = p.shape[0] + 1
    paths = check_paths(paths, width)
    return widths_from_cuts(membrane_order(p)[: paths - 1], width)


def squares_by_paths(permeability) -> dict[int, int]:
    """``sum(w_i^2)`` over the path widths of every path count b in [1, W].

    Adds one cut at a time in permeability order and updates the sum, so the
    whole map costs O(W log W): a block-diagonal layer of b paths holds that
    many weights per kernel tap, which is what parameter counts need.

    Args:
        permeability: The W - 1 membrane permeabilities.

    Returns:
        ``{b: sum of squared path widths}``; ``{1: W^2, ..., W: W}``.

    Example:
        >>> squares_by_paths([0.9, 0.1, 0.5])
        {1: 16, 2: 8, 3: 6, 4: 4}
    """
    width = len(permeability) + 1
    bounds, squares = [0, width], width * width  # sorted cut positions, including both ends
    result = {1: squares}
    for b, membrane in enumerate(membrane_order(permeability), start=2):
        cut = int(membrane) + 1
        k = bisect.bisect_left(bounds, cut)
        lo, hi = bounds[k - 1], bounds[k]
        squares += (cut - lo) ** 2 + (hi - cut) ** 2 - (hi - lo) ** 2
        bounds.insert(k, cut)
        result[b] = squares
    return result
