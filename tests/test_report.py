"""``mpath-tf report``: the HTML page of a run, rendered by a real headless
Chromium (installed by .ci/run; MPATH_TF_REQUIRE_CHROMIUM makes its absence
fail instead of skip)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from mpath_tf.errors import RunDirError
from mpath_tf.reporting.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, timeout=120):
    if CHROMIUM is None:
        if os.environ.get("MPATH_TF_REQUIRE_CHROMIUM"):
            pytest.fail("chromium not found; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=timeout, check=True)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    return write_report(tiny_run, tmp_path_factory.mktemp("report") / "report.html")


def test_report_renders_with_its_table_and_images(report, tiny_run):
    dom = _chromium("--dump-dom", report.as_uri()).stdout
    rows = re.findall(r"<tr(?: class=\"\w+\")?><td>(\d+)</td>", dom)
    width = 6  # tiny_run is mpath-3-6: one row per path count
    assert [int(r) for r in rows[:width]] == list(range(1, width + 1))
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert "Pareto front" in images and len(images) >= 2
    assert 'class="chosen"' in dom and "Chosen model" in dom
    assert "tensorflow" in dom  # library versions
    # the chosen model against the dense MLP it replaces, and the class names
    assert "Dense reference (the same layers fully connected" in dom
    assert "Classes (by output index" in dom and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in dom


def test_report_screenshot_is_a_real_page(report, tmp_path):
    import matplotlib.image

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri())
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    # A blank or error page is (nearly) one colour; the report has text,
    # tables and plots.
    assert pixels[..., :3].std() > 0.1
    assert (pixels[..., :3].mean(axis=-1) < 0.5).mean() > 0.01  # dark text and lines


def test_report_of_an_unfinished_run_is_refused(tiny_run, tmp_path):
    unfinished = tmp_path / "run"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(RunDirError, match="has no results.json"):
        write_report(unfinished)


def test_cli_report(tiny_run, tmp_path):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(tiny_run), "--output", str(out)])
    assert result.exit_code == 0 and result.output.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_report_shows_the_speed_comparison(tiny_run, tmp_path):
    """A run timed after export (``--bench``, the default) shows how much
    faster the chosen model is than the dense one."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    results = json.loads((run / "results.json").read_text())
    results["speed"] = {"int8": {"chosen_us": 3.1, "reference_us": 11.6, "speedup": 3.74}}
    (run / "results.json").write_text(json.dumps(results))
    page = write_report(run, tmp_path / "report.html").read_text()
    assert "Speed on the search machine (LiteRT, one thread): int8: 3.1 us vs dense 11.6 us, " \
           "3.74x faster" in page


def test_closing_lines_say_why_a_slower_model_was_chosen_and_what_it_gains():
    from mpath_tf.pipeline.results import outcome_lines

    result = {
        "chosen": {"paths": 46, "parameters": 5332, "percent_of_mlp": 30.8, "test_accuracy": 0.96,
                   "exports": {"int8": {"bytes": 25962}}},
        "reference": {"test_accuracy": 0.96, "parameters": 17290, "accuracy_difference_pt": 0.0,
                      "exports": {"int8": {"bytes": 29954}}},
        "speed": {"int8": {"chosen_us": 2.0, "reference_us": 1.3, "speedup": 0.65}},
        "settings": {"max_accuracy_drop": 0.01},
    }
    lines = outcome_lines(result)
    slower = next(line for line in lines if line.startswith("the chosen model is slower"))
    assert "fewest parameters within --max-accuracy-drop 0.01" in slower
    assert "3.24x fewer parameters and a 1.15x smaller int8 file" in slower
    assert "mpath-tf bench --target" in slower
    picked = outcome_lines({**result, "settings": {"paths": 46}})
    assert any("--paths 46 asked for it" in line for line in picked)
    faster = outcome_lines({**result, "speed": {"int8": {**result["speed"]["int8"],
                                                         "speedup": 1.2}}})
    assert not any(line.startswith("the chosen model is slower") for line in faster)
