"""common.allocator: freed buffers are reused (no page faults per step), opt-out works."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")

PROBE = """
import resource, sys
sys.path.insert(0, {root!r})
from common.allocator import keep_freed_memory
applied = keep_freed_memory()
assert keep_freed_memory() == applied  # once per process: a second call changes nothing
import numpy as np
def step():  # a training step's pattern: several activation buffers alive, then all freed
    alive = [np.ones(1 << 20) for _ in range(6)]  # six 8 MiB buffers, written in full
    return sum(float(a[::512].sum()) for a in alive)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, applied, sep="|")
"""


def probe(defaults: bool) -> tuple[int, str]:
    import os
    from registry import ROOT
    env = dict(os.environ, REPRO_MALLOC_DEFAULTS="1" if defaults else "")
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    faults, applied = out.split("|")
    return int(faults), applied


def test_kept_buffers_are_not_faulted_in_again():
    kept, applied = probe(defaults=False)
    if not applied.startswith("glibc"):
        pytest.skip(f"not glibc: {applied}")
    default_faults, default_applied = probe(defaults=True)
    assert default_applied.startswith("C library defaults (REPRO_MALLOC_DEFAULTS")
    # 30 steps x 6 buffers x 8 MiB = 368,640 pages written: with glibc's defaults the
    # freed buffers go back to the kernel (munmap, or a trimmed heap top) and fault in
    # again next step; the kept heap reuses them.
    assert default_faults > 50_000
    assert kept < default_faults / 20


def test_not_applied_in_a_process_that_does_not_ask():
    # the test process calls execute itself and keeps glibc's defaults (registry run applies it)
    from common.allocator import in_effect
    assert in_effect() == "C library defaults"
