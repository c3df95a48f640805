"""Benchmark targets: where a ``.tflite`` model is timed.

Every target answers ``describe()`` (the device) and ``measure(model,
settings)`` (one model, in its own process, with a timeout), and returns rows
of the same shape. ``local`` and ``ssh://`` run ``edge_bench/agent.py`` with
the device's LiteRT Python runtime; ``adb`` runs the official
``benchmark_model`` binary on an Android device.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from edge_bench import agent
from edge_bench.benchmark_model import (
    BenchmarkOutputError,
    last_lines,
    parse_output,
    parse_result_file,
)
from edge_bench.target_base import BenchSettings, Target, sha256_file
from mpath_tf.errors import ConfigError, ModelError, TargetError
from edge_bench.arm64 import Arm64Target, CORES
from edge_bench.tflm import CortexMTarget, TflmTarget
from edge_bench.x86_64 import X86Target

AGENT = Path(agent.__file__)
__all__ = ["AdbTarget", "BenchSettings", "LocalTarget", "SshTarget", "Target", "get_target",
           "sha256_file", "target_slug"]


class LocalTarget(Target):
    """This machine's LiteRT Python interpreter (``ai-edge-litert``).

    Each model runs in a fresh process of ``python`` (default: this one).

    Example:
        >>> LocalTarget().name
        'local'
    """

    name = "local"

    def __init__(self, python: str = sys.executable):
        super().__init__()
        self.python = python

    def _run_agent(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.python, str(AGENT), *args], capture_output=True,
                                  text=True, timeout=timeout)
        except OSError as err:
            raise TargetError(f"local: cannot run Python '{self.python}': {err.strerror or err}; "
                              "pass a Python with ai-edge-litert and NumPy (--python).") from None

    def _describe(self) -> dict:
        proc = self._run_agent(["describe"], timeout=60)
        if proc.returncode != 0:
            raise TargetError(f"local: the benchmark agent cannot start: {last_lines(proc.stderr)}")
        return json.loads(proc.stdout.splitlines()[-1])

    def _measure(self, model, sha256, settings):
        try:
            proc = self._run_agent(["run", str(model), "--sha256", sha256, *settings.agent_args()],
                                   timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise ModelError(f"local: {model.name} did not finish in {settings.timeout_s} s "
                             "(timeout_s); it was killed.") from None
        return self._agent_result(proc, model)


_SSH_SPEC = re.compile(r"^ssh://(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+)(?::(?P<port>\d+))?/?$")


class SshTarget(Target):
    """A Linux board over ssh (a Raspberry Pi, say), with its own Python runtime.

    Uses the system ``ssh``/``scp`` in batch mode (keys only, no prompts), so
    ``~/.ssh/config``, agents and known-hosts work as in a shell. The agent
    script and each model are copied to ``remote_dir``; the agent checks the
    model's sha256 on the board before timing it.

    Args:
        spec: ``ssh://[user@]host[:port]``; ``host`` may be an alias of the ssh config.
        python: The board's Python with ``ai-edge-litert`` or ``tflite-runtime``.
        ssh_config: An ssh config file to use instead of ``~/.ssh/config``.
        identity: A private key file.
        connect_timeout: Seconds to wait for the connection.
        remote_dir: Working directory on the board.

    Example:
        >>> SshTarget("ssh://pi@raspberrypi.local:2222").name
        'ssh://pi@raspberrypi.local:2222'
    """

    def __init__(self, spec: str, python: str = "python3", ssh_config: str | None = None,
                 identity: str | None = None, connect_timeout: float = 10,
                 remote_dir: str = "/tmp/mpath-tf-edge-bench"):
        super().__init__()
        match = _SSH_SPEC.match(spec)
        if not match:
            raise ConfigError(f"Target '{spec}' is not of the form ssh://[user@]host[:port].")
        self.name = spec
        self.user, self.host, self.port = match["user"], match["host"], match["port"]
        self.python, self.ssh_config, self.identity = python, ssh_config, identity
        self.connect_timeout, self.remote_dir = connect_timeout, remote_dir
        self._agent_copied = False

    def _options(self) -> list[str]:
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                   "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.ssh_config:
            options += ["-F", str(self.ssh_config)]
        if self.identity:
            options += ["-i", str(self.identity)]
        return options

    @property
    def _destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _call(self, command: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise TargetError(f"{self.name}: '{command[0]}' is not installed; install the "
                              "OpenSSH client.") from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: no answer within {timeout:.0f} s; check the "
                              "board is on and reachable.") from None
        if proc.returncode == 255:  # ssh's own failure: host, network, key
            raise TargetError(f"{self.name}: ssh failed: {last_lines(proc.stderr, 2)}. Check the host, "
                              "port, user and key (ssh must log in without a password).")
        return proc

    def _ssh(self, remote_command: str, timeout: float) -> subprocess.CompletedProcess:
        port = ["-p", self.port] if self.port else []
        return self._call(["ssh", *self._options(), *port, self._destination, remote_command],
                          timeout)

    def _copy(self, local: Path, remote: str, timeout: float = 300) -> None:
        port = ["-P", self.port] if self.port else []
        proc = self._call(["scp", "-q", *self._options(), *port, str(local),
                           f"{self._destination}:{remote}"], timeout)
        if proc.returncode != 0:
            raise TargetError(f"{self.name}: copying {local.name} failed: {last_lines(proc.stderr)}")

    def _ensure_agent(self) -> str:
        remote_agent = f"{self.remote_dir}/agent.py"
        if not self._agent_copied:
            proc = self._ssh(f"mkdir -p {shlex.quote(self.remote_dir)}", timeout=self.connect_timeout + 30)
            if proc.returncode != 0:
                raise TargetError(f"{self.name}: cannot create {self.remote_dir}: {last_lines(proc.stderr)}")
            self._copy(AGENT, remote_agent)
            self._agent_copied = True
        return remote_agent

    def _describe(self) -> dict:
        remote_agent = self._ensure_agent()
        proc = self._ssh(f"{shlex.quote(self.python)} {shlex.quote(remote_agent)} describe",
                         timeout=self.connect_timeout + 60)
        if proc.returncode != 0:
            raise TargetError(f"{self.name}: the agent cannot run with '{self.python}': "
                              f"{last_lines(proc.stderr)}. Pass the board's Python with NumPy.")
        device = json.loads(proc.stdout.splitlines()[-1])
        if device.get("runtime") is None:
            raise TargetError(f"{self.name}: no LiteRT runtime for '{self.python}' on the board: "
                              "pip install ai-edge-litert (or tflite-runtime on older boards).")
        return device

    def _measure(self, model, sha256, settings):
        remote_agent = self._ensure_agent()
        remote_model = f"{self.remote_dir}/{sha256[:16]}.tflite"
        self._copy(model, remote_model)
        command = " ".join(shlex.quote(part) for part in (
            self.python, remote_agent, "run", remote_model, "--sha256", sha256, *settings.agent_args()))
        try:
            proc = subprocess.run(
                ["ssh", *self._options(), *(["-p", self.port] if self.port else []),
                 self._destination, f"timeout {int(settings.timeout_s)} {command}"],
                capture_output=True, text=True, timeout=settings.timeout_s + self.connect_timeout + 30)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: the board stopped answering while timing "
                              f"{model.name}.") from None
        if proc.returncode == 255:
            raise TargetError(f"{self.name}: the connection failed while timing {model.name}: "
                              f"{last_lines(proc.stderr, 2)}")
        if proc.returncode == 124:  # coreutils timeout
            raise ModelError(f"{self.name}: {model.name} did not finish in {settings.timeout_s} s "
                             "(timeout_s); it was killed.")
        return self._agent_result(proc, model)


class AdbTarget(Target):
    """An Android device over adb, timed by the official ``benchmark_model``.

    The binary (given by the user, for the device's ABI; it is not downloaded)
    and each model are pushed to ``remote_dir``; the model's sha256 is checked
    on the device after the push. The run asks for ``--result_file_path`` and
    reads that file when the build writes it, else the printed log. The tool
    reports statistics, not per-run times, so the median and p90 are those the
    tool prints (median from newer builds only; p90 never).

    Args:
        spec: ``adb`` (the only device) or ``adb:SERIAL``.
        benchmark_model: Path of the ``benchmark_model`` binary on this machine.
        adb: The adb executable.
        remote_dir: Working directory on the device.

    Example:
        >>> import tempfile
        >>> binary = tempfile.NamedTemporaryFile(suffix="benchmark_model").name
        >>> open(binary, "wb").close()
        >>> AdbTarget("adb:emulator-5554", benchmark_model=binary).serial
        'emulator-5554'
    """

    def __init__(self, spec: str, benchmark_model: str | os.PathLike | None = None,
                 adb: str = "adb", remote_dir: str = "/data/local/tmp/mpath_tf"):
        super().__init__()
        if not re.fullmatch(r"adb(:[^\s:]+)?", spec):
            raise ConfigError(f"Target '{spec}' is not of the form adb or adb:SERIAL.")
        if benchmark_model is None or not Path(benchmark_model).is_file():
            raise ConfigError(
                f"Target {spec} needs the benchmark_model binary for the device's ABI: pass "
                f"--benchmark-model PATH (received {benchmark_model}). See android_harness/README.md."
            )
        self.name = spec
        self.serial = spec.split(":", 1)[1] if ":" in spec else None
        self.benchmark_model = Path(benchmark_model)
        self.adb, self.remote_dir = adb, remote_dir
        self._tool_pushed = False

    def _call(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise TargetError(f"{self.name}: '{self.adb}' is not installed or not on PATH.") from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: adb did not answer within {timeout:.0f} s.") from None

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> str:
        if proc.returncode != 0:
            state = self._call("get-state", timeout=30)
            if state.returncode != 0 or state.stdout.strip() != "device":
                raise TargetError(f"{self.name}: the device is not connected ({last_lines(state.stderr or state.stdout, 1)}) "
                                  f"while {what}; reconnect it and rerun to resume.")
            raise TargetError(f"{self.name}: {what} failed: {last_lines(proc.stderr or proc.stdout)}")
        return proc.stdout

    def _shell(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._call("shell", command, timeout=timeout)

    def _push(self, local: Path, remote: str) -> None:
        self._check(self._call("push", str(local), remote, timeout=300), f"pushing {local.name}")

    def _remote_sha256(self, remote: str) -> str:
        out = self._check(self._shell(f"sha256sum {shlex.quote(remote)}"), "checking a checksum")
        return out.split()[0] if out.split() else ""

    def _ensure_tool(self) -> str:
        remote_tool = f"{self.remote_dir}/benchmark_model"
        if not self._tool_pushed:
            self._check(self._shell(f"mkdir -p {shlex.quote(self.remote_dir)}"), f"creating {self.remote_dir}")
            self._push(self.benchmark_model, remote_tool)
            if self._remote_sha256(remote_tool) != sha256_file(self.benchmark_model):
                raise TargetError(f"{self.name}: benchmark_model was corrupted by the push; retry.")
            self._check(self._shell(f"chmod 755 {shlex.quote(remote_tool)}"), "making benchmark_model executable")
            self._tool_pushed = True
        return remote_tool

    def _state(self, cpus: tuple[int, ...]) -> dict:
        """Governor, clocks and temperatures, read with shell commands."""
        script = (
            "for c in " + " ".join(str(c) for c in (cpus or (0,))) + "; do "
            "d=/sys/devices/system/cpu/cpu$c/cpufreq; echo cpu $c $(cat $d/scaling_governor 2>/dev/null) "
            "$(cat $d/scaling_cur_freq 2>/dev/null) $(cat $d/scaling_max_freq 2>/dev/null); done; "
            "for z in /sys/class/thermal/thermal_zone*; do echo zone ${z##*/} $(cat $z/temp 2>/dev/null); done"
        )
        state = {"cpus": {}, "temperatures_c": {}}
        out = self._check(self._shell(script), "reading the CPU state")
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["cpu"] and len(parts) >= 2:
                values = parts[2:] + [None] * 3
                state["cpus"][parts[1]] = {
                    "governor": values[0],
                    "cur_freq_khz": int(values[1]) if values[1] and values[1].isdigit() else None,
                    "max_freq_khz": int(values[2]) if values[2] and values[2].isdigit() else None,
                }
            elif parts[:1] == ["zone"] and len(parts) == 3 and parts[2].lstrip("-").isdigit():
                state["temperatures_c"][parts[1]] = int(parts[2]) / 1000.0
        return state

    def _describe(self) -> dict:
        state = self._call("get-state", timeout=30)
        if state.returncode != 0 or state.stdout.strip() != "device":
            raise TargetError(f"{self.name}: no such device ready ({last_lines(state.stderr or state.stdout, 1)}); "
                              "check `adb devices` and the serial.")
        props = dict(re.findall(r"\[([^\]]+)\]: \[([^\]]*)\]", self._check(self._shell("getprop"), "reading properties")))
        return {
            "manufacturer": props.get("ro.product.manufacturer"),
            "model": props.get("ro.product.model"),
            "android": props.get("ro.build.version.release"),
            "abi": props.get("ro.product.cpu.abi"),
            "soc": props.get("ro.soc.model"),
            "benchmark_model_sha256": sha256_file(self.benchmark_model),
        }

    def _measure(self, model, sha256, settings):
        tool = self._ensure_tool()
        remote_model = f"{self.remote_dir}/{sha256[:16]}.tflite"
        remote_result = f"{self.remote_dir}/result.pb"
        self._push(model, remote_model)
        if self._remote_sha256(remote_model) != sha256:
            raise ModelError(f"{self.name}: {model.name} arrived corrupted (sha256 differs after the push).")
        flags = [
            f"--graph={remote_model}", f"--num_threads={settings.threads}",
            f"--use_xnnpack={'true' if settings.xnnpack else 'false'}",
            f"--warmup_runs={settings.warmup_runs}", f"--warmup_min_secs={settings.warmup_min_secs}",
            f"--num_runs={settings.runs}", f"--min_secs={settings.min_secs}",
            f"--max_secs={settings.max_secs}", f"--result_file_path={remote_result}",
        ]
        if settings.input_shape:
            flags.append(f"--input_layer_shape={','.join(map(str, settings.input_shape))}")
        pin = f"taskset {sum(1 << c for c in settings.cpus):x} " if settings.cpus else ""
        before = self._state(settings.cpus)
        self._check(self._shell(f"rm -f {shlex.quote(remote_result)}"), "clearing the result file")
        proc = self._shell(pin + " ".join(shlex.quote(p) for p in (tool, *flags)),
                           timeout=settings.timeout_s)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            self._check(self._call("get-state", timeout=30), f"timing {model.name}")  # disconnected?
            raise ModelError(f"{self.name}: benchmark_model failed on {model.name} (exit "
                             f"{proc.returncode}): {last_lines(log)}")
        after = self._state(settings.cpus)
        with tempfile.TemporaryDirectory() as tmp:
            pulled = Path(tmp) / "result.pb"
            from_file = self._call("pull", remote_result, str(pulled), timeout=60).returncode == 0
            try:
                stats = parse_result_file(pulled.read_bytes()) if from_file else parse_output(log)
            except BenchmarkOutputError as err:
                raise ModelError(f"{self.name}: {model.name}: {err}") from None
        tool_name = stats.pop("tool")
        warnings = agent.state_changes(before, after)
        suspect = bool(warnings)  # the phone changed under the measurement
        delegate = _xnnpack_summary(log)
        if settings.xnnpack and delegate and delegate["delegated_nodes"] < delegate["nodes"]:
            warnings.append(f"XNNPACK took {delegate['delegated_nodes']} of {delegate['nodes']} nodes; "
                            "the rest run on reference kernels")
        return {
            "tool": tool_name,
            "tool_sha256": self.describe()["benchmark_model_sha256"],
            "runtime": "benchmark_model",
            "runtime_version": None,  # the tool prints no version; its sha256 identifies it
            "init_us": stats.pop("init_us", None),
            "first_us": stats.pop("first_us", None),
            "stats": {"p90_us": None, "median_ci_low_us": None, "median_ci_high_us": None,
                      "median_us": None, **stats},
            "delegate": delegate,
            "state_before": before,
            "state_after": after,
            "warnings": warnings,
            "suspect": suspect,
        }


_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, "
                        r"yielding (\d+) partitions")


def _xnnpack_summary(log: str) -> dict | None:
    match = _REPLACING.search(log)
    if not match:
        return None
    return {"delegated_nodes": int(match[1]), "nodes": int(match[2]), "delegate": match[3],
            "partitions": int(match[4])}


def get_target(spec: str, **options) -> Target:
    """Make a target from its specification.

    Args:
        spec: ``local``, ``ssh://[user@]host[:port]``, ``adb``, ``adb:SERIAL``,
            ``tflm`` (TFLM's interpreter on this machine) or ``tflm:CORE``
            (TFLM with CMSIS-NN on an emulated Cortex-M core: ``cortex-m4``,
            ``cortex-m4f``, ``cortex-m7``, ``cortex-m55``; ``edge_bench.tflm``), or
            ``arm64:CORE`` (LiteRT on an emulated Cortex-A core: ``cortex-a53``,
            ``cortex-a55``, ``cortex-a72``, ``cortex-a76``; ``edge_bench.arm64``),
            or ``x86_64`` / ``x86_64:CPU`` (this machine's LiteRT on an
            emulated x86-64 CPU, to check counts against time;
            ``edge_bench.x86_64``).
        **options: Passed to the target class (``python``, ``ssh_config``,
            ``identity``, ``benchmark_model``, ``adb``); options that a target
            does not take are ignored when None.

    Returns:
        A ``Target``.

    Raises:
        ConfigError: Unknown specification or a missing required option.

    Example:
        >>> get_target("local").name
        'local'
    """
    options = {k: v for k, v in options.items() if v is not None}
    if spec == "local":
        allowed = {"python"}
        cls = LocalTarget
    elif spec.startswith("ssh://"):
        allowed = {"python", "ssh_config", "identity", "connect_timeout", "remote_dir"}
        cls = SshTarget
    elif spec == "adb" or spec.startswith("adb:"):
        allowed = {"benchmark_model", "adb", "remote_dir"}
        cls = AdbTarget
    elif spec == "tflm":
        allowed = {"python"}
        cls = TflmTarget
    elif spec.startswith("tflm:"):
        allowed = set()
        cls = CortexMTarget
    elif spec.startswith("arm64:"):
        if spec.split(":", 1)[1] not in CORES:
            raise ConfigError(f"Unknown ARM core in '{spec}'. Choose one of: "
                              + ", ".join(f"arm64:{c}" for c in CORES) + ".")
        allowed = set()
        cls = Arm64Target
    elif spec == "x86_64" or spec.startswith("x86_64:"):
        allowed = set()
        cls = X86Target
    else:
        raise ConfigError(
            f"Unknown target '{spec}'. Use local, ssh://[user@]host[:port], adb, adb:SERIAL, "
            "tflm or tflm:CORE (cortex-m4, cortex-m4f, cortex-m7, cortex-m55), or arm64:CORE "
            "(cortex-a53, cortex-a55, cortex-a72, cortex-a76; emulated), or x86_64[:CPU] (this "
            "machine's LiteRT, emulated and counted)."
        )
    extra = set(options) - allowed
    if extra:
        raise ConfigError(f"Target {spec} does not take {', '.join(sorted(extra))}.")
    # the targets of this machine take no spec; the others are named by it
    return cls(**options) if spec in ("local", "tflm") else cls(spec, **options)


def counts_instructions(spec: str) -> bool:
    """True for a target that counts instructions on an emulated core
    (``tflm:CORE``, ``arm64:CORE``, ``x86_64[:CPU]``) rather than timing a real one.

    Example:
        >>> counts_instructions("arm64:cortex-a72"), counts_instructions("tflm")
        (True, False)
    """
    return spec == "x86_64" or spec.startswith(("tflm:", "arm64:", "x86_64:"))


def target_slug(name: str) -> str:
    """A directory name for a target: ``ssh://pi@host:22`` -> ``ssh-pi-host-22``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.replace("://", "-")).strip("-") or "target"
