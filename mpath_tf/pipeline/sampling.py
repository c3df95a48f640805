"""Which path counts to fine-tune: evenly spaced, or where the accuracy curve
is least certain.

``even`` is the paper's choice (``mpath_tf.pipeline.steps.sample_path_counts``).
``adaptive`` starts from the two ends and the geometric middle of [2, W],
then repeatedly takes the path count where a Gaussian process fitted to the
accuracies measured so far (over log path count, RBF plus white-noise kernel)
is least certain. Accuracy changes fastest at few paths, so the log spacing
and the uncertainty both draw samples there.
"""

from __future__ import annotations

import warnings

import numpy as np

SAMPLINGS = ("even", "adaptive")


def initial_path_counts(width: int) -> list[int]:
    """The first adaptive samples: 2, W and their geometric middle.

    Example:
        >>> initial_path_counts(200)
        [2, 20, 200]
    """
    return sorted({2, int(round(np.sqrt(2 * width))), width} & set(range(2, width + 1)))


def next_path_count(measured: dict[int, float], width: int, exclude=()) -> int | None:
    """The path count in [2, W] where the accuracy is least certain.

    Args:
        measured: Accuracy of each path count fine-tuned so far (>= 2 of them).
        width: W.
        exclude: Path counts not to propose (being fine-tuned elsewhere).

    Returns:
        A path count, or None when every one is measured or excluded.

    Example:
        >>> next_path_count({2: 0.98, 20: 0.97, 200: 0.90}, 200) in range(21, 200)
        True
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    taken = set(measured) | set(exclude)
    candidates = np.array([b for b in range(2, width + 1) if b not in taken])
    if candidates.size == 0:
        return None
    if len(measured) < 2:
        return int(candidates[0])
    b = np.array(sorted(measured), dtype="float64")
    y = np.array([measured[int(v)] for v in b])
    scale = y.std() or 1.0
    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (0.2, 10.0))
              + WhiteKernel(1e-2, (1e-6, 1.0)))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():  # a few points often put a kernel parameter on a bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(np.log(b)[:, None], (y - y.mean()) / scale)
    _, std = gp.predict(np.log(candidates.astype("float64"))[:, None], return_std=True)
    return int(candidates[int(np.argmax(std))])
