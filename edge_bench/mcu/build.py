"""Building TFLM with CMSIS-NN for Cortex-M cores, offline, in the user's cache.

``setup_mcu(["cortex-m4"])`` unpacks the source snapshots of
``../shared/third_party`` (TFLM and the exact commits its download scripts
pin: see that folder's README) where TFLM's scripts look for them, so no
script downloads anything; builds ``libtensorflow-microlite.a`` with
``OPTIMIZED_KERNEL_DIR=cmsis_nn`` for each core with Debian's
``arm-none-eabi`` GCC; links ``runner.cc`` (the benchmark program) against
it with the core's startup code from ``Cortex_DFP``; and compiles the QEMU
plugin that counts executed instructions (``insn_count.c``). Every step is
skipped when its output exists, so a second call costs nothing.

A cold build of one core takes about 6 minutes on 2 cores (the library);
linking a runner takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mpath_tf.errors import ConfigError, RuntimeFailure, TargetError
from mpath_tf.storage import atomic_write_text

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Core:
    """One Cortex-M configuration: how TFLM, the runner and QEMU see it.

    Attributes:
        name: The target's spelling after ``tflm:`` (``cortex-m4``).
        tflm_arch: ``TARGET_ARCH`` of TFLM's ``cortex_m_generic`` makefile.
        cflags: The runner's code-generation flags (must match the library's).
        board: The QEMU machine with this core.
        device: The ``Cortex_DFP`` device folder (startup code).
        float_abi: ``soft`` (no FPU) or ``hard``.
        memory: ``(code base, code size, data base, data size)`` on the board.
        heap: Heap bytes (the model file is read into the heap, up to 1.5 MB).
        model_memory: ``(address, bytes)`` of the memory where QEMU's loader
            device puts the model (and the input in its last 64 KB) on boards
            whose semihosting cannot read files; None: read as files.
        no_stack_limit: Start with no stack limit (ARMv8-M's MSPLIM): newlib's
            semihosting start-up moves the stack where the limit from the
            linker script would call it an overflow.
    """

    name: str
    tflm_arch: str
    cflags: tuple[str, ...]
    board: str
    device: str
    float_abi: str
    memory: tuple[int, int, int, int] = (0x00000000, 4 << 20, 0x20000000, 4 << 20)
    heap: int = 0x180000
    model_memory: tuple[int, int] | None = None
    no_stack_limit: bool = False


# Cores and the QEMU 7.2 boards that have them: mps2-an386 (Cortex-M4) and
# mps2-an500 (Cortex-M7), with 4 MB of code memory at 0x0 and 4 MB of data
# RAM at 0x20000000; mps3-an547 (Cortex-M55, SSE-300) boots from its 512 KB
# ITCM at 0x0 (init-svtor 0) and has 4 MB of SRAM at 0x21000000 (QEMU's
# hw/arm/mps2-tz.c): the runner's data takes its first 2 MB, the model the
# rest, put there by QEMU's loader device (semihosting reads of files fail
# on that board).
CORES = {
    "cortex-m4": Core("cortex-m4", "cortex-m4", ("-mcpu=cortex-m4+nofp", "-mfloat-abi=soft"),
                      "mps2-an386", "ARMCM4", "soft"),
    "cortex-m4f": Core("cortex-m4f", "cortex-m4+fp",
                       ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
                       "mps2-an386", "ARMCM4", "hard"),
    "cortex-m7": Core("cortex-m7", "cortex-m7+fp",
                      ("-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
                      "mps2-an500", "ARMCM7", "hard"),
    "cortex-m55": Core("cortex-m55", "cortex-m55", ("-mcpu=cortex-m55", "-mfloat-abi=hard"),
                       "mps3-an547", "ARMCM55", "hard",
                       (0x00000000, 512 << 10, 0x21000000, 2 << 20), heap=0x10000,
                       model_memory=(0x21200000, 2 << 20), no_stack_limit=True),
}

# Source snapshots: archive -> folder under TFLM's tools/make/downloads/.
SOURCES = {
    "CMSIS-NN.tar.gz": "cmsis_nn",
    "CMSIS_6.tar.gz": "cmsis",
    "flatbuffers.tar.gz": "flatbuffers",
    "gemmlowp.tar.gz": "gemmlowp",
    "ruy.tar.gz": "ruy",
    "kissfft.tar.gz": "kissfft",
}
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar", "qemu-system-arm")
APT_HINT = ("apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            "libstdc++-arm-none-eabi-newlib qemu-system-arm")

STACK_BYTES = 0x8000  # the runner's stack


def cache_root() -> Path:
    """Where builds live: ``$MPATH_TF_CACHE_DIR``, else ``$XDG_CACHE_HOME/mpath-tf``,
    else ``~/.cache/mpath-tf`` (as the lowering profiles cache); then ``mcu/``."""
    base = os.environ.get("MPATH_TF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mpath-tf")
    return Path(base) / "mcu"


def default_sources() -> Path | None:
    """The snapshots folder: ``$MPATH_TF_THIRD_PARTY``, else the first
    ``shared/third_party`` found above the current directory or this package."""
    given = os.environ.get("MPATH_TF_THIRD_PARTY")
    if given:
        return Path(given)
    for start in (Path.cwd(), HERE):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "third_party"
            if (candidate / "tflite-micro.tar.gz").is_file():
                return candidate
    return None


def get_core(name: str) -> Core:
    """The ``Core`` called ``name``.

    Raises:
        ConfigError: Unknown core, naming the known ones.

    Example:
        >>> get_core("cortex-m4").board
        'mps2-an386'
    """
    if name not in CORES:
        raise ConfigError(f"Unknown Cortex-M core '{name}'. Choose one of: {', '.join(CORES)}.")
    return CORES[name]


def runner_path(core: Core, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"runner-{core.name}.elf"


def plugin_path(root: Path | None = None) -> Path:
    return (root or cache_root()) / "libinsn_count.so"


def is_built(core: Core, root: Path | None = None) -> bool:
    """Whether the runner of ``core`` and the counting plugin exist."""
    return runner_path(core, root).is_file() and plugin_path(root).is_file()


def _check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise TargetError(f"Building for Cortex-M needs {', '.join(missing)}, which is not "
                          f"installed; on Debian/Ubuntu: {APT_HINT}")


def _run(command: list[str], cwd: Path, log, what: str, env=None) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeFailure(f"Cortex-M build: {what} failed (exit {proc.returncode}):\n{tail}")


def _unpack(archive: Path, into: Path, name: str) -> Path:
    """Unpack ``archive`` (one top folder) as ``into/name``, atomically."""
    final = into / name
    if final.is_dir():
        return final
    into.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=into, prefix=f".{name}-"))
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="tar")
    (top,) = list(scratch.iterdir())
    top.rename(final)
    scratch.rmdir()
    return final


def _prepare_tree(sources: Path, root: Path, log) -> Path:
    """TFLM's tree with every download folder in place; returns the tree."""
    tree = _unpack(sources / "tflite-micro.tar.gz", root, "tflite-micro")
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    downloads.mkdir(exist_ok=True)
    for archive, folder in SOURCES.items():
        if not (downloads / folder).is_dir():
            log(f"unpacking {archive}")
            _unpack(sources / archive, downloads, folder)
            if folder in ("flatbuffers", "kissfft"):  # TFLM's patches, as its scripts apply them
                patch = (tree / "tensorflow/lite/micro/tools/make/flatbuffers.patch"
                         if folder == "flatbuffers" else tree / "third_party/kissfft/kissfft.patch")
                _run(["patch", "-p1", "-s", "-i", str(patch)], downloads / folder, log,
                     f"patching {folder}")
    _unpack(sources / "Cortex_DFP.tar.gz", downloads / "cmsis", "Cortex_DFP")
    (downloads / "pigweed").mkdir(exist_ok=True)  # only TFLM's tests use it (git clone)
    gcc = downloads / "gcc_embedded" / "bin"
    gcc.mkdir(parents=True, exist_ok=True)
    for tool in ("gcc", "g++", "ar", "as", "ld", "objcopy", "size", "nm"):
        link = gcc / f"arm-none-eabi-{tool}"
        found = shutil.which(f"arm-none-eabi-{tool}")
        if found and not link.exists():
            link.symlink_to(found)
    return tree


def _library(tree: Path, core: Core, log) -> Path:
    gen = tree / "gen" / f"cortex_m_generic_{core.tflm_arch}_default_cmsis_nn_gcc"
    library = gen / "lib" / "libtensorflow-microlite.a"
    if library.is_file():
        return library
    log(f"building TFLM with CMSIS-NN for {core.name} (about 6 minutes on 2 cores)")
    # The examples' makefiles run Python generators when parsed (numpy,
    # pillow): this Python goes first on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    _run(["make", "-f", "tensorflow/lite/micro/tools/make/Makefile", "TARGET=cortex_m_generic",
          f"TARGET_ARCH={core.tflm_arch}", "OPTIMIZED_KERNEL_DIR=cmsis_nn", "BUILD_TYPE=default",
          "microlite", f"-j{os.cpu_count() or 2}"], tree, log, f"make microlite ({core.name})", env)
    return library


def _link_runner(tree: Path, library: Path, core: Core, out: Path, log) -> None:
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    dfp = downloads / "cmsis" / "Cortex_DFP" / "Device" / core.device
    cmsis = downloads / "cmsis" / "CMSIS" / "Core" / "Include"
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        work = Path(work)
        (work / "board.ld").write_text(linker_script(
            (dfp / "Config" / f"{core.device}_gcc.ld").read_text(), core))
        flags = ["-mthumb", *core.cflags, "-O2", f"-D{core.device}",
                 f"-I{tree}", f"-I{dfp / 'Include'}", f"-I{cmsis}",
                 f"-I{downloads / 'flatbuffers' / 'include'}", f"-I{downloads / 'gemmlowp'}",
                 "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_MCU_DEBUG_LOG"]
        objects = []
        for source, compiler, extra in (
                (HERE / "runner.cc", "arm-none-eabi-g++",
                 ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]),
                (dfp / "Source" / f"startup_{core.device}.c", "arm-none-eabi-gcc",
                 ["-D__STACK_LIMIT=mpath_no_stack_limit"] if core.no_stack_limit else []),
                (dfp / "Source" / f"system_{core.device}.c", "arm-none-eabi-gcc", [])):
            obj = work / (source.stem + ".o")
            _run([compiler, *flags, *extra, "-c", str(source), "-o", str(obj)], work, log,
                 f"compiling {source.name} ({core.name})")
            objects.append(str(obj))
        temp = work / "runner.elf"
        _run(["arm-none-eabi-g++", "-mthumb", *core.cflags, "--specs=rdimon.specs",
              f"-T{work / 'board.ld'}", *objects, str(library), "-lm", "-Wl,--gc-sections",
              *(["-Wl,--defsym=mpath_no_stack_limit=0"] if core.no_stack_limit else []),
              "-o", str(temp)], work, log, f"linking the runner ({core.name})")
        os.replace(temp, out)


def linker_script(template: str, core: Core) -> str:
    """``Cortex_DFP``'s linker script with the board's memory, stack and heap.

    Example:
        >>> print(linker_script("__RAM_BASE = 0x20000000;\\n__HEAP_SIZE  = 0x00000C00;",
        ...                     get_core("cortex-m7")))
        __RAM_BASE = 0x20000000;
        __HEAP_SIZE = 0x00180000;
    """
    rom, rom_size, ram, ram_size = core.memory
    values = {"__ROM_BASE": rom, "__ROM_SIZE": rom_size, "__RAM_BASE": ram,
              "__RAM_SIZE": ram_size, "__STACK_SIZE": STACK_BYTES, "__HEAP_SIZE": core.heap}
    for symbol, value in values.items():
        template = re.sub(rf"^{symbol}\s*=\s*[^;]+;", f"{symbol} = 0x{value:08X};", template,
                          flags=re.M)
    return template


def build_plugin(out: Path, log) -> None:
    """Compile the instruction-counting QEMU plugin (``insn_count.c``) to
    ``out``, once per version of the source (``out.sha256`` records which)."""
    source = HERE / "insn_count.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stamp = out.with_name(out.name + ".sha256")
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return
    compiler = shutil.which("gcc") or shutil.which("cc")
    out.parent.mkdir(parents=True, exist_ok=True)
    if compiler is None:
        raise TargetError("Building the instruction-counting QEMU plugin needs a C compiler "
                          "(gcc); install it (apt-get install gcc).")
    temp = out.with_suffix(".tmp")
    _run([compiler, "-shared", "-fPIC", "-O2", str(source), "-o", str(temp)],
         out.parent, log, "compiling the QEMU plugin")
    os.replace(temp, out)
    atomic_write_text(stamp, digest + "\n")


def setup_mcu(cores=("cortex-m4",), sources: str | os.PathLike | None = None,
              root: str | os.PathLike | None = None, log=print) -> dict[str, Path]:
    """Build the Cortex-M benchmark runners (cached; a built core is skipped).

    Args:
        cores: Names from ``CORES``.
        sources: The folder of source snapshots (default ``default_sources()``).
        root: Build folder (default ``cache_root()``).
        log: Progress lines.

    Returns:
        ``{core name: runner path}``.

    Raises:
        ConfigError: Unknown core, or no source snapshots found.
        TargetError: A missing tool.
        RuntimeFailure: A failed build step (its output's last lines).

    Example:
        >>> sorted(CORES)
        ['cortex-m4', 'cortex-m4f', 'cortex-m55', 'cortex-m7']
    """
    chosen = [get_core(name) for name in cores]
    root = Path(root) if root else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    build_plugin(plugin_path(root), log)
    missing = [core for core in chosen if not runner_path(core, root).is_file()]
    if not missing:
        return {core.name: runner_path(core, root) for core in chosen}
    sources = Path(sources) if sources else default_sources()
    if sources is None or not (sources / "tflite-micro.tar.gz").is_file():
        looked = sources or "shared/third_party above the current directory"
        raise ConfigError(
            f"No TFLM source snapshots found (looked in {looked}): pass --sources DIR (the "
            "folder with tflite-micro.tar.gz, CMSIS-NN.tar.gz, ...) or set MPATH_TF_THIRD_PARTY.")
    _check_tools()
    tree = _prepare_tree(sources, root, log)
    for core in missing:
        library = _library(tree, core, log)
        _link_runner(tree, library, core, runner_path(core, root), log)
        log(f"built {runner_path(core, root)}")
    return {core.name: runner_path(core, root) for core in chosen}
