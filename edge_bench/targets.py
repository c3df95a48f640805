"""Benchmark targets: where a ``.tflite`` model is timed.

Every target answers ``describe()`` (the device) and ``measure(model,
settings)`` (one model, in its own process, with a timeout), and returns rows
of the same shape. ``local`` and ``ssh://`` run ``edge_bench/agent.py`` with
the device's LiteRT Python runtime; ``adb`` runs the official
``benchmark_model`` binary on an Android device.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_bench import agent
from edge_bench.benchmark_model import (
    BenchmarkOutputError,
    last_lines,
    parse_output,
    parse_result_file,
)
from edge_bench.stats import summarize
from mpath_tf.errors import ConfigError, ModelError, TargetError

AGENT = Path(agent.__file__)


@dataclass(frozen=True)
class BenchSettings:
    """How each model is timed; recorded with every result.

    Defaults follow LiteRT's ``benchmark_model``: at least 1 warm-up run and
    0.5 s, then at least 50 timed runs and 1 s, on one thread with XNNPACK.

    Attributes:
        threads: Interpreter threads (>= 1).
        xnnpack: Use the XNNPACK delegate (the runtime's default on CPU).
        cpus: CPU cores to pin the process to (``taskset``); empty: no pinning.
        warmup_runs: Minimum warm-up runs.
        warmup_min_secs: Minimum warm-up seconds.
        runs: Minimum timed runs.
        min_secs: Minimum timed seconds.
        max_secs: The timed phase stops starting runs after this many seconds.
        timeout_s: The whole measurement of one model is killed after this.
        input_shape: Input shape to run with, batch first (default: the model's).
        seed: Seed of the random input.
    """

    threads: int = 1
    xnnpack: bool = True
    cpus: tuple[int, ...] = ()
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 60.0
    timeout_s: float = 300.0
    input_shape: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        def flag(name):  # the CLI option of a setting (`mpath-tf bench`)
            return {"timeout_s": "--timeout"}.get(name, "--" + name.replace("_", "-"))

        for name in ("threads", "runs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be >= 1. Received: {flag(name)} "
                                  f"{getattr(self, name)}")
        for name in ("warmup_runs", "warmup_min_secs", "min_secs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{flag(name)} must be >= 0. Received: {flag(name)} "
                                  f"{getattr(self, name)}")
        if self.timeout_s <= 0 or self.max_secs <= 0:
            raise ConfigError(
                f"--timeout and max_secs must be > 0. Received: --timeout {self.timeout_s}, "
                f"max_secs {self.max_secs}"
            )
        if any(c < 0 for c in self.cpus):
            raise ConfigError(f"--cpus must be core numbers >= 0. Received: --cpus {self.cpus}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def agent_args(self) -> list[str]:
        args = [
            "--threads", str(self.threads), "--xnnpack", str(int(self.xnnpack)),
            "--warmup-runs", str(self.warmup_runs), "--warmup-min-secs", str(self.warmup_min_secs),
            "--runs", str(self.runs), "--min-secs", str(self.min_secs),
            "--max-secs", str(self.max_secs), "--seed", str(self.seed),
        ]
        if self.cpus:
            args += ["--cpus", ",".join(map(str, self.cpus))]
        if self.input_shape:
            args += ["--input-shape", ",".join(map(str, self.input_shape))]
        return args


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    return agent.sha256_file(str(path))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Target:
    """Base class: turns one timing into a result row.

    Subclasses set ``name`` and implement ``_describe()`` and
    ``_measure(model, sha256, settings)``; the latter returns the tool's
    timing dict (per-run ``times_us`` or the tool's own statistics).
    """

    name = "target"

    def __init__(self):
        self._device = None

    def describe(self) -> dict:
        """The device: hardware, OS, runtime (asked once, then cached).

        Raises:
            TargetError: The device cannot be reached.
        """
        if self._device is None:
            self._device = self._describe()
        return self._device

    def measure(self, model: str | os.PathLike, settings: BenchSettings | None = None) -> dict:
        """Time one model on this target.

        Args:
            model: A ``.tflite`` file on this machine.
            settings: Timing settings (default ``BenchSettings()``).

        Returns:
            A result row: target, device, model and its sha256, settings,
            runtime/tool and version, statistics (``stats``), per-run times
            when the tool gives them, delegate partitions, warnings, ``suspect``.

        Raises:
            ModelError: This model cannot be loaded or run on the target.
            TargetError: The target cannot be reached or used.
        """
        settings = settings or BenchSettings()
        model = Path(model)
        if not model.is_file():
            raise ModelError(f"{self.name}: model file {model} does not exist.")
        digest = sha256_file(model)
        device = self.describe()
        timing = self._measure(model, digest, settings)
        times = timing.pop("times_us", None)
        stats = summarize(times) if times else timing.pop("stats")
        return {
            "status": "ok",
            "target": self.name,
            "device": device,
            "model": str(model),
            "model_sha256": digest,
            "model_bytes": model.stat().st_size,
            "settings": settings.to_dict(),
            "measured_at": _now(),
            "stats": stats,
            "times_us": times,
            **timing,
        }

    def _describe(self) -> dict:
        raise NotImplementedError

    def _measure(self, model: Path, sha256: str, settings: BenchSettings) -> dict:
        raise NotImplementedError

    def _agent_result(self, proc: subprocess.CompletedProcess, model: Path) -> dict:
        """Interpret the agent's exit status and JSON line."""
        if proc.returncode < 0 or proc.returncode >= 128:
            signal = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
            raise ModelError(
                f"{self.name}: the runtime crashed on {model.name} (signal {signal}); the file "
                f"may be corrupt. {last_lines(proc.stderr)}"
            )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise ModelError(
                f"{self.name}: the benchmark agent failed on {model.name} (exit "
                f"{proc.returncode}) without a result. {last_lines(proc.stderr)}"
            ) from None
        if not result.pop("ok", False):
            raise ModelError(f"{self.name}: {model.name}: {result.get('error')}")
        result.pop("settings", None)  # the caller records its own settings
        result["tool"] = "mpath-tf agent"
        return result


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
        spec: ``local``, ``ssh://[user@]host[:port]``, ``adb`` or ``adb:SERIAL``.
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
    else:
        raise ConfigError(
            f"Unknown target '{spec}'. Use local, ssh://[user@]host[:port], adb or adb:SERIAL."
        )
    extra = set(options) - allowed
    if extra:
        raise ConfigError(f"Target {spec} does not take {', '.join(sorted(extra))}.")
    return cls(spec, **options) if cls is not LocalTarget else cls(**options)


def target_slug(name: str) -> str:
    """A directory name for a target: ``ssh://pi@host:22`` -> ``ssh-pi-host-22``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.replace("://", "-")).strip("-") or "target"
