"""Start-up of the read-only commands (`--help`, `show`, `list`) against `import torch`,
the floor every command paid before the manifests (discovery imported every plugin).

    python benchmarks/startup.py [--repeats 5]

Each command runs in a fresh interpreter, the sides interleaved per repeat; both the
wall time and the CPU time of the child (user + sys, less noisy on a shared machine) are
measured, and the median per-repeat ratio to `import torch` is printed.  `import
registry; registry.discover()` (what `list` did before) is timed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = {
    "import torch": ["-c", "import torch"],
    "discover() (before)": ["-c", "import registry; registry.discover()"],
    "--help": ["-m", "registry", "--help"],
    "show abs_mnist": ["-m", "registry", "show", "abs_mnist"],
    "list": ["-m", "registry", "list"],
}


def timed(args: list[str]) -> tuple[float, float, str]:
    before = os.times()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{args} failed: {done.stderr[-500:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, done.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    times = {k: [] for k in SIDES}
    outputs = {}
    for _ in range(args.repeats + 1):  # the first round warms the file cache, not counted
        for name, argv in SIDES.items():
            wall, cpu, outputs[name] = timed(argv)
            times[name].append((wall, cpu))
    base = times["import torch"][1:]
    print(f"{'command':22s} {'wall s':>7s} {'cpu s':>7s} {'wall/torch':>10s} {'cpu/torch':>9s}")
    for name, ts in times.items():
        ts = ts[1:]
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        rw = statistics.median(t[0] / b[0] for t, b in zip(ts, base))
        rc = statistics.median(t[1] / b[1] for t, b in zip(ts, base))
        print(f"{name:22s} {wall:7.2f} {cpu:7.2f} {rw:10.2f} {rc:9.2f}")
    rows = len(outputs["list"].splitlines()) - 1
    print(f"(`list` printed {rows} experiments; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
