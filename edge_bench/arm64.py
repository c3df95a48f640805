"""ARM Cortex-A cores of phones and Raspberry Pis, emulated: ``arm64:CORE``.

LiteRT's aarch64 wheel runs in Debian's arm64 Python under ``qemu-aarch64``
(QEMU user mode), with ``/proc/cpuinfo`` replaced by the core's own for the
process (a bind mount in a private mount namespace: QEMU 7.2 passes the
host's x86 one through, and LiteRT picks its kernels, NEON, dot product,
from it), counted in instructions as every emulated LiteRT target is
(``edge_bench.emulated``). Instructions are not cycles.

``mpath-tf setup arm64`` (``setup_arm64``) builds what this needs in the
cache (``~/.cache/mpath-tf/arm64``, or ``$MPATH_TF_CACHE_DIR``), from the
package registries only: the arm64 packages of Python 3.11 and the
libraries it loads from Debian's mirror (checked against the index's
SHA-256), and the aarch64 wheels of ``ai-edge-litert`` (the version
installed here) and its dependencies from PyPI.

Cores (``CORES``): ``cortex-a53`` (Raspberry Pi 3, Zero 2 W),
``cortex-a55`` (phones' small cores; QEMU 7.2 has no A55 model, so the
A76's ARMv8.2 instruction set runs with an A55's cpuinfo), ``cortex-a72``
(Raspberry Pi 4), ``cortex-a76`` (Raspberry Pi 5, phones' big cores).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from edge_bench.benchmark_model import last_lines
from edge_bench.emulated import AGENT, EmulatedLiteRT
from edge_bench.mcu.build import build_plugin, cache_root as mcu_cache_root, plugin_path
from mpath_tf.errors import TargetError

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# The arm64 packages whose dependency closure makes the sysroot.
ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
# Dependencies a Python process never loads (package tools, time zones).
NOT_NEEDED = {"debconf", "debconf-2.0", "cdebconf", "perl-base", "dpkg", "tzdata", "media-types",
              "mime-support", "readline-common", "libc-bin", "install-info", "netbase"}
APT_HINT = "apt-get install qemu-user gcc"

_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp")


@dataclass(frozen=True)
class Core:
    """An ARM core as the emulator runs it and as LiteRT sees it.

    Attributes:
        name: ``cortex-a72`` and so on.
        qemu_cpu: QEMU's CPU model (``-cpu``).
        part: The MIDR part number ``/proc/cpuinfo`` shows.
        features: The ``Features`` line ``/proc/cpuinfo`` shows.
        boards: Where the core is found, for messages.
        variant: The MIDR variant (r<variant>p0). The A55 is shown as r1p0:
            LiteRT's CPU detection (pytorch/cpuinfo) turns the dot-product
            kernels off on an A55 r0p0, which counted 3.3x the instructions
            of r1p0 on a dense 500-wide layer; shipping A55s are r1p0 or later.
    """

    name: str
    qemu_cpu: str
    part: str
    features: str
    boards: str
    variant: str = "0x0"

    def cpuinfo(self) -> str:
        """The ``/proc/cpuinfo`` of one such core."""
        return (f"processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: {self.features}\n"
                "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: "
                f"{self.variant}\n"
                f"CPU part\t: {self.part}\nCPU revision\t: 0\n\n")


CORES = {core.name: core for core in (
    Core("cortex-a53", "cortex-a53", "0xd03", _V80, "Raspberry Pi 3, Zero 2 W"),
    Core("cortex-a55", "cortex-a76", "0xd05", _V82, "phones' small cores", variant="0x1"),
    Core("cortex-a72", "cortex-a72", "0xd08", _V80, "Raspberry Pi 4"),
    Core("cortex-a76", "cortex-a76", "0xd0b", _V82, "Raspberry Pi 5, phones' big cores"),
)}


def cache_root() -> Path:
    """``arm64/`` under mpath-tf's cache (``$MPATH_TF_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/mpath-tf``, else ``~/.cache/mpath-tf``)."""
    return mcu_cache_root().parent / "arm64"


def is_built(root: Path | None = None) -> bool:
    """Whether ``setup_arm64`` has finished in ``root``."""
    return ((root or cache_root()) / "manifest.json").is_file()


def get_core(name: str) -> Core:
    """The ``Core`` called ``name``.

    Raises:
        TargetError: Unknown core, naming the known ones.
    """
    if name not in CORES:
        raise TargetError(f"Unknown ARM core '{name}'. Choose one of: {', '.join(CORES)}.")
    return CORES[name]


def _packages(index: bytes) -> dict[str, dict]:
    """The stanzas of a Debian ``Packages`` index, by package name."""
    found = {}
    for block in index.decode().split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            found[fields["Package"]] = fields
    return found


def closure(packages: dict[str, dict], roots=ROOT_PACKAGES) -> list[str]:
    """The packages ``roots`` need (Pre-Depends and Depends, first
    alternative, virtual names through Provides), less ``NOT_NEEDED``.

    Example:
        >>> index = {"a": {"Depends": "b (>= 1), c | d"}, "b": {"Depends": "dpkg"},
        ...          "c": {"Provides": "e"}, "f": {"Depends": "e"}}
        >>> closure(index, ["a", "f"])
        ['a', 'b', 'c', 'f']
    """
    provides = {}
    for name, fields in packages.items():
        for virtual in fields.get("Provides", "").split(","):
            if virtual.strip():
                provides.setdefault(virtual.strip().split(" ")[0], name)
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        name = name if name in packages else provides.get(name, name)
        if name in seen or name in NOT_NEEDED or name not in packages:
            continue
        seen.add(name)
        fields = packages[name]
        for dep in f"{fields.get('Pre-Depends', '')},{fields.get('Depends', '')}".split(","):
            if dep.strip():
                first = re.sub(r"\s*\(.*?\)", "", dep.split("|")[0]).split(":")[0].strip()
                todo.append(first)
    return sorted(seen)


def _ar_members(data: bytes):
    """The members of an ``ar`` archive (a ``.deb``): (name, content)."""
    if data[:8] != b"!<arch>\n":
        raise TargetError("a downloaded .deb is not an ar archive")
    pos = 8
    while pos < len(data):
        header = data[pos:pos + 60]
        size = int(header[48:58])
        yield header[:16].decode().strip().rstrip("/"), data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as err:
        raise TargetError(f"Cannot download {url}: {err}. `mpath-tf setup arm64` needs "
                          "Debian's mirror and PyPI.") from None


def _sysroot(folder: Path, log) -> dict[str, str]:
    """Debian's arm64 Python and its libraries, unpacked in ``folder``."""
    index = lzma.decompress(_download(f"{MIRROR}/dists/{SUITE}/main/binary-arm64/Packages.xz"))
    packages = _packages(index)
    names = closure(packages)
    log(f"arm64 sysroot: {len(names)} Debian {SUITE} packages")
    for name in names:
        fields = packages[name]
        data = _download(f"{MIRROR}/{fields['Filename']}")
        if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
            raise TargetError(f"{name}: the download does not match the index's SHA-256.")
        for member, content in _ar_members(data):
            if member.startswith("data.tar"):
                with tarfile.open(fileobj=io.BytesIO(content)) as tar:
                    tar.extractall(folder, filter="tar")
    return {name: packages[name]["Version"] for name in names}


def _wheels(folder: Path, log) -> list[str]:
    """The aarch64 wheels of this machine's ``ai-edge-litert`` and its
    dependencies, unpacked in ``folder``."""
    litert = version("ai-edge-litert")
    with tempfile.TemporaryDirectory(prefix="mpath-arm64-") as downloads:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   f"ai-edge-litert=={litert}", "--only-binary=:all:", "--python-version",
                   "3.11", "--implementation", "cp", "--platform", "manylinux_2_27_aarch64",
                   "--platform", "manylinux2014_aarch64", "-d", downloads]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise TargetError(f"pip could not download the aarch64 wheels of ai-edge-litert "
                              f"{litert}: {last_lines(done.stderr)}")
        names = sorted(p.name for p in Path(downloads).glob("*.whl"))
        log(f"arm64 wheels: {', '.join(names)}")
        for name in names:
            with zipfile.ZipFile(Path(downloads) / name) as wheel:
                wheel.extractall(folder)
    return names


def setup_arm64(root: str | os.PathLike | None = None, log=print) -> Path:
    """Build the emulated ARM targets' runtime in the cache (once).

    Args:
        root: The folder (default ``cache_root()``).
        log: Progress lines.

    Returns:
        The folder.

    Raises:
        TargetError: A download failed, or no C compiler for the plugin.

    Example (downloads about 70 MB)::

        setup_arm64()  # then get_target("arm64:cortex-a72").measure("model.tflite")
    """
    root = Path(root) if root else cache_root()
    if is_built(root):
        log(f"arm64: built earlier in {root}")
        return root
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    (building / "site").mkdir(parents=True)
    packages = _sysroot(building / "sysroot", log)
    wheels = _wheels(building / "site", log)
    for folder in (building / "sysroot" / "usr" / "lib" / "python3.11", building / "site"):
        # bytecode once, here (the same for every platform): no run compiles or writes any
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(folder)],
                       capture_output=True)
    build_plugin(plugin_path(), log)  # the counting plugin every emulated target shares
    (building / "manifest.json").write_text(json.dumps(
        {"suite": SUITE, "packages": packages, "wheels": wheels}, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(building, root)
    return root


class Arm64Target(EmulatedLiteRT):
    """LiteRT on an emulated ARM Cortex-A core, counted in instructions.

    Args:
        spec: ``arm64:cortex-a53``, ``arm64:cortex-a55``, ``arm64:cortex-a72``
            or ``arm64:cortex-a76``.

    Example:
        >>> Arm64Target("arm64:cortex-a72").core.part
        '0xd08'
    """

    runtime = "litert (aarch64)"

    def __init__(self, spec: str):
        super().__init__()
        self.name = spec
        self.core = get_core(spec.split(":", 1)[1])
        self.root = cache_root()

    def _describe(self) -> dict:
        for tool in ("qemu-aarch64", "unshare"):
            if shutil.which(tool) is None:
                raise TargetError(f"{self.name}: {tool} is not installed; on Debian/Ubuntu: "
                                  f"{APT_HINT}")
        if not is_built(self.root):
            raise TargetError(f"{self.name}: the arm64 runtime is not set up; run `mpath-tf "
                              "setup arm64` first (downloads about 70 MB, once).")
        build_plugin(plugin_path(), log=lambda *_: None)  # this source's
        manifest = json.loads((self.root / "manifest.json").read_text())
        version = subprocess.run(["qemu-aarch64", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
        return {"runtime": "litert (aarch64 wheel)", "core": self.core.name,
                "qemu_cpu": self.core.qemu_cpu, "boards": self.core.boards,
                "emulator": version, "unit": "instructions (not cycles)",
                "wheels": manifest["wheels"],
                "python": manifest["packages"].get("python3.11-minimal")}

    def _process(self, agent_args, counted, work):
        sysroot = self.root / "sysroot"
        plugin = ["-plugin", str(plugin_path())] if counted else []
        command = ["qemu-aarch64", "-L", str(sysroot), "-cpu", self.core.qemu_cpu, *plugin,
                   str(sysroot / "usr/bin/python3.11"), "-s", str(AGENT), *agent_args]
        cpuinfo = work / "cpuinfo"  # written for each run: always this code's
        cpuinfo.write_text(self.core.cpuinfo())
        mount = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
        script = 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"'
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
               "PYTHONPATH": str(self.root / "site"), "PYTHONDONTWRITEBYTECODE": "1"}
        return [*mount, "sh", "-c", script, "sh", str(cpuinfo), *command], env
