"""Channel paths in convolutions: ``MembraneConv2D`` against Keras's own
convolution, ``PathConv2D`` against a dense kernel holding its blocks, a
user's CNN through ``to_supernet`` and ``derive`` (the central invariant),
and the exported file holding only the diagonal blocks."""

import keras
import numpy as np
import pytest

from converters import Float32, export_tflite, op_summary, run_tflite
from mpath_tf import derive, discrete_permeability, load_model, parameter_counts, to_dense
from mpath_tf import to_supernet
from mpath_tf.core.conv import MembraneConv2D, PathConv2D


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _keras_conv(kernel, bias, x, **settings):
    """An independent reference: Keras's Conv2D with the given weights."""
    layer = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], **settings)
    layer.build(x.shape)
    layer.set_weights([kernel, bias])
    return layer(x).numpy()


def _block_diagonal(blocks):
    """The dense (kh, kw, C, C) kernel with ``blocks`` on its diagonal, zeros elsewhere."""
    width = sum(b.shape[-1] for b in blocks)
    kernel = np.zeros((*blocks[0].shape[:2], width, width), "float32")
    lo = 0
    for block in blocks:
        hi = lo + block.shape[-1]
        kernel[:, :, lo:hi, lo:hi] = block
        lo = hi
    return kernel


def test_membrane_conv_multiplies_the_kernel_over_its_channel_axes(rng):
    layer = MembraneConv2D(5, 3, padding="same", strides=2, activation="relu")
    x = rng.normal(size=(2, 7, 7, 5)).astype("float32")
    p = rng.uniform(size=(5, 5)).astype("float32")
    y = layer(x, p).numpy()
    kernel, bias = layer.get_weights()
    want = _keras_conv(kernel * p[None, None], bias, x, padding="same", strides=2,
                       activation="relu")
    np.testing.assert_allclose(y, want, atol=1e-5)
    assert y.shape == layer.compute_output_shape(x.shape)


def test_membrane_conv_hand_computed():
    """1x1 kernel of ones, two channels, the membrane closed: no crossing."""
    layer = MembraneConv2D(2, 1, use_bias=False)
    layer.build((None, 1, 1, 2))
    layer.set_weights([np.ones((1, 1, 2, 2), "float32")])
    x = np.array([[[[1.0, 10.0]]]], "float32")
    np.testing.assert_allclose(layer(x, np.eye(2, dtype="float32")).numpy(), [[[[1.0, 10.0]]]])
    np.testing.assert_allclose(layer(x, np.ones((2, 2), "float32")).numpy(), [[[[11.0, 11.0]]]])


@pytest.mark.parametrize("implementation", ["grouped", "split"])
@pytest.mark.parametrize("widths", [[3, 3, 2, 1, 1, 1], [8], [1, 1, 1, 1], [2, 5, 1]],
                         ids=["mixed", "one-path", "depthwise", "unequal"])
def test_path_conv_equals_a_conv_with_its_blocks_on_the_diagonal(widths, implementation, rng):
    layer = PathConv2D(widths, 3, padding="valid", implementation=implementation)
    c = sum(widths)
    x = rng.normal(size=(2, 6, 6, c)).astype("float32")
    layer.build(x.shape)
    blocks = [rng.normal(size=(3, 3, w, w)).astype("float32") for w in widths]
    bias = rng.normal(size=(c,)).astype("float32")
    layer.set_blocks(blocks, bias)
    for got, want in zip(layer.get_blocks(), blocks):
        np.testing.assert_array_equal(got, want)
    want = _keras_conv(_block_diagonal(blocks), bias, x)
    np.testing.assert_allclose(layer(x).numpy(), want, atol=1e-4)
    assert layer.count_params() == 9 * sum(w * w for w in widths) + c  # no zero stored


def test_path_conv_refuses_bad_arguments():
    with pytest.raises(ValueError, match="Received: path_widths=\\[0"):
        PathConv2D([0, 2], 3)
    with pytest.raises(ValueError, match="Received: implementation='fast'"):
        PathConv2D([2], 3, implementation="fast")
    with pytest.raises(ValueError, match="Received: filters=1"):
        MembraneConv2D(1, 3)
    with pytest.raises(ValueError, match="expects channels-last inputs"):
        PathConv2D([2, 2], 3)(np.zeros((1, 4, 4, 3), "float32"))


def users_cnn(seed=0, batch_norm=True):
    """A user's CNN: a conv stage of 8 channels (with batch normalization
    and pooling inside it), then a Dense stack of 16."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=not batch_norm)(h)
    if batch_norm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="cnn")


def _hard(net, paths):
    return [discrete_permeability(widths) for widths in net.derived_layout(paths)]


def test_a_users_cnn_becomes_a_supernet_and_derives_exactly(rng):
    user = users_cnn()
    net = to_supernet(user)
    assert net.widths == [8, 16] and net.depth == 3  # the conv stage first
    assert [type(l).__name__ for l in net.membrane_layers] == ["MembraneConv2D"] * 2
    x = rng.normal(size=(6, 8, 8, 1)).astype("float32")
    # weights kept: without membranes it is the user's model
    np.testing.assert_allclose(to_dense(net).predict(x, verbose=0), user.predict(x, verbose=0),
                               atol=1e-5)
    net.omegas[0].assign(rng.normal(size=7))
    for paths in [1, 3, 8, (4, 2), (8, 16)]:
        model = derive(net, paths)
        np.testing.assert_allclose(model.predict(x, verbose=0),
                                   net(x, permeability=_hard(net, paths)).numpy(), atol=1e-5,
                                   err_msg=f"paths={paths}")
    counts = parameter_counts(net)
    for b in (1, 2, 5, 8):
        assert counts[b] == derive(net, b).count_params(), b
    assert counts[1] == to_dense(net).count_params()


def test_a_derived_cnn_round_trips_and_exports_only_its_blocks(rng, tmp_path):
    net = to_supernet(users_cnn(batch_norm=False))  # no batch norm for the converter to fold
    net.omegas[0].assign(rng.normal(size=7))
    model = derive(net, 4)
    widths = model.get_layer("path_" + net.membrane_layers[0].name.removeprefix(
        "membrane_")).path_widths
    x = rng.normal(size=(5, 8, 8, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    path = export_tflite(model, tmp_path / "m.tflite", Float32())
    np.testing.assert_allclose(run_tflite(path, x), model.predict(x, verbose=0), atol=1e-5)
    summary = op_summary(path)
    # the first conv (1 -> 8) is dense; the two derived ones hold 9 * sum(w^2)
    # weights and 8 biases each
    first = 9 * 1 * 8 + 8
    derived = 2 * (9 * sum(w * w for w in widths) + 8)
    assert summary["conv_weights"] == first + derived, (summary, widths)
    dense = op_summary(export_tflite(to_dense(net), tmp_path / "d.tflite", Float32()))
    assert dense["conv_weights"] == first + 2 * (9 * 64 + 8) > summary["conv_weights"]
