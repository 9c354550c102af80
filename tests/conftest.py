"""Shared fixtures: the shared data/checkpoints when present, and an isolated cache per test; the slow tier."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import torch

from helpers import SHARED_DATA, THIRDPARTY

# Triton kernels are tested on the CPU by its interpreter; the switch must be set before triton is
# imported (it decides at kernel definition). On a CUDA machine they run natively.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")



#: what puts a test in the slow tier by itself (CI runs both tiers; `pytest -m "not slow"` is the fast loop, about
#: 2.5 min on the 2-core machine):
#: a CLI run in a fresh Python (torch imports for seconds), training, the gradient-masking checks, or the
#: shared data and zoo models (real ResNet-20s on CIFAR-10 images)
SLOW_CODE = ("subprocess.", "sys.executable", "run_checks(", "_checks(", '"check"', '"train"', "Trainer(")
SLOW_FIXTURES = {"shared_data", "thirdparty", "golden_store"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            code = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            continue
        if any(sign in code for sign in SLOW_CODE) or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory):
    """One compiled CPU kernel for the whole session (compiling once per test would be wasteful)."""
    return tmp_path_factory.mktemp("kernels")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch, kernel_cache):
    """Every test gets its own ROBUSTADDER_HOME: nothing touches the user's cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ROBUSTADDER_HOME", str(home))
    monkeypatch.setenv("ROBUSTADDER_KERNEL_CACHE", str(kernel_cache))
    monkeypatch.delenv("ROBUSTADDER_DATA", raising=False)
    monkeypatch.delenv("ROBUSTADDER_ZOO", raising=False)
    return home


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10_test.npz").is_file():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def thirdparty() -> Path:
    if not THIRDPARTY.is_file():
        pytest.skip("../shared/checkpoints is not present")
    return THIRDPARTY
