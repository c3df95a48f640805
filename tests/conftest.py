"""Shared fixtures: seeded data, the shared datasets directory, tiny runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# ../shared/datasets beside the checkout (CI clones main with ../shared beside it).
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "mnist").is_dir():
        pytest.fail(f"the verified dataset files are expected in {SHARED_DATASETS}")
    return SHARED_DATASETS
