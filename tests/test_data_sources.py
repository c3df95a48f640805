"""Dataset sources beyond the raw IDX files: TFDS, CIFAR-10 archives, user files."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from mpath_tf.data import load_dataset, load_file
from mpath_tf.errors import DataError


@pytest.fixture(scope="module")
def tfds_mnist(tmp_path_factory, shared_datasets):
    """MNIST prepared by the real TFDS builder from the official files (no network)."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("mnist", data_dir=str(root / "data"))
    builder.download_and_prepare(
        download_dir=str(root / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(shared_datasets / "mnist"), try_download_gcs=False,
            max_examples_per_split=2000,  # TFDS's option for tests: a real, smaller prepare
        ),
    )
    return root / "data"


def test_tfds_prepared_dataset_is_used_first(tfds_mnist, shared_datasets):
    from_tfds = load_dataset("mnist", tfds_dir=tfds_mnist, download=False)
    from_files = load_dataset("mnist", data_dir=shared_datasets, tfds_dir=tfds_mnist / "empty",
                              download=False)
    assert from_tfds.source.startswith("tfds:") and from_files.source.startswith("files:")
    assert from_tfds.x_train.shape == (1800, 28, 28)  # 2,000 prepared, 10% to validation
    # TFDS stores the examples shuffled: its test examples are official ones,
    # with their labels, in another order.
    def examples(x, y):
        return set(zip((row.tobytes() for row in x), y.tolist()))

    assert len(from_tfds.x_test) == 2000
    assert examples(from_tfds.x_test, from_tfds.y_test) <= examples(
        from_files.x_test, from_files.y_test)


def test_no_source_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("MPATH_TF_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="not found: it is not prepared in TensorFlow Datasets"):
        load_dataset("cifar10", tfds_dir=tmp_path, download=False)


# --- CIFAR-10: an archive written in exactly the official layout -------------

def _cifar_archive(path, per_batch=20, truncate=False, drop=None):
    """cifar-10-python.tar.gz with 5 training batches and a test batch.

    Pixel value of image n, channel c, row r, column k is (n + 7c + r + k) % 256,
    so the test can check the channel-major to NHWC layout exactly.
    """
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for b, name in enumerate(names):
            if name == drop:
                continue
            n = np.arange(per_batch)[:, None, None, None] + b * per_batch
            c, r, k = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
            images = ((n + 7 * c + r + k) % 256).astype(np.uint8)  # (N, 3, 32, 32)
            batch = {b"batch_label": name.encode(), b"labels": (np.arange(per_batch) % 10).tolist(),
                     b"data": images.reshape(per_batch, 3072),
                     b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        meta = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
        for name, data in (("batches.meta", meta), ("readme.html", b"<html></html>")):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    path.write_bytes(raw[: len(raw) // 2] if truncate else raw)
    del rng


def test_cifar10_archive_in_official_layout(tmp_path):
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    data = load_dataset("cifar10", data_dir=tmp_path, tfds_dir=tmp_path / "tfds",
                        download=False, verify_checksums=False)
    assert data.source == f"files:{tmp_path}"
    assert data.input_shape == (32, 32, 3) and len(data.x_test) == 20
    assert len(data.x_train) + len(data.x_val) == 100 and data.num_classes == 10
    # Test image 3 (n = 100 + 3), pixel row 2, column 5, green channel (c = 1).
    assert data.x_test[3, 2, 5, 1] == pytest.approx(((103 + 7 + 2 + 5) % 256) / 255.0)


def test_cifar10_checksum_is_verified(tmp_path):
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="does not match the official c58f3010"):
        load_dataset("cifar10", data_dir=tmp_path, tfds_dir=tmp_path / "tfds", download=False)


def test_cifar10_truncated_archive(tmp_path):
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz", truncate=True)
    with pytest.raises(DataError, match="cannot read the archive"):
        load_dataset("cifar10", data_dir=tmp_path, tfds_dir=tmp_path / "tfds", download=False,
                     verify_checksums=False)


def test_cifar10_missing_batch(tmp_path):
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz", drop="data_batch_3")
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_dataset("cifar10", data_dir=tmp_path, tfds_dir=tmp_path / "tfds", download=False,
                     verify_checksums=False)


# --- the user's own files -----------------------------------------------------

def _blobs(n=300, features=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, features)) + y[:, None] * 2.0
    return x.astype("float32"), y


def test_npz_with_and_without_test_arrays(tmp_path):
    x, y = _blobs()
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y * 2 + 5)  # labels 5, 7, 9
    data = load_file(tmp_path / "a.npz")
    assert data.num_classes == 3 and data.class_labels == [5, 7, 9]
    assert sorted(np.unique(data.y_train).tolist()) == [0, 1, 2]
    assert len(data.x_test) == 60 and len(data.x_val) == 24
    np.savez(tmp_path / "b.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    assert len(load_file(tmp_path / "b.npz").x_test) == 100


def test_csv_with_label_column(tmp_path):
    x, y = _blobs()
    lines = ["t,a,b,label,c"] + [f"{r[0]},{r[1]},{r[2]},{c},{r[3]}" for r, c in zip(x, y)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    data = load_file(tmp_path / "s.csv", label="label")
    assert data.input_shape == (4,) and data.num_classes == 3
    # the label column left the features (t, a, b, c in file order), and each
    # example kept its own label, whichever split it went to
    original = {tuple(np.round(row, 4)): str(c) for row, c in zip(x, y)}
    loaded = [(row, label) for xs, ys in ((data.x_train, data.y_train), (data.x_val, data.y_val),
                                          (data.x_test, data.y_test)) for row, label in zip(xs, ys)]
    assert len(loaded) == len(x)
    for row, label in loaded:
        assert original[tuple(np.round(row, 4))] == str(data.class_names[label])


@pytest.mark.parametrize(
    "content, label, match",
    [
        pytest.param("a,b\n1,2\n", "y", "no column named 'y'. Columns: a, b", id="no-label-column"),
        pytest.param("a,y\n1.5,0\nfoo,1\n", "y", "line 3: column 'a' holds 'foo'", id="text-feature"),
        pytest.param("a,y\n1,0\n,1\n", "y", "line 3: column 'a' is empty or NaN", id="empty-cell"),
        pytest.param("a,y\n1,0\n", None, "needs `label`", id="label-missing"),
        pytest.param("a,y\n1,0,3\n", "y", "3 fields, the header has 2", id="ragged"),
    ],
)
def test_bad_csv(tmp_path, content, label, match):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=match):
        load_file(tmp_path / "bad.csv", label=label)


@pytest.mark.parametrize(
    "arrays, match",
    [
        pytest.param({"x": np.zeros((4, 2))}, "missing arrays", id="keys"),
        pytest.param({"x_train": np.zeros((4, 2)), "y_train": np.zeros((4, 2))},
                     "one label per example", id="labels"),
        pytest.param({"x_train": np.array([[np.nan, 1.0]] * 4), "y_train": np.array([0, 1, 0, 1])},
                     "NaN or infinite", id="nan"),
        pytest.param({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 0, 1]),
                      "x_test": np.zeros((2, 2))}, "both x_test and y_test", id="half-test"),
        pytest.param({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 0])},
                     "4 rows but y_train has 3", id="lengths"),
        pytest.param({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 1, 1])},
                     "class 0 has a single example", id="tiny-class"),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_file(tmp_path / "bad.npz")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_file(tmp_path / "nope.csv", label="y")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unknown file type '.parquet'"):
        load_file(tmp_path / "x.parquet")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_file(tmp_path / "broken.npz")


def test_download_without_network_fails_fast_with_a_fix(tmp_path, monkeypatch):
    import socket
    import time

    from mpath_tf.data import tfds_source

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()
    monkeypatch.setattr(tfds_source, "DOWNLOAD_HOST", closed)
    monkeypatch.delenv("MPATH_TF_DATA_DIR", raising=False)
    start = time.perf_counter()
    with pytest.raises(DataError, match="cannot be reached to download it.*--data-dir"):
        load_dataset("fashion_mnist", tfds_dir=tmp_path, download=True)
    assert time.perf_counter() - start < 10
