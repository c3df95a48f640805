"""The CLI end to end through click's CliRunner, on small real runs."""

import json
import shutil
import subprocess
import sys

import keras
import pytest
from click.testing import CliRunner

from mpath_tf.cli import cli
from mpath_tf.core.derivation import parameter_counts
from tests.conftest import search_finished, tiny_run_copy

TINY = ["--no-bench", "--depth", "3", "--width", "6", "--epochs", "2", "--finetune-epochs", "1",
        "--samples", "3", "--batch-size", "64"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The session's tiny run (conftest's TINY_CONFIG: these options), a copy
    this module may change."""
    return tiny_run_copy(tmp_path_factory)


def test_search_writes_a_complete_run_directory(finished_run):
    for name in ("run.json", "state.json", "supernet.keras", "results.json", "results.csv",
                 "results.png", "model.keras", "model_float32.tflite", "model_int8.tflite"):
        assert (finished_run / name).is_file(), name
    assert (finished_run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((finished_run / "run.json").read_text())
    assert meta["settings"]["width"] == 6 and "tensorflow" in meta["versions"]
    lines = (finished_run / "results.csv").read_text().splitlines()
    assert lines[0] == ("paths,parameters,percent_of_mlp,predicted_val_accuracy,predicted_std,"
                        "measured_val_accuracy,predicted_cost,measured_cost")
    assert len(lines) == 1 + 6  # one row per path count 1..W
    result = json.loads((finished_run / "results.json").read_text())
    measured = [r["paths"] for r in result["rows"] if r["measured_val_accuracy"] is not None]
    assert measured == [2, 4, 6]
    assert result["rows"][0]["percent_of_mlp"] == 100.0
    exports = result["chosen"]["exports"]
    assert exports["float32"]["verification"]["passed"]
    assert exports["float32"]["verification"]["max_abs_diff"] <= 1e-5
    supernet = keras.saving.load_model(finished_run / "supernet.keras")
    counts = parameter_counts(supernet)
    assert all(r["parameters"] == counts[r["paths"]] for r in result["rows"])


def test_resume_redoes_no_finished_work(finished_run):
    stamps = {p: p.stat().st_mtime_ns for p in finished_run.glob("**/*.keras")
              if p.name != "model.keras"}
    files = {p: p.read_bytes() for p in finished_run.glob("*.tflite")}
    tflite_stamps = {p: p.stat().st_mtime_ns for p in files}
    result = invoke("search", *TINY, "--run-dir", finished_run)
    assert search_finished(result.exit_code, result.output), result.output
    assert "done earlier" in result.output and "fine-tuned" not in result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    # the chosen model and the dense reference are not exported (or verified) again
    assert "model exports: done earlier" in result.output
    assert "reference exports: done earlier" in result.output
    assert tflite_stamps == {p: p.stat().st_mtime_ns for p in files}


def test_interrupted_run_resumes_the_missing_sample(finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    state = json.loads((run / "state.json").read_text())
    del state["samples"]["4"]  # as if killed while fine-tuning 4 paths
    (run / "state.json").write_text(json.dumps(state))
    (run / "models" / "paths-4.keras").unlink()
    (run / "samples" / "paths-4.json").unlink()
    result = invoke("search", *TINY, "--run-dir", run)
    assert search_finished(result.exit_code, result.output), result.output
    assert "fine-tuned 4 paths" in result.output
    assert "fine-tuned 2 paths" not in result.output and "fine-tuned 6 paths" not in result.output


def test_resume_with_other_settings_is_refused(finished_run):
    before = (finished_run / "state.json").read_text()
    result = invoke("search", *TINY[:-2], "--batch-size", "32", "--run-dir", finished_run)
    assert result.exit_code == 2
    assert "--batch-size 32 (run has 64)" in result.output and "--run-dir" in result.output
    assert (finished_run / "state.json").read_text() == before


def test_derive_and_export_commands(finished_run, tmp_path):
    out = tmp_path / "d.keras"
    result = invoke("derive", finished_run, "--paths", 3, "--finetune-epochs", 1, "--output", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    model = keras.saving.load_model(out)
    assert report["parameters"] == model.count_params() and len(report["path_widths"]) == 3
    for quantization in ("float32", "dynamic"):
        target = tmp_path / f"d_{quantization}.tflite"
        result = invoke("export", out, "--format", "tflite", "--quantization", quantization,
                        "--dataset", "digits", "--output", target)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["verification"]["passed"] and target.is_file()
    # int8 of this small, soft model misses the 4-output-step bound (see
    # tests/conftest.py: assert_int8_close), so it is exported unverified here.
    result = invoke("export", out, "--quantization", "int8", "--dataset", "digits", "--no-verify",
                    "--output", tmp_path / "d_int8.tflite")
    assert result.exit_code == 0 and "verification" not in json.loads(result.stdout)


def test_export_fails_loudly_beyond_the_bounds(finished_run, tmp_path, monkeypatch):
    from converters.quantization import Float32

    monkeypatch.setattr(Float32, "parity_bounds", lambda self: {"max_abs_diff": 1e-12})
    target = tmp_path / "strict.tflite"
    result = invoke("export", finished_run / "model.keras", "--output", target)
    assert result.exit_code == 1
    assert "does not match Keras within the bounds of float32: largest difference" in result.output
    report = json.loads((tmp_path / "strict.tflite.json").read_text())
    assert report["verification"]["passed"] is False and target.is_file()


def test_export_finds_the_dataset_of_its_run(finished_run):
    result = invoke("export", finished_run / "model.keras", "--quantization", "dynamic")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verified_on"] == "digits test split"


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["search", "--width", "1"], "Received: --width 1", id="width"),
        pytest.param(["search", "--depth", "1"], "Received: --depth 1", id="depth"),
        pytest.param(["search", "--dataset", "imagenet"], "Unknown dataset 'imagenet'", id="dataset"),
        pytest.param(["search", "--width", "6", "--paths", "7"], "--paths must be in [1, --width 6]",
                     id="paths"),
        pytest.param(["search", "--samples", "1"], "--samples must be >= 2", id="samples"),
        pytest.param(["export", "missing.keras"], "missing.keras does not exist", id="model"),
        pytest.param(["export", "missing.keras", "--quantization", "int4"],
                     "Unknown quantization 'int4'", id="quantization"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "runs").exists()  # nothing half-made left behind


def test_derive_bad_inputs(finished_run, tmp_path):
    result = invoke("derive", finished_run, "--paths", 0)
    assert result.exit_code == 2 and "--paths must be in [1, 6]" in result.output
    result = invoke("derive", tmp_path / "nowhere", "--paths", 2)
    assert result.exit_code == 2 and "not an mpath-tf run directory" in result.output
    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    meta = json.loads((old / "run.json").read_text())
    meta["format_version"] = 0
    (old / "run.json").write_text(json.dumps(meta))
    result = invoke("derive", old, "--paths", 2)
    assert result.exit_code == 2 and "another mpath-tf version" in result.output


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = invoke("search", *TINY, "--run-dir", blocker / "run")
    assert result.exit_code == 2 and "Cannot write the run directory" in result.output


def test_non_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke("search", *TINY, "--run-dir", tmp_path)
    assert result.exit_code == 2 and "holds no run.json" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_console_script_exit_code(tmp_path):
    exe = shutil.which("mpath-tf") or [sys.executable, "-m", "mpath_tf"]
    cmd = [exe] if isinstance(exe, str) else exe
    proc = subprocess.run(cmd + ["search", "--depth", "1"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "Error: --depth must be >= 2" in proc.stderr


def test_help_is_complete():
    for command in ("search", "derive", "export"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output
    assert "--max-accuracy-drop" in invoke("search", "--help").output


def test_search_on_a_csv_file(tmp_path):
    import numpy as np

    from converters import read_labels

    rng = np.random.default_rng(0)
    y = np.arange(240) % 3
    x = rng.normal(size=(240, 5)) + y[:, None]
    names = np.array(["walking", "idle", "running"])[y]  # class names, as users have them
    rows = ["f1,f2,f3,f4,f5,activity"] + [",".join(map(str, r)) + f",{c}"
                                          for r, c in zip(x, names)]
    (tmp_path / "sensors.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    result = invoke("search", *TINY, "--no-reference", "--data", tmp_path / "sensors.csv",
                    "--label", "activity",
                    "--run-dir", run)
    assert search_finished(result.exit_code, result.output), result.output
    # 240 rows: a validation split of 20, where one example outweighs the 1-point drop
    assert "the validation split has 20 examples, so one example is 5.00 points" in (
        result.output)
    report = json.loads((run / "results.json").read_text())
    assert report["data_source"] == f"file:{tmp_path / 'sensors.csv'}"
    assert report["chosen"]["exports"]["float32"]["verification"]["passed"]
    classes = ["idle", "running", "walking"]  # sorted
    assert report["classes"] == classes
    assert json.loads((run / "run.json").read_text())["classes"] == classes
    assert (run / "labels.txt").read_text().splitlines() == classes
    for quantization in ("float32", "int8"):
        assert read_labels(run / f"model_{quantization}.tflite") == classes


def test_search_on_a_bad_csv_file(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n1,2\n")
    result = invoke("search", "--data", tmp_path / "s.csv", "--label", "y",
                    "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and "no column named 'y'" in result.output
    assert not (tmp_path / "run").exists()


def test_more_samples_than_path_counts_is_said(tmp_path):
    result = invoke("search", "--no-bench", "--no-reference", "--depth", "2", "--width", "4",
                    "--epochs", "1", "--finetune-epochs", "1", "--samples", "10",
                    "--run-dir", tmp_path / "run")
    assert search_finished(result.exit_code, result.output), result.output
    assert ("--samples 10 is more than the 3 path counts 2..4 of --width 4: fine-tuning each "
            "of them once") in result.output
    assert len(list((tmp_path / "run" / "samples").glob("paths-*.json"))) == 3
