"""Damaged files: what the tool wrote is set aside and computed again; what
it cannot recompute (the settings) stops with exit 2 naming the file."""

import json
import shutil

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mpath_tf import SearchConfig, search
from mpath_tf.cli import cli
from tests import faults
from tests.conftest import TINY_CONFIG, tiny_run_copy

CONFIG = SearchConfig(**TINY_CONFIG)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The session's tiny run (a copy) and its comparable results."""
    run = tiny_run_copy(tmp_path_factory)
    return run, faults.comparable(json.loads((run / "results.json").read_text()))


def _garbage(path):
    path.write_bytes(b"\x00\xff garbage \x93" * 7)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_digit(path):  # still valid JSON: only the checksum can tell
    text = path.read_text()
    i = text.index('"val_accuracy": 0.') + len('"val_accuracy": 0.')
    path.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:])


def _sample(run):
    return sorted((run / "samples").glob("paths-*.json"))[1]


def _oracle(run):  # read back only while samples remain: take one away
    from mpath_tf.storage import atomic_write_record, read_json

    state = read_json(run / "state.json")
    state["samples"].pop(_sample(run).stem.removeprefix("paths-"))
    atomic_write_record(run / "state.json", state)
    _sample(run).unlink()
    return run / "tuner" / "samples" / "oracle.json"


def _chosen_model(run):  # the chosen model, fine-tuned for --epochs (2) after its sample
    paths = json.loads((run / "results.json").read_text())["chosen"]["paths"]
    return run / "models" / f"paths-{paths}-final-e2.keras"


@pytest.mark.parametrize("damage, target, notice", [
    pytest.param(_garbage, lambda run: run / "supernet.keras", "supernet.keras is damaged",
                 id="supernet-garbage"),
    pytest.param(_truncate, lambda run: run / "reference.keras", "reference.keras is damaged",
                 id="reference-truncated"),
    pytest.param(_garbage, _sample, "is damaged (not UTF-8 text)", id="sample-record-garbage"),
    pytest.param(_flip_a_digit, _sample, "checksum does not match", id="sample-record-flipped"),
    pytest.param(_garbage, lambda run: run / "state.json", "state.json is damaged",
                 id="state-garbage"),
    pytest.param(_garbage, _oracle, "sample tuner's state", id="tuner-garbage"),
    pytest.param(_truncate, _chosen_model, ".keras is damaged", id="final-model-truncated"),
])
def test_damaged_derived_file_is_set_aside_and_recomputed(finished, tmp_path, damage, target,
                                                          notice):
    original, want = finished
    run = tmp_path / "run"
    shutil.copytree(original, run)
    path = target(run)
    damage(path)
    lines = []
    result = search(CONFIG, run, log=lines.append)
    assert any(notice in line and "set aside" in line for line in lines), lines
    # set aside: the file, or for the tuner its whole state folder
    aside = run / "tuner.damaged" if target is _oracle else path.with_name(path.name + ".damaged")
    assert aside.exists()
    assert faults.comparable(result) == want  # the same result as before the damage


@pytest.mark.parametrize("damage, name", [
    pytest.param(_truncate, "latest.weights.h5", id="weights-truncated"),
    pytest.param(_garbage, "state.json", id="state-garbage"),
])
def test_a_damaged_checkpoint_is_set_aside_and_training_starts_over(digits, tmp_path, damage,
                                                                   name):
    from mpath_tf.core.models import build_mlp
    from mpath_tf.training.loop import train

    def fresh(checkpoints, epochs, log=None):
        keras.utils.set_random_seed(0)
        model = build_mlp(digits.input_shape, 10, 2, 8, seed=0)
        return train(model, digits, epochs, batch_size=256, checkpoint_dir=checkpoints,
                     log=log), model

    _, _ = fresh(tmp_path / "ckpt", 1)  # one finished epoch on disk
    damage(tmp_path / "ckpt" / name)
    lines = []
    _, resumed = fresh(tmp_path / "ckpt", 2, log=lines.append)
    assert len(lines) == 1 and "set aside as ckpt.damaged" in lines[0], lines
    assert (tmp_path / "ckpt.damaged" / "latest.weights.h5").is_file()
    _, clean = fresh(None, 2)
    for a, b in zip(resumed.get_weights(), clean.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_damaged_settings_stop_with_exit_2_naming_the_file(finished, tmp_path):
    original, _ = finished
    run = tmp_path / "run"
    shutil.copytree(original, run)
    _garbage(run / "run.json")
    result = CliRunner().invoke(cli, ["search", "--run-dir", str(run)])
    assert result.exit_code == 2
    assert "run.json is damaged (not UTF-8 text)" in result.output
    assert "new --run-dir" in result.output and "Traceback" not in result.output


def test_a_reader_names_a_damaged_state_and_the_repair(finished, tmp_path):
    original, _ = finished
    run = tmp_path / "run"
    shutil.copytree(original, run)
    (run / "state.json").write_text('{"supernet": ')
    result = CliRunner().invoke(cli, ["bench", str(run), "--paths", "1"])
    assert result.exit_code == 2
    assert "state.json is damaged (not valid JSON" in result.output
    assert f"mpath-tf search --run-dir {run}" in result.output
    assert (run / "state.json").read_text() == '{"supernet": '  # a reader repairs nothing


@pytest.mark.parametrize("option, what", [
    pytest.param(["--cost", "latency", "--cost-table"], "Cannot read the cost table", id="cost"),
])
def test_a_binary_table_file_is_named_not_a_traceback(tmp_path, option, what):
    table = tmp_path / "table.json"
    _garbage(table)
    result = CliRunner().invoke(cli, ["search", "--method", "lambda", "--lam", "0.3", *option,
                                      str(table), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and what in result.output and str(table) in result.output


def test_a_binary_latency_journal_is_named(tmp_path):
    from edge_bench import Journal
    from mpath_tf.errors import RunDirError

    journal = tmp_path / "latency.jsonl"
    _garbage(journal)
    with pytest.raises(RunDirError, match="line 1 is not JSON; fix or delete that line"):
        Journal(journal)


def test_a_binary_calibration_table_is_named(tmp_path):
    from converters.profiles import load_profile
    from mpath_tf.errors import ConfigError

    table = tmp_path / "calibration.json"
    _garbage(table)
    with pytest.raises(ConfigError, match="Cannot read the lowering profile .*mpath-tf profile"):
        load_profile(table)


@pytest.mark.parametrize("part, entry", [
    ("conv_layers", {"quantization": "int8", "lowering": "split", "depth": 2,
                     "path_widths": [8, 8], "us": 3.0}),  # no pixels
    ("layers", {"quantization": "int8", "lowering": "conv", "depth": 3,
                "path_widths": [0, 4], "us": 3.0}),  # a zero width
    ("conv_layers", "garbage"),
])
def test_a_calibration_entry_the_cost_model_cannot_read_is_named(tmp_path, part, entry):
    import json

    from converters.profiles import BUNDLED, load_profile
    from mpath_tf.errors import ConfigError

    table = json.loads(BUNDLED.read_text())
    table[part] = table.get(part, []) + [entry]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(table))
    index = len(table[part]) - 1
    with pytest.raises(ConfigError, match=f"entry {index} of '{part}' is not a measured entry"):
        load_profile(path)
