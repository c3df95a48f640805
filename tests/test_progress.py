"""Progress of a search: plain lines off a terminal, one rewritten status
line on one, nothing with --quiet, and a JSON summary with --json."""

import io
import json

from tests.conftest import search_finished

from mpath_tf.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_with_steps_and_throttled_epochs(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mpath_tf.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(out, live=False, interval_s=15)
    p.phase("sample fine-tuning", steps=2, epochs=3)
    p.step(1, "4 paths")
    for epoch in (1, 2, 3):
        clock.now += 10  # 10 s per epoch
        p.epoch(epoch)
    p.step(2, "8 paths")
    p.log("fine-tuned 4 paths")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["[sample fine-tuning] 2 steps x 3 epochs", "[sample fine-tuning] 1/2 (4 paths)"]
    # epoch 1 prints (first), epoch 2 is within 15 s of it, epoch 3 prints again
    epochs = [line for line in lines if line.endswith("left")]
    assert epochs == ["[sample fine-tuning] 1/2 (4 paths) epoch 1/3, about 0:50 left",
                      "[sample fine-tuning] 1/2 (4 paths) epoch 3/3, about 0:30 left"]
    assert lines[-2:] == ["[sample fine-tuning] 2/2 (8 paths)", "fine-tuned 4 paths"]
    assert "\r" not in out.getvalue()


def test_live_status_line_is_rewritten_and_messages_print_above():
    out = io.StringIO()
    p = Progress(out, live=True)
    p.phase("one-shot training", steps=1, epochs=2)
    p.epoch(1)
    p.log("a message")
    p.done()
    text = out.getvalue()
    assert "\r\x1b[K[one-shot training] epoch 1/2" in text
    # the message clears the status line, prints, then redraws the status
    assert "\r\x1b[Ka message\n[one-shot training] epoch 1/2" in text
    assert text.endswith("\r\x1b[K")


def test_quiet_prints_nothing():
    out = io.StringIO()
    p = Progress(out, live=False, quiet=True)
    p.phase("x", 1, 1)
    p.epoch(1)
    p.log("y")
    assert out.getvalue() == ""


def test_cli_json_summary_and_quiet(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    monkeypatch.chdir(tmp_path)
    args = ["search", "--depth", "3", "--width", "6", "--epochs", "2", "--finetune-epochs", "1",
            "--samples", "3", "--batch-size", "64", "--no-bench", "--no-reference"]
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert search_finished(result.exit_code, result.output), result.output
    summary = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert summary["chosen"]["paths"] in range(1, 7) and summary["predictor"] == "pchip"
    assert set(summary["exports"]) == {"float32", "int8"}
    assert "[one-shot training]" in result.stderr
    quiet = CliRunner().invoke(cli, [*args, "--quiet"], catch_exceptions=False)
    # --quiet: nothing on stdout; on stderr nothing, or, exactly when the
    # tiny model's int8 file missed its checks, the one line saying so
    assert search_finished(quiet.exit_code, quiet.output) and quiet.stdout == ""
    results = json.loads((tmp_path / "runs" / "digits-mpath-3-6-seed0" / "results.json")
                         .read_text())
    if results["chosen"]["exports"]["int8"]["verification"]["passed"]:
        assert quiet.stderr == "" and quiet.exit_code == 0
    else:
        assert quiet.stderr.startswith("Error: the chosen model's int8 file")
        assert len(quiet.stderr.strip().splitlines()) == 1 and quiet.exit_code == 1
