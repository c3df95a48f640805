"""This machine's LiteRT on an emulated x86-64 CPU, counted in instructions:
``x86_64`` or ``x86_64:CPU``.

The same Python, NumPy and LiteRT that time files here (the ``local``
target) run under ``qemu-x86_64`` (QEMU user mode) with a QEMU CPU model
(``-cpu``; default ``max``), counted as every emulated LiteRT target is
(``edge_bench.emulated``). Its use is to check instruction counts against
time on a machine where both exist: the ARM targets count instructions
only, and a count stands for time only as far as the two rank files alike
here. One difference stays: XNNPACK picks its kernels from the CPU it sees,
and QEMU 7.2 emulates AVX2 but not AVX-512, so on a CPU with AVX-512 the
counted kernels are AVX2's and the timed ones AVX-512's (the device
record names both ISAs).

Needs Debian's ``qemu-user`` and a C compiler for the counting plugin
(built once in mpath-tf's cache); nothing to download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version

from edge_bench.emulated import AGENT, EmulatedLiteRT
from edge_bench.mcu.build import build_plugin, plugin_path
from mpath_tf.errors import TargetError

DEFAULT_CPU = "max"


def _host_isa() -> str:
    """The widest vector extension in this machine's ``/proc/cpuinfo``."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    for isa in ("avx512_vnni", "avx512f", "avx2", "avx", "sse4_2"):
        if f" {isa}" in flags:
            return isa
    return "unknown"


class X86Target(EmulatedLiteRT):
    """This machine's LiteRT on an emulated x86-64 CPU, counted in instructions.

    Args:
        spec: ``x86_64`` (QEMU's ``max`` CPU) or ``x86_64:CPU`` with a QEMU
            x86 CPU model (``qemu-x86_64 -cpu help``), e.g. ``x86_64:Haswell``.

    Example:
        >>> X86Target("x86_64").cpu, X86Target("x86_64:Haswell").cpu
        ('max', 'Haswell')
    """

    runtime = "litert (x86-64, emulated)"

    def __init__(self, spec: str):
        super().__init__()
        self.name = spec
        self.cpu = spec.split(":", 1)[1] if ":" in spec else DEFAULT_CPU
        if not self.cpu:
            raise TargetError(f"{spec}: name a QEMU CPU model after the colon, or use x86_64.")

    def _describe(self) -> dict:
        if shutil.which("qemu-x86_64") is None:
            raise TargetError(f"{self.name}: qemu-x86_64 is not installed; on Debian/Ubuntu: "
                              "apt-get install qemu-user gcc")
        build_plugin(plugin_path(), log=lambda *_: None)
        known = subprocess.run(["qemu-x86_64", "-cpu", "help"], capture_output=True,
                               text=True).stdout
        if self.cpu not in known.split():
            raise TargetError(f"{self.name}: QEMU has no x86 CPU model '{self.cpu}'; "
                              "`qemu-x86_64 -cpu help` lists them (default: max).")

        emulator = subprocess.run(["qemu-x86_64", "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
        return {"runtime": "litert (this machine's, emulated)", "qemu_cpu": self.cpu,
                "emulator": emulator, "unit": "instructions (not cycles)",
                "ai_edge_litert": version("ai-edge-litert"), "host_isa": _host_isa()}

    def _process(self, agent_args, counted, work):
        plugin = ["-plugin", str(plugin_path())] if counted else []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}
        return ["qemu-x86_64", "-cpu", self.cpu, *plugin, sys.executable, "-s", str(AGENT),
                *agent_args], env
