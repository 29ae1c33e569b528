"""Keep freed CPU buffers in the process instead of handing them back to the kernel.

PyTorch's CPU tensors come from the C library's ``malloc``.  glibc serves every request
above its mmap threshold (128 KiB at start, raised dynamically up to 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` on free, and it trims the top of the heap
whenever more than its trim threshold is free.  A training loop allocates the same
activation-sized buffers every step, so each step faults every page of them in again:
on ``coordconv_notsoclevr``'s CoordConv painter (batches of 16 64x64 maps) the kernel
time is about as large as the arithmetic.  ``benchmarks/allocator.py`` measures it per
workload: 1.64x less CPU time for that painter, 1.55x for the deconv painter, 1.13x
for a PGD-training step of Madry's CNN; none for ABS inference on 10 images, whose
buffers are small (decoding ABS's bank of 8,000 latents x 10 classes, once per
model, took 1.9x less in a single measurement).

:func:`keep_freed_memory` stops glibc from serving requests by ``mmap`` and turns
trimming off, so freed buffers are reused from the heap.  Nothing numerical changes;
the cost is that the process keeps its peak heap until it exits.
``python -m registry run`` (every sweep worker included) calls it before the run, and
``run.json`` records :func:`in_effect`; a process that calls ``execute`` itself (the
test suite) keeps glibc's defaults.  Set ``REPRO_MALLOC_DEFAULTS=1`` to keep them in
runs too.  On other C libraries (macOS, musl) it does nothing and says so.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4

_applied: str | None = None


def keep_freed_memory() -> str:
    """Tune glibc ``malloc`` as described in the module docstring (once per process).

    Returns a short description of what is in effect, for the run record."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get("REPRO_MALLOC_DEFAULTS", "") not in ("", "0"):
        _applied = "C library defaults (REPRO_MALLOC_DEFAULTS set)"
    elif not sys.platform.startswith("linux"):
        _applied = "C library defaults (not Linux)"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            _applied = "C library defaults (no mallopt)"
        else:
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            # M_MMAP_MAX 0: no request is served by mmap (glibc still falls back to it
            # when the heap cannot grow); M_TRIM_THRESHOLD -1: never trim the heap.
            mmap_ok = mallopt(M_MMAP_MAX, 0) == 1
            trim_ok = mallopt(M_TRIM_THRESHOLD, -1) == 1
            _applied = ("glibc malloc: heap only (no mmap), no trimming" if mmap_ok and trim_ok
                        else "C library defaults (mallopt refused)")
    return _applied


def in_effect() -> str:
    """What :func:`keep_freed_memory` set in this process, or glibc's defaults."""
    return _applied or "C library defaults"
