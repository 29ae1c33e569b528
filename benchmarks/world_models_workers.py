"""VizDoom Take Cover environment steps per second: random-policy rollouts (the
collection stage of world_models_doom, frames resized and written as npz) in N
worker processes vs one process, interleaved after a warm-up round.

    python benchmarks/world_models_workers.py [--workers 2] [--episodes 8] [--repeats 3]

Each side runs the same episodes (same seeds, so the same number of steps), through
``papers.world_models.envs.parallel_map``, starting its games (one per process) and
closing them inside the timed call.  Wall clock: workers are other processes.  On
the 2-core development machine, shared with other jobs, the ratio is bounded by the
cores actually free, not by the code.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._bench import fmt_ratios, interleaved, ratios  # noqa: E402
from papers.world_models import envs as E  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {}

    def side(workers):
        def fn():
            d = Path(tempfile.mkdtemp(prefix="wm_bench_"))
            try:
                jobs = [{"path": str(d / f"ep{i}.npz"), "seed": 1000 + i} for i in range(args.episodes)]
                out = E.parallel_map(E.random_episode, jobs, workers)
                E.close_games()
                return sum(o["length"] for o in out)
            finally:
                shutil.rmtree(d)
        return fn

    names = {"one": side(1), f"{args.workers}_workers": side(args.workers)}

    def report(r, name, dt, out):
        steps.setdefault(name, []).append(out / dt)
        print(f"repeat {r}: {name}: {out} steps in {dt:.2f} s ({out / dt:.0f} steps/s)", flush=True)

    times = interleaved(names, args.repeats, "wall", report=report)
    ratio, rs = ratios(times, "one", f"{args.workers}_workers")
    print(f"\n{args.workers} workers vs one: {ratio:.2f}x the steps per second (median of per-repeat "
          f"ratios {fmt_ratios(rs)}); steps/s one {sorted(steps['one'])[len(rs) // 2]:.0f}, "
          f"{args.workers} workers {sorted(steps[f'{args.workers}_workers'])[len(rs) // 2]:.0f}")


if __name__ == "__main__":
    main()
