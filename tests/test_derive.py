"""The central invariant: a derived model equals the discretized supernet."""

import time

import numpy as np
import pytest

from mpath_tf import build_supernet, derive, discrete_permeability
from mpath_tf.core.derivation import count_parameters
from mpath_tf import parameter_counts, path_widths
from mpath_tf.core.derivation import parameter_counts_from_permeability
from mpath_tf.core.permeability import widths_from_permeability


@pytest.fixture(scope="module")
def trained_net():
    rng = np.random.default_rng(0)
    net = build_supernet((4, 5), num_classes=3, depth=4, width=12, seed=3)
    net.compile("adam", "sparse_categorical_crossentropy")
    net.fit(rng.normal(size=(64, 4, 5)), rng.integers(0, 3, 64), epochs=3, verbose=0)
    return net


@pytest.mark.parametrize("paths", [1, 2, 3, 5, 8, 12])
def test_derived_equals_discretized_supernet(trained_net, paths):
    x = np.random.default_rng(1).normal(size=(16, 4, 5)).astype("float32")
    widths = path_widths(trained_net, paths)
    assert len(widths) == paths and sum(widths) == 12
    model = derive(trained_net, paths)
    expected = trained_net(x, permeability=discrete_permeability(widths)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5, rtol=0)


def test_unequal_path_widths_occur(trained_net):
    assert len(set(path_widths(trained_net, 3))) > 1


def test_one_path_is_the_supernet_with_every_membrane_open(trained_net):
    x = np.random.default_rng(2).normal(size=(8, 4, 5)).astype("float32")
    ones = np.ones((12, 12), "float32")
    np.testing.assert_allclose(
        derive(trained_net, 1).predict(x, verbose=0),
        trained_net(x, permeability=ones).numpy(),
        atol=1e-5,
    )


def test_pruning_cuts_the_least_permeable_membranes():
    # Membranes 0..4 with permeabilities; the two lowest are 1 (0.1) and 3 (0.2).
    p = [0.9, 0.1, 0.8, 0.2, 0.7]
    assert widths_from_permeability(p, 3) == [2, 2, 2]
    assert widths_from_permeability(p, 2) == [2, 4]
    assert widths_from_permeability(p, 6) == [1] * 6


def test_ties_are_broken_by_position():
    assert widths_from_permeability([0.5, 0.5, 0.5], 2) == [1, 3]


@pytest.mark.parametrize("paths", [0, 13, -1])
def test_paths_outside_range_are_refused(trained_net, paths):
    with pytest.raises(ValueError, match=rf"paths` must be in \[1, 12\].*paths={paths}"):
        derive(trained_net, paths)


def test_parameter_counts_match_built_models(trained_net):
    counts = parameter_counts(trained_net)
    assert sorted(counts) == list(range(1, 13))
    for b in (1, 2, 4, 7, 12):
        model = derive(trained_net, b)
        widths = path_widths(trained_net, b)
        assert model.count_params() == counts[b] == count_parameters(20, 3, 4, widths)
    values = [counts[b] for b in range(1, 13)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_parameter_count_map_for_width_500_is_fast():
    p = np.random.default_rng(0).uniform(size=499)
    start = time.perf_counter()
    counts = parameter_counts_from_permeability(p, 784, 10, 4)
    assert time.perf_counter() - start < 1.0
    assert counts[1] == 1_149_010  # mlp-4-500
    assert counts[500] == 784 * 500 + 500 + 3 * (500 + 500) + 500 * 10 + 10
    for b in (2, 37, 250, 499):  # spot-check against the direct formula
        widths = widths_from_permeability(p, b)
        assert counts[b] == count_parameters(784, 10, 4, widths)


def test_derived_model_round_trips_through_keras_file(trained_net, tmp_path):
    import keras

    model = derive(trained_net, 4)
    x = np.random.default_rng(3).normal(size=(5, 4, 5)).astype("float32")
    model.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("paths", [2, 5, 12])
def test_both_implementations_compute_the_same_function(trained_net, paths):
    from mpath_tf.core.derivation import with_implementation

    x = np.random.default_rng(4).normal(size=(8, 4, 5)).astype("float32")
    grouped = derive(trained_net, paths, implementation="batch_matmul")
    per_path = with_implementation(grouped, "per_path")
    assert per_path.get_layer("path_dense_1").implementation == "per_path"
    np.testing.assert_allclose(
        per_path.predict(x, verbose=0), grouped.predict(x, verbose=0), atol=1e-6
    )
