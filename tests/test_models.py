"""The supernet: one shared Omega, the paper's architecture, save/load."""

import keras
import numpy as np
import pytest

from mpath_tf import MembraneDense, Supernet, build_mlp, build_supernet
from mpath_tf.core.legacy import MLPSupernet
from tests.test_permeability import brute_force


def numpy_forward(net, x, P):
    """Reference forward pass that applies the same P in every upper layer."""
    first, *membranes, classifier = [layer for layer in net.chain if layer.weights]
    h = x.reshape(len(x), -1)
    k, b = first.get_weights()
    h = np.maximum(h @ k + b, 0)
    for layer in membranes:
        k, b = layer.get_weights()
        h = np.maximum(h @ (k * P) + b, 0)
    k, b = classifier.get_weights()
    z = h @ k + b
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_one_omega_shared_by_every_membrane_layer(rng):
    net = build_supernet((3, 2), num_classes=4, depth=4, width=7, seed=0)
    omegas = [w for w in net.weights if w.name == "omega"]
    assert len(omegas) == 1 and omegas[0].shape == (6,)
    assert all(len(layer.weights) == 2 for layer in net.membrane_layers)  # kernel, bias
    assert len(net.membrane_layers) == 3
    assert all(isinstance(layer, MembraneDense) for layer in net.membrane_layers)
    x = rng.normal(size=(5, 3, 2)).astype("float32")
    p = 1 / (1 + np.exp(-net.omega.numpy()))
    np.testing.assert_allclose(net(x).numpy(), numpy_forward(net, x, brute_force(p)), atol=1e-5)


def test_omega_initialized_uniform_minus_one_one():
    net = build_supernet((4,), num_classes=2, depth=2, width=500, seed=1)
    omega = net.omega.numpy()
    assert omega.min() >= -1 and omega.max() <= 1 and omega.std() > 0.5


def test_omega_receives_gradient_and_trains(rng):
    net = build_supernet((4,), num_classes=2, depth=3, width=5, seed=0)
    before = net.omega.numpy().copy()
    net.compile("adam", "sparse_categorical_crossentropy")
    net.fit(rng.normal(size=(32, 4)), rng.integers(0, 2, 32), epochs=2, verbose=0)
    assert not np.allclose(net.omega.numpy(), before)


def test_supernet_save_load_same_predictions(tmp_path, rng):
    net = build_supernet((8, 8), num_classes=10, depth=3, width=6, seed=0)
    x = rng.normal(size=(4, 8, 8)).astype("float32")
    net.save(tmp_path / "s.keras")
    loaded = keras.saving.load_model(tmp_path / "s.keras")
    assert isinstance(loaded, Supernet)
    assert loaded.stacks == net.stacks and loaded.name == net.name
    np.testing.assert_array_equal(loaded(x).numpy(), net(x).numpy())
    np.testing.assert_array_equal(loaded.omega.numpy(), net.omega.numpy())


def test_build_supernet_draws_the_weights_0_1_drew():
    """A seed gives the network it gave before the supernet was made by
    to_supernet (results keep their meaning across versions)."""
    net = build_supernet((8, 8), 10, 4, 16, seed=3, normalize=True)
    keras.utils.set_random_seed(3)
    old = MLPSupernet((8, 8), 10, 4, 16, normalize=True)
    old.build((None, 8, 8))
    np.testing.assert_array_equal(net.omega.numpy(), old.omega.numpy())
    for mine, theirs in zip([l for l in net.chain if l.weights],
                            old.layers_by_role):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_names_follow_the_paper():
    assert build_supernet((4,), 2, 4, 8).name == "mpath-4-8"
    assert build_mlp((4,), 2, 4, 8).name == "mlp-4-8"


def test_mlp_has_the_dense_parameter_count():
    # 784*500+500 + 3*(500*500+500) + 500*10+10
    assert build_mlp((28, 28), 10, 4, 500).count_params() == 1_149_010


@pytest.mark.parametrize(
    "args, match",
    [
        pytest.param(((4,), 2, 1, 8), "Received: depth=1", id="depth"),
        pytest.param(((4,), 2, 4, 1), "Received: width=1", id="width"),
        pytest.param(((4,), 1, 4, 8), "Received: num_classes=1", id="classes"),
        pytest.param(((0,), 2, 4, 8), "input_shape", id="shape"),
    ],
)
def test_bad_architecture_is_refused(args, match):
    with pytest.raises(ValueError, match=match):
        build_supernet(*args)
