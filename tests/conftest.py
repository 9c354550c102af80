"""Shared fixtures: the shared data/checkpoints when present, and an isolated cache per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Triton kernels are tested on the CPU by its interpreter; the switch must be set before triton is
# imported (it decides at kernel definition). On a CUDA machine they run natively.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTADDER_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
THIRDPARTY = SHARED / "checkpoints" / "thirdparty-addernet-resnet20-cifar10.pt"


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


def tree(path: Path) -> list[str]:
    """Every file below ``path`` (to assert that nothing was written)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
