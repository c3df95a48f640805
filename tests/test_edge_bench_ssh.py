"""edge_bench's ssh target against a real OpenSSH server on 127.0.0.1.

The fixture starts Debian's ``sshd`` (installed by .ci/run) on a free port with
throw-away host and user keys, and the target uses the real ``ssh``/``scp``
clients through an ssh config file, as a user would for a Raspberry Pi. The
"board" is this machine, so its Python (with ai-edge-litert) runs the agent.
"""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_bench import BenchSettings, Journal, SshTarget, measure_models
from mpath_tf.cli import cli
from mpath_tf.errors import TargetError
from tests.conftest import FAST

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """(ssh config file, port, folder) of a running sshd on 127.0.0.1."""
    if not Path(SSHD).is_file():
        if os.environ.get("MPATH_TF_REQUIRE_SSHD"):
            pytest.fail(f"sshd not found at {SSHD}; .ci/run installs openssh-server")
        pytest.skip("sshd is not installed (apt-get install openssh-server); CI installs it")
    folder = tmp_path_factory.mktemp("sshd")
    _keygen(folder / "host_key")
    _keygen(folder / "user_key")
    _keygen(folder / "stranger_key")
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
        f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                              stderr=open(folder / "sshd.log", "w"))
    host_key = (folder / "host_key.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    config = folder / "ssh_config"
    config.write_text(
        f"Host testboard\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {folder}/user_key\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {folder}/known_hosts\n  StrictHostKeyChecking yes\n"
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield config, port, folder
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def target(board):
    config, _, _ = board
    return SshTarget("ssh://testboard", python=sys.executable, ssh_config=str(config),
                     remote_dir=str(board[2] / "remote"))


def test_model_is_copied_checked_and_timed_on_the_board(target, tflite_models, board):
    row = target.measure(tflite_models[2], BenchSettings(**FAST))
    assert row["status"] == "ok" and row["target"] == "ssh://testboard"
    assert row["device"]["hostname"] == socket.gethostname()
    assert row["runtime"] == "ai-edge-litert" and row["tool"] == "mpath-tf agent"
    assert len(row["times_us"]) == row["stats"]["runs"] >= FAST["runs"]
    copied = board[2] / "remote" / f"{row['model_sha256'][:16]}.tflite"
    assert copied.read_bytes() == tflite_models[2].read_bytes()
    assert (board[2] / "remote" / "agent.py").is_file()


def test_corrupt_model_is_a_failed_row_and_the_next_model_runs(target, tflite_models, tmp_path):
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(tflite_models[2].read_bytes()[:500])
    jobs = [({"paths": 0}, bad), ({"paths": 1}, tflite_models[1])]
    rows = measure_models(target, jobs, Journal(tmp_path / "j.jsonl"), BenchSettings(**FAST),
                          log=lambda *_: None)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "ssh://testboard: truncated.tflite" in rows[0]["error"]


def test_unreachable_host_names_the_target(tmp_path, tflite_models):
    closed = SshTarget(f"ssh://127.0.0.1:{_free_port()}", connect_timeout=5)
    with pytest.raises(TargetError, match=r"ssh://127.0.0.1:\d+: ssh failed: .*Connection refused"):
        closed.measure(tflite_models[1])


def test_refused_key_names_the_target(board, tflite_models):
    config, port, folder = board
    stranger = SshTarget(f"ssh://{getpass.getuser()}@127.0.0.1:{port}", python=sys.executable,
                         identity=str(folder / "stranger_key"), ssh_config=str(_no_default_key(folder, port)))
    with pytest.raises(TargetError, match="ssh failed: .*Permission denied"):
        stranger.describe()


def _no_default_key(folder: Path, port: int) -> Path:
    config = folder / "stranger_config"
    config.write_text(f"Host *\n  IdentitiesOnly yes\n  UserKnownHostsFile {folder}/known_hosts\n"
                      "  StrictHostKeyChecking yes\n")
    return config


def test_cli_bench_over_ssh(board, tiny_run):
    config, _, _ = board
    result = CliRunner().invoke(cli, [
        "bench", str(tiny_run), "--target", "ssh://testboard", "--ssh-config", str(config),
        "--python", sys.executable, "--quantization", "float32", "--paths", "1,2,6",
        "--runs", "20", "--min-secs", "0.05", "--warmup-min-secs", "0", "--repeats", "1",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tiny_run / "bench" / "ssh-testboard"
    lines = (out / "latency.csv").read_text().splitlines()
    assert len(lines) == 1 + 4  # dense + 3 path counts
    assert "Spearman" in result.output


def test_cli_unreachable_board_exits_2_before_exporting(tiny_run):
    port = _free_port()
    result = CliRunner().invoke(cli, [
        "bench", str(tiny_run), "--target", f"ssh://127.0.0.1:{port}", "--quantization", "float32",
        "--paths", "1", "--repeats", "1",
    ])
    assert result.exit_code == 2
    assert f"ssh://127.0.0.1:{port}: ssh failed" in result.output and "Connection refused" in result.output
    assert "exporting" not in result.output
    # no empty folder for the target that never answered
    from edge_bench.targets import target_slug

    assert not (tiny_run / "bench" / target_slug(f"ssh://127.0.0.1:{port}")).exists()
