"""Shared fixtures: seeded data, the shared datasets directory, tiny runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# ../shared/datasets beside the checkout (CI clones main with ../shared beside it).
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (setup.cfg): one worker more than this machine's cores.

    Many tests wait: on the search subprocesses they start and kill, on
    emulated devices, on servers starting. With one worker per core the
    cores idled about 13% of the suite (984 CPU-seconds in 564 s on 2 cores,
    2026-12-06); with 3 workers the suite took 493 s instead of 543-564 s.
    """
    return len(os.sched_getaffinity(0)) + 1


# The slowest test files (seconds per file with --durations, 2026-12-06), in
# the order xdist's loadfile hands them out (setup.cfg: --no-loadscope-reorder;
# the default order is by test count): longest first, so the workers end
# together instead of one running a long file alone at the end.
SLOWEST_FIRST = (
    "test_faults.py", "test_strategy.py", "test_objective.py", "test_cli.py", "test_tflm.py",
    "test_arm64.py", "test_baselines.py", "test_distributed.py", "test_residual.py",
    "test_verify.py", "test_damaged.py", "test_tradeoff.py", "test_equalize.py",
    "test_lowering.py", "test_to_supernet.py", "test_qat.py", "test_gated_stacks.py",
    "test_export.py", "test_int16x8.py", "test_bench.py", "test_user_data.py",
    "test_conv_lowering.py", "test_sampling.py", "test_cnn.py", "test_profiles_cpu.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


def search_finished(code: int, output: str) -> bool:
    """A test search ran to the end: exit 0, or exit 1 only because the chosen
    model's files missed their checks (the tiny, near-random models of the
    orchestration tests cannot keep int8's gates, and the tool
    must say so); every other failure is a failure."""
    return code == 0 or (code == 1 and "missed their checks" in output
                         and "Traceback" not in output)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "mnist").is_dir():
        pytest.fail(f"the verified dataset files are expected in {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def digits():
    """The bundled 8x8 digits dataset (loaded once)."""
    from mpath_tf import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory) -> dict[int, Path]:
    """float32 ``.tflite`` files of derived models (path count -> file) of an
    untrained mpath-3-12 supernet on 64 inputs; latency does not depend on
    the weights' values."""
    from converters import export_tflite
    from mpath_tf import build_supernet, derive

    folder = tmp_path_factory.mktemp("tflite")
    net = build_supernet((64,), 10, depth=3, width=12, seed=0)
    return {b: export_tflite(derive(net, b), folder / f"paths-{b}.tflite") for b in (1, 2, 12)}


# The settings of ``tiny_run`` (``mpath-tf search`` with these options:
# tests/test_cli.py's TINY).
TINY_CONFIG = dict(depth=3, width=6, epochs=2, finetune_epochs=1, samples=3, batch_size=64,
                   bench=False)


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A directory that ``build(path)`` makes once per test session, even
    across xdist's workers (the first to ask builds it under a file lock, the
    others wait for it); each caller gets its own copy to write into."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built = shared / f"{name}-built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / ".complete").is_file():
            shutil.rmtree(built, ignore_errors=True)
            build(built / name)
            (built / ".complete").touch()
    copy = tmp_path_factory.mktemp(name) / name
    shutil.copytree(built / name, copy)
    return copy


def _tiny_search(run: Path) -> None:
    from mpath_tf.pipeline.config import SearchConfig
    from mpath_tf.pipeline.run import search

    search(SearchConfig(**TINY_CONFIG).validate(), run, log=lambda *_: None)


def tiny_run_copy(tmp_path_factory) -> Path:
    """A copy of the session's tiny finished run, for a module that changes it."""
    return _built_once(tmp_path_factory, "tiny", _tiny_search)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished search run on the embedded digits data (mpath-3-6, seconds):
    ``TINY_CONFIG``, built once per session."""
    return tiny_run_copy(tmp_path_factory)


def assert_int8_close(check) -> None:
    """int8 parity for the small digits models of the tests.

    Their softmax outputs are soft (about 90% accuracy on 360 test images),
    so more output values sit mid-range where int8 rounding shows most; the
    product bounds (4 output steps at p99, the int8 gates) are checked
    on an MNIST model in test_verify.py. Here: top-1 agreement >= 98% and
    the 99th percentile difference within 8 output steps.
    """
    assert check.quantization == "int8" and check.output_step, check
    assert check.agreement >= 0.98, check.summary()
    assert check.p99_abs_diff <= 8 * check.output_step, check.summary()


# Quick timing settings for tests: the measured numbers are not asserted on.
FAST = dict(warmup_runs=1, warmup_min_secs=0.0, runs=20, min_secs=0.05, timeout_s=60)


@pytest.fixture(scope="session")
def cli_search(tmp_path_factory):
    """An uninterrupted search by the installed CLI in a subprocess
    (``tests/faults.py``'s small run through every phase): the finished
    process and its run directory."""
    import subprocess

    from tests import faults

    run = tmp_path_factory.mktemp("cli-search") / "run"
    proc = subprocess.run(faults.command(run), capture_output=True, text=True, cwd=run.parent,
                          timeout=600)
    return proc, run
