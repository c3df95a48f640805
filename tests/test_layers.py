"""MembraneDense and PathDense against NumPy references, configs and files."""

import keras
import numpy as np
import pytest

from mpath_tf import MembraneDense, PathDense


def block_diagonal(blocks):
    width = sum(b.shape[0] for b in blocks)
    out = np.zeros((width, width), dtype="float32")
    lo = 0
    for b in blocks:
        out[lo : lo + len(b), lo : lo + len(b)] = b
        lo += len(b)
    return out


def test_membrane_dense_hand_computed():
    layer = MembraneDense(2, activation=None)
    layer.build((None, 2))
    layer.set_weights([np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -0.5])])
    P = np.array([[1.0, 0.5], [0.5, 1.0]], dtype="float32")
    x = np.array([[1.0, 1.0]], dtype="float32")
    # [1, 1] @ [[1, 1], [1.5, 4]] + [0.5, -0.5] = [3, 4.5]
    np.testing.assert_allclose(np.asarray(layer(x, P)), [[3.0, 4.5]])


def test_membrane_dense_matches_numpy(rng):
    layer = MembraneDense(5, activation="relu")
    x = rng.normal(size=(4, 5)).astype("float32")
    P = rng.uniform(size=(5, 5)).astype("float32")
    out = np.asarray(layer(x, P))
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(out, np.maximum(x @ (kernel * P) + bias, 0), atol=1e-6)


@pytest.mark.parametrize("implementation", ["batch_matmul", "per_path"])
@pytest.mark.parametrize(
    "widths",
    [[3, 1, 4], [2, 2, 1, 3, 1, 2], [5], [1, 1, 1]],
    ids=["unequal", "repeated-widths", "one-path", "all-ones"],
)
def test_path_dense_matches_block_diagonal_numpy(widths, implementation, rng):
    width = sum(widths)
    layer = PathDense(widths, activation=None, implementation=implementation)
    layer.build((None, width))
    blocks = [rng.normal(size=(w, w)).astype("float32") for w in widths]
    bias = rng.normal(size=width).astype("float32")
    layer.set_blocks(blocks, bias)
    x = rng.normal(size=(6, width)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(layer(x)), x @ block_diagonal(blocks) + bias, atol=1e-5
    )
    for got, expected in zip(layer.get_blocks(), blocks):
        np.testing.assert_array_equal(got, expected)


def test_path_dense_hand_computed():
    layer = PathDense([1, 2], activation=None, implementation="batch_matmul")
    layer.build((None, 3))
    layer.set_blocks([np.array([[2.0]]), np.array([[1.0, 0.0], [1.0, 3.0]])], [0, 0, 1])
    # [1, 2, 3] -> [1*2, 2*1 + 3*1, 2*0 + 3*3 + 1] = [2, 5, 10]
    np.testing.assert_allclose(np.asarray(layer(np.array([[1.0, 2.0, 3.0]]))), [[2, 5, 10]])


def test_the_old_name_of_batch_matmul_still_loads():
    """Files of earlier versions say implementation="grouped" for what is now
    batch_matmul; they load as batch_matmul, and a config round-trips."""
    layer = PathDense.from_config({**PathDense([1, 2]).get_config(), "implementation": "grouped"})
    assert layer.implementation == "batch_matmul"
    assert PathDense.from_config(layer.get_config()).implementation == "batch_matmul"
    with pytest.raises(ValueError, match="implementation"):
        PathDense([1, 2], implementation="split")  # a convolution's, not a dense layer's


def test_batch_matmul_gradients_match_per_path(rng):
    import tensorflow as tf

    widths = [2, 1, 3, 1, 2]
    x = tf.constant(rng.normal(size=(4, 9)).astype("float32"))
    grads = []
    for implementation in ("batch_matmul", "per_path"):
        layer = PathDense(widths, activation="relu", implementation=implementation)
        layer.build((None, 9))
        layer.set_blocks([np.ones((w, w)) * (k + 1) for k, w in enumerate(widths)],
                         np.linspace(-1, 1, 9))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.kernel, layer.bias])])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_path_dense_stores_only_the_blocks():
    layer = PathDense([5, 2, 1])
    layer.build((None, 8))
    assert layer.count_params() == 25 + 4 + 1 + 8
    assert layer.kernel.shape == (30,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"width": 1}, "Received: width=1", id="width-1"),
        pytest.param({"width": 2.5}, "Received: width=2.5", id="width-float"),
    ],
)
def test_membrane_dense_rejects_bad_width(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MembraneDense(**kwargs)


def test_membrane_dense_rejects_mismatched_input():
    with pytest.raises(ValueError, match="expects inputs of width 4"):
        MembraneDense(4)(np.ones((1, 3), "float32"), np.ones((4, 4), "float32"))


@pytest.mark.parametrize(
    "widths", [[], [2, 0], [2, -1], 3, [1.5]], ids=["empty", "zero", "negative", "int", "float"]
)
def test_path_dense_rejects_bad_widths(widths):
    with pytest.raises(ValueError, match="path_widths"):
        PathDense(widths)


def test_path_dense_rejects_unknown_implementation():
    with pytest.raises(ValueError, match="Received: implementation='dense'"):
        PathDense([2], implementation="dense")


def test_path_dense_rejects_widths_that_do_not_sum_to_input():
    with pytest.raises(ValueError, match=r"sum to 5, but the input has width 6"):
        PathDense([2, 3])(np.ones((1, 6), "float32"))


@pytest.mark.parametrize(
    "layer",
    [
        pytest.param(MembraneDense(4, activation="tanh", name="m"), id="membrane"),
        pytest.param(PathDense([1, 3, 2], activation="relu", name="p"), id="path"),
        pytest.param(PathDense([2, 2], implementation="per_path"), id="path-per-path"),
    ],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_path_dense_model_save_load_same_predictions(tmp_path, rng):
    inputs = keras.Input((6,))
    outputs = PathDense([1, 3, 2], activation="relu")(inputs)
    model = keras.Model(inputs, outputs)
    x = rng.normal(size=(5, 6)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[1], PathDense)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
