"""``mpath-tf export RUN --bundle``: the files, the model card, and the
standard-library selector run in an isolated interpreter (no site packages)."""

import json
import subprocess
import sys

import pytest

from mpath_tf.reporting.bundle import write_bundle
from mpath_tf.errors import ConfigError


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    return write_bundle(tiny_run, paths=[1, 2, 6], quantization="int8",
                        output=tmp_path_factory.mktemp("bundle"), log=lambda *_: None)


def _select(bundle, *args):
    # -I: isolated, -S: no site-packages (so no NumPy, no TensorFlow)
    return subprocess.run([sys.executable, "-I", "-S", str(bundle / "select_model.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_bundle_holds_a_file_and_a_card_entry_per_path_count(bundle, tiny_run):
    card = json.loads((bundle / "models.json").read_text())
    assert card["format"] == "mpath-tf-bundle" and card["quantization"]["name"] == "int8"
    assert [m["paths"] for m in card["models"]] == [1, 2, 6]
    for m in card["models"]:
        assert (bundle / m["file"]).stat().st_size == m["bytes"]
        assert 0 <= m["tflite_test_accuracy"] <= 1 and m["parameters"] > 0
    assert [m["chosen_by_search"] for m in card["models"]].count(True) <= 1


def test_selector_picks_the_most_accurate_model_within_the_budget(bundle):
    card = json.loads((bundle / "models.json").read_text())["models"]
    limit = sorted(m["bytes"] for m in card)[1] / 1000  # the two smaller files fit
    result = _select(bundle, "--max-size-kb", str(limit), "--json")
    assert result.returncode == 0, result.stderr
    picked = json.loads(result.stdout)
    fitting = [m for m in card if m["bytes"] / 1000 <= limit]
    assert picked["file"] == max(fitting, key=lambda m: (m["tflite_test_accuracy"], -m["bytes"]))["file"]
    assert picked["classes"] == [str(c) for c in range(10)]  # digits: classes 0..9
    plain = _select(bundle, "--max-size-kb", str(limit))
    assert plain.stdout.strip().endswith(picked["file"])
    assert plain.stderr == "classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\n"
    none = _select(bundle, "--max-size-kb", "0.001")
    assert none.returncode == 2 and "No model of this bundle meets the budget" in none.stderr
    no_latency = _select(bundle, "--max-latency-ms", "1", "--target", "pi")
    assert no_latency.returncode == 2 and "no latency measured on pi" in no_latency.stderr


def test_bundle_rejects_path_counts_outside_the_run(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match=r"`paths` must be in \[1, 6\]"):
        write_bundle(tiny_run, paths=[7], output=tmp_path)


def test_cli_bundle(tiny_run, tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--bundle", "--paths", "2,6",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt", "models.json", "paths-2_float32.tflite", "paths-6_float32.tflite",
        "select_model.py"]
