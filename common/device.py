"""Device, dtype and seeds, chosen in one place.

``pick_device("auto")`` prefers CUDA, then MPS, then the CPU; a named device
that is not available is an error rather than a silent fallback.  Timing claims
use ``WallTimer``: wall-clock with the device synchronised at both ends, so
asynchronous GPU work is counted (``synchronize`` alone for other uses).
"""

from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

from registry import ReproError


def pick_device(preference: str = "auto") -> torch.device:
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if preference == "cuda" and not cuda:
        raise ReproError("--device cuda asked for, but torch sees no CUDA device")
    if preference == "mps" and not mps:
        raise ReproError("--device mps asked for, but torch sees no MPS device")
    if preference not in ("cpu", "cuda", "mps"):
        raise ReproError(f"unknown device {preference!r}: use auto, cpu, cuda or mps")
    return torch.device(preference)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(flag: bool) -> None:
    """Deterministic kernels (on in tests; opt-in on the command line)."""
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(flag, warn_only=False)
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = not flag


def rng_state() -> dict:
    """Every global RNG state, as tensors and plain ints so that a checkpoint
    holding it loads with ``torch.load(..., weights_only=True)``."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(gauss),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": None if py_gauss is None else float(py_gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(int(x) for x in state["python"].tolist()),
                     state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued work (CUDA, MPS); a no-op on the CPU and meta."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class WallTimer:
    """Synchronised wall-clock time of a block, for timing claims: the device is
    synchronised on entry and exit, so queued GPU work is counted where it was issued::

        with WallTimer(device) as t:
            train()
        t.seconds

    or ``timer = WallTimer(device).start()`` ... ``timer.stop()`` (returns the seconds).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device, self.seconds = device, 0.0

    def start(self) -> "WallTimer":
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> float:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        return self.seconds

    def __enter__(self) -> "WallTimer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
