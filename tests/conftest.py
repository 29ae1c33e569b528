"""Shared fixtures: every test runs with its own runs/ and reports/ folders,
a clean gin state and deterministic kernels.  MNIST comes from $REPRO_DATA,
else from the project's ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import gin
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_SHARED = ROOT.parent / "shared" / "data"
if not os.environ.get("REPRO_DATA") and (_SHARED / "mnist").is_dir():
    os.environ["REPRO_DATA"] = str(_SHARED)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REPRO_REPORTS", str(tmp_path / "reports"))
    gin.clear_config()
    yield
    gin.clear_config()
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def one_thread():
    """One torch thread for the test (the single-threaded timings and numerics the
    paper checks assume); the previous count is restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mnist_available() -> bool:
    root = Path(os.environ.get("REPRO_DATA", "/nonexistent"))
    return (root / "mnist" / "train-images-idx3-ubyte.gz").exists() or \
        (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def fashion_available() -> bool:
    return Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()
