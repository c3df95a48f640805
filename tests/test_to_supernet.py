"""``to_supernet``: a user's Keras model becomes a supernet (weights kept),
and ``derive`` strips it back to block-diagonal layers with the same
function as the hard-thresholded supernet (the central invariant)."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mpath_tf import build_supernet, derive, discrete_permeability, load_model, parameter_counts
from mpath_tf import to_dense, to_supernet
from mpath_tf.core.layers import MembraneDense, PathDense


def uneven_mlp(seed=0):
    """A user's Sequential MLP of uneven sizes: 64-128-128-128-32."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(5, activation="softmax"),
    ], name="uneven")


def conv_functional(seed=0):
    """A Functional model: a small conv feature extractor whose two branches
    are concatenated (a join that is not a residual block, so the part before
    the chain is a nested trunk), then a Dense stack."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8))
    h = keras.layers.Reshape((8, 8, 1))(inputs)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(h)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(a)
    h = keras.layers.Concatenate()([a, b])
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(24, activation="relu")(h)
    h = keras.layers.Dense(24, activation="relu")(h)
    h = keras.layers.Dense(24, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="convnet")


def _hard(net, paths):
    """The supernet's permeabilities discretized to the layout of ``paths``."""
    layout = net.derived_layout(paths)
    return [discrete_permeability(widths) for widths in layout]


def _check_invariant(net, x, counts):
    for paths in counts:
        model = derive(net, paths)
        np.testing.assert_allclose(model.predict(x, verbose=0),
                                   net(x, permeability=_hard(net, paths)).numpy(),
                                   atol=1e-5, err_msg=f"paths={paths}")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_a_sequential_mlp_of_uneven_sizes(rng):
    user = uneven_mlp()
    net = to_supernet(user)
    assert (net.width, net.depth) == (128, 3)  # the run 128-128-128, its first layer dense
    assert [type(l).__name__ for l in net.chain].count("MembraneDense") == 2
    x = rng.normal(size=(16, 20)).astype("float32")
    # the trained weights are kept: without membranes it is the user's model
    np.testing.assert_allclose(to_dense(net).predict(x, verbose=0), user.predict(x, verbose=0),
                               atol=1e-6)
    for layer in net.membrane_layers:
        layer.kernel.assign(layer.kernel + 0.01)  # the supernet's weights are its own
    np.testing.assert_allclose(to_dense(to_supernet(user)).predict(x, verbose=0),
                               user.predict(x, verbose=0), atol=1e-6)
    _check_invariant(net, x, [1, 2, 7, 128])


def test_a_functional_model_with_a_conv_trunk(rng):
    user = conv_functional()
    net = to_supernet(user)
    assert net.trunk is not None  # the branches and their join stay in one nested model
    assert (net.width, net.depth) == (24, 3)
    x = rng.normal(size=(8, 8, 8)).astype("float32")
    np.testing.assert_allclose(to_dense(net).predict(x, verbose=0), user.predict(x, verbose=0),
                               atol=1e-6)
    _check_invariant(net, x, [1, 3, 24])


def test_the_built_in_mlp_is_to_supernet_of_build_mlp(rng):
    net = build_supernet((8, 8), 10, depth=4, width=16, seed=0)
    assert [l.name for l in net.membrane_layers] == [
        "membrane_dense_1", "membrane_dense_2", "membrane_dense_3"]
    x = rng.normal(size=(8, 8, 8)).astype("float32")
    _check_invariant(net, x, [1, 4, 16])
    assert derive(net, 4).get_layer("path_dense_1").path_widths == net.derived_widths(4)


@pytest.mark.parametrize("make", [uneven_mlp, conv_functional, None], ids=["uneven", "conv", "mlp"])
def test_parameter_counts_come_from_the_derived_layers(make):
    net = to_supernet(make()) if make else build_supernet((8, 8), 10, 4, 16, seed=0)
    counts = parameter_counts(net)
    assert sorted(counts) == list(range(1, net.width + 1))
    for b in (1, 2, 5, net.width):
        assert counts[b] == derive(net, b).count_params(), b
    assert counts[1] == to_dense(net).count_params()


def test_several_stacks_one_count_each(rng):
    keras.utils.set_random_seed(1)
    user = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(12, activation="relu"), keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(8, activation="relu"), keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(3, activation="softmax")])
    net = to_supernet(user)
    assert net.widths == [12, 8]
    x = rng.normal(size=(10, 6)).astype("float32")
    _check_invariant(net, x, [(4, 2), (1, 8), 3])
    model = derive(net, 3)  # one count: the first stack; the others keep one path
    assert [l.path_widths for l in model.layers if isinstance(l, PathDense)][-1] == [8]
    with pytest.raises(ValueError, match="one path count per stack"):
        derive(net, (2, 2, 2))
    assert to_supernet(user, layers=[user.layers[3].name]).widths == [8]


def test_a_model_without_a_stack_is_refused_with_what_is_needed():
    user = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")], name="pyramid")
    with pytest.raises(ValueError, match=r"pyramid has no stack to split.*consecutive Dense "
                                         r"layers of equal width.*dense.*\(32\)"):
        to_supernet(user)
    with pytest.raises(ValueError, match="`layers` names"):
        to_supernet(uneven_mlp(), layers=["no_such_layer"])


def test_the_classifier_and_softmax_layers_never_join_a_stack():
    user = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="relu"),
                             keras.layers.Dense(10, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])
    net = to_supernet(user)
    assert net.depth == 2 and isinstance(net.chain[1], MembraneDense)
    assert type(net.chain[-1]) is keras.layers.Dense


@pytest.mark.parametrize("make", [uneven_mlp, conv_functional], ids=["uneven", "conv"])
def test_a_supernet_round_trips_through_a_keras_file(make, tmp_path, rng):
    net = to_supernet(make())
    net.omega.assign(rng.normal(size=net.omega.shape))
    path = tmp_path / "net.keras"
    net.save(path)
    loaded = load_model(path)
    assert loaded.stacks == net.stacks and loaded.widths == net.widths
    assert [(type(l), l.name) for l in loaded.chain] == [(type(l), l.name) for l in net.chain]
    x = rng.normal(size=(4, *net.example_shape)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    assert loaded.derived_widths(5) == net.derived_widths(5)
    derived = derive(net, 5)
    derived.save(tmp_path / "derived.keras")
    np.testing.assert_allclose(load_model(tmp_path / "derived.keras").predict(x, verbose=0),
                               derived.predict(x, verbose=0), atol=1e-6)


def test_search_runs_on_a_users_model_through_the_cli(tmp_path):
    from mpath_tf.cli import cli

    user = conv_functional()
    user.save(tmp_path / "convnet.keras")
    run = tmp_path / "run"
    args = ["search", "--model", str(tmp_path / "convnet.keras"), "--epochs", "2",
            "--finetune-epochs", "1", "--samples", "2", "--no-bench", "--run-dir", str(run)]
    result = CliRunner().invoke(cli, args)
    results = json.loads((run / "results.json").read_text())
    # 0, or 1 exactly when the int8 file of this barely trained model missed its gates
    if results["chosen"]["exports"]["int8"]["verification"]["passed"]:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1 and "int8 file(s) missed their checks" in result.output
    assert results["settings"]["model"].endswith("convnet.keras")
    assert (results["settings"]["depth"], results["settings"]["width"]) == (3, 24)
    chosen = results["chosen"]
    assert sum(chosen["path_widths"]) == 24 and len(chosen["path_widths"]) == chosen["paths"]
    assert all((run / e["file"]).is_file() for e in chosen["exports"].values())
    assert chosen["exports"]["float32"]["verification"]["passed"]
    assert results["reference"]["parameters"] == parameter_counts(load_model(
        run / "supernet.keras"))[1]
    # another model in the same run directory is refused, nothing is lost
    conv_functional(seed=1).save(tmp_path / "convnet.keras")  # same path, other weights
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "model_sha256" in again.output, again.output
    assert (run / "results.json").is_file()


@pytest.mark.parametrize("model, message", [
    pytest.param(lambda: keras.Sequential([
        keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")],
        name="pyramid"), "no stack to split", id="no-stack"),
    pytest.param(uneven_mlp, "takes inputs of shape (20,), but the data's examples have shape "
                 "(8, 8)", id="input-shape"),
    pytest.param(lambda: keras.Sequential([
        keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)]),
        "must end in a softmax", id="logits"),
])
def test_a_model_the_search_cannot_use_is_refused_before_training(model, message, tmp_path):
    from mpath_tf.cli import cli

    model().save(tmp_path / "m.keras")
    result = CliRunner().invoke(cli, ["search", "--model", str(tmp_path / "m.keras"),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "--model" in result.output
    assert not (tmp_path / "run").exists()  # nothing started
