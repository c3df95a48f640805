"""Datasets: the bundled digits and the real MNIST / Fashion-MNIST files."""

import shutil

import numpy as np
import pytest

from mpath_tf import load_dataset
from mpath_tf.data import DATA_DIR_ENV
from mpath_tf.errors import DataError


def test_digits_split_is_stratified_and_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (8, 8) and a.num_classes == 10
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert len(a.x_val) == pytest.approx(0.1 * (len(a.x_train) + len(a.x_val)), abs=1)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    counts = np.bincount(a.y_val, minlength=10)
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_idx_files(name, shared_datasets):
    data = load_dataset(name, shared_datasets)  # (not timed: this machine is shared and noisy)
    assert data.x_train.shape == (54000, 28, 28) and data.x_val.shape == (6000, 28, 28)
    assert data.x_test.shape == (10000, 28, 28) and data.x_train.dtype == np.float32
    assert data.x_train.max() == 1.0 and data.x_train.min() == 0.0
    if name == "mnist":  # published test label counts (shared/datasets/README.md)
        expected = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        assert np.bincount(data.y_test).tolist() == expected
        train_counts = np.bincount(np.concatenate([data.y_train, data.y_val]))
        assert train_counts.tolist()[:2] == [5923, 6742]
    ratio = np.bincount(data.y_val) / np.bincount(data.y_train)
    assert np.allclose(ratio, 1 / 9, atol=0.002)  # stratified 10%


def test_data_dir_from_environment(shared_datasets, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(shared_datasets))
    assert load_dataset("mnist").x_test.shape == (10000, 28, 28)


@pytest.fixture
def mnist_copy(shared_datasets, tmp_path):
    target = tmp_path / "mnist"
    shutil.copytree(shared_datasets / "mnist", target, ignore=shutil.ignore_patterns("*.txt"))
    return tmp_path


def test_flipped_byte_fails_the_checksum(mnist_copy):
    path = mnist_copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: MD5 .* does not match"):
        load_dataset("mnist", mnist_copy)


def test_truncated_file_is_refused(mnist_copy):
    path = mnist_copy / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", mnist_copy)


def test_missing_file_is_named(mnist_copy):
    (mnist_copy / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is missing"):
        load_dataset("mnist", mnist_copy)


def test_missing_directory_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist", tfds_dir=tmp_path, download=False)
    with pytest.raises(DataError, match="not found in"):
        load_dataset("fashion_mnist", tmp_path, tfds_dir=tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="Unknown dataset 'cifar100'. Choose one of"):
        load_dataset("cifar100")
