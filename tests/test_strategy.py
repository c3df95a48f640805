"""One-shot training with a tf.distribute strategy (``mpath_tf.training.distributed``):
two worker processes on 127.0.0.1 give the weights one process gives, a
killed worker stops the chief with a message and a restart resumes from the
chief's checkpoint, two in-process replicas (MirroredStrategy) match too,
and a missing chief or a bad TF_CONFIG is reported plainly."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import search_finished

from mpath_tf import build_supernet, load_dataset
from mpath_tf.training.distributed import cluster_from_env, local_tf_configs, train_distributed
from mpath_tf.errors import ConfigError
from mpath_tf.core.saving import load_model

DEPTH, WIDTH, BATCH = 3, 8, 32
SEARCH = ["--depth", str(DEPTH), "--width", str(WIDTH), "--finetune-epochs", "1",
          "--samples", "2", "--batch-size", str(BATCH), "--strategy", "multiworker",
          "--no-reference", "--no-bench"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
MAIN = [sys.executable, "-c", "from mpath_tf.cli import main; main()"]


def _start(args: list[str], tf_config: str, log) -> subprocess.Popen:
    return subprocess.Popen(args, env={**ENV, "TF_CONFIG": tf_config}, stdout=log,
                            stderr=subprocess.STDOUT, text=True)


def _cluster(args: list[str], tmp_path, name: str, workers: int = 2, timeout: float = 240):
    """Run ``args`` as every worker of a local cluster; return (exit codes, outputs)."""
    configs = local_tf_configs(workers)
    logs = [open(tmp_path / f"{name}-{i}.log", "w") for i in range(workers)]
    procs = [_start(args, configs[i], logs[i]) for i in range(workers)]
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    return codes, [(tmp_path / f"{name}-{i}.log").read_text() for i in range(workers)]


def _reference(epochs: int, checkpoint_dir=None) -> list[np.ndarray]:
    """The supernet one process trains with the same loop (default strategy)."""
    data = load_dataset("digits")
    model, _ = train_distributed(
        lambda: build_supernet(data.input_shape, data.num_classes, DEPTH, WIDTH, seed=0),
        data, epochs, batch_size=BATCH, checkpoint_dir=checkpoint_dir)
    return model.get_weights()


def _assert_same(weights, reference):
    assert len(weights) == len(reference)
    for got, want in zip(weights, reference):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_killed_worker_stops_the_chief_and_a_restart_resumes_as_one_process_trains(tmp_path):
    run, epochs = tmp_path / "run", 6
    args = [*MAIN, "search", *SEARCH, "--epochs", str(epochs), "--run-dir", str(run)]
    configs = local_tf_configs(2)
    state = run / "checkpoints" / "supernet" / "state.json"
    with open(tmp_path / "chief.log", "w") as chief_log, open(tmp_path / "w.log", "w") as w_log:
        chief, worker = _start(args, configs[0], chief_log), _start(args, configs[1], w_log)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                    state.is_file() and json.loads(state.read_text())["epochs_done"] >= 2):
                assert chief.poll() is None, (tmp_path / "chief.log").read_text()
                time.sleep(0.02)
            worker.kill()
            code = chief.wait(timeout=120)
        finally:
            for p in (chief, worker):
                if p.poll() is None:
                    p.kill()
    output = (tmp_path / "chief.log").read_text()
    assert code == 1, output  # a runtime failure, not bad input
    assert "Distributed training lost a worker" in output and "Restart every worker" in output
    done = json.loads(state.read_text())["epochs_done"]
    assert 2 <= done < epochs  # the chief's checkpoint is kept

    # Restarted, the two workers finish the search and train what one process trains.
    codes, (chief_out, worker_out) = _cluster(args, tmp_path, "restart")
    assert search_finished(codes[0], chief_out) and codes[1] == 0, chief_out + worker_out
    resumed = int(chief_out.split("(resuming after epoch ")[1].split(")")[0])
    assert resumed >= done  # nothing finished is trained again
    assert "worker 1 of 2 training tasks" in worker_out and "the chief goes on" in worker_out
    assert "2 replica(s), global batch 32" in chief_out
    result = json.loads((run / "results.json").read_text())
    assert result["settings"]["strategy"] == "multiworker" and len(result["rows"]) == WIDTH
    _assert_same(load_model(run / "supernet.keras").get_weights(), _reference(epochs))

    # Re-run on the finished run: the chief loads it, the worker learns there is nothing to do.
    codes, (chief_out, worker_out) = _cluster(args, tmp_path, "again")
    assert search_finished(codes[0], chief_out) and codes[1] == 0, chief_out + worker_out
    assert "one-shot training: done earlier" in chief_out
    assert "was finished earlier" in worker_out


RESUME_SCRIPT = """
import sys
from mpath_tf.training.distributed import make_strategy, train_distributed
strategy = make_strategy("multiworker", 60)
import numpy as np
from mpath_tf import build_supernet, load_dataset
data = load_dataset("digits")
seen = []
model, _ = train_distributed(
    lambda: build_supernet(data.input_shape, data.num_classes, %d, %d, seed=0), data, 3,
    strategy, batch_size=%d, checkpoint_dir=sys.argv[2] if len(sys.argv) > 2 else None,
    on_epoch=lambda epoch, val: seen.append(epoch))
print("epochs trained", seen)
np.savez(sys.argv[1], *model.get_weights())
""" % (DEPTH, WIDTH, BATCH)


def test_worker_without_files_gets_the_chiefs_checkpoint(tmp_path):
    """Only the chief has the checkpoint of epoch 1 (no shared file system):
    the worker receives its weights and optimizer state, and both finish
    with the weights of an uninterrupted 3-epoch training."""
    checkpoint = tmp_path / "chief-checkpoint"
    _reference(1, checkpoint_dir=checkpoint)
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    configs = local_tf_configs(2)
    outs = [tmp_path / f"w{i}.npz" for i in range(2)]
    with open(tmp_path / "c.log", "w") as c_log, open(tmp_path / "w.log", "w") as w_log:
        procs = [_start([sys.executable, str(script), str(outs[0]), str(checkpoint)], configs[0],
                        c_log),
                 _start([sys.executable, str(script), str(outs[1])], configs[1], w_log)]
        codes = [p.wait(timeout=240) for p in procs]
    logs = (tmp_path / "c.log").read_text() + (tmp_path / "w.log").read_text()
    assert codes == [0, 0], logs
    assert logs.count("epochs trained [2, 3]") == 2, logs  # epoch 1 is not trained again
    reference = _reference(3)
    for out in outs:
        weights = np.load(out)
        _assert_same([weights[f"arr_{i}"] for i in range(len(weights.files))], reference)


MIRRORED_SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
import numpy as np
from mpath_tf import build_supernet, load_dataset
from mpath_tf.training.distributed import train_distributed
data = load_dataset("digits")
model, _ = train_distributed(
    lambda: build_supernet(data.input_shape, data.num_classes, %d, %d, seed=0), data, 2,
    strategy, batch_size=%d)
print("replicas", strategy.num_replicas_in_sync)
np.savez(sys.argv[1], *model.get_weights())
""" % (DEPTH, WIDTH, BATCH)


def test_mirrored_two_replicas_train_what_one_replica_trains(tmp_path):
    script, out = tmp_path / "mirrored.py", tmp_path / "mirrored.npz"
    script.write_text(MIRRORED_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(out)], env=ENV, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replicas 2" in proc.stdout
    weights = np.load(out)
    _assert_same([weights[f"arr_{i}"] for i in range(len(weights.files))], _reference(2))


def test_worker_without_a_chief_fails_with_a_message(tmp_path):
    config = local_tf_configs(2)[1]
    chief = json.loads(config)["cluster"]["worker"][0]
    proc = subprocess.run([*MAIN, "search", *SEARCH, "--epochs", "1", "--cluster-timeout", "3",
                           "--run-dir", str(tmp_path / "run")], env={**ENV, "TF_CONFIG": config},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"could not reach the chief at {chief} within 3 s" in proc.stderr
    assert not (tmp_path / "run").exists()  # only the chief writes the run directory


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not a cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "is not in its cluster"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "as host:port strings"),
])
def test_bad_tf_config_is_named(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=message):
        cluster_from_env()


def test_chief_and_worker_roles(monkeypatch):
    cluster = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    worker = cluster_from_env()
    assert not worker.is_chief and worker.workers == 3 and worker.chief_address == "10.0.0.1:2222"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "chief", "index": 0}}))
    assert cluster_from_env().is_chief


def test_cli_refuses_a_strategy_it_cannot_use(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mpath_tf.cli import cli

    result = CliRunner().invoke(cli, ["search", "--strategy", "multiworker", "--method",
                                      "lambda", "--lam", "0.3", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Drop --strategy" in result.output
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["search", "--strategy", "multiworker", "--epochs", "1",
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "TF_CONFIG environment variable" in result.output
    assert not (tmp_path / "run").exists()


def test_a_run_resumes_with_the_strategy_it_started_with():
    """The strategy decides the order of the training examples (Keras fit or
    the distributed loop), so a resumed run must keep it; the cluster's
    timeout may change."""
    from mpath_tf.pipeline.config import SearchConfig

    started = SearchConfig(strategy="multiworker")
    assert SearchConfig().differences(started) == ["strategy"]
    assert SearchConfig(strategy="multiworker", cluster_timeout_s=5).differences(started) == []
