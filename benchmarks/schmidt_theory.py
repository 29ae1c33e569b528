"""The theory panels of Schmidt et al. by closed form (``papers.schmidt.method``) vs the
brute-force simulation a user would otherwise write (sample training sets and test
points, attack every test point with its worst l_inf perturbation, count errors).

    python benchmarks/schmidt_theory.py [--d 1600] [--trials 100] [--tests 200] [--repeats 3]

One robust-error curve over the n <= 16 points of the cpu profile's n grid, for the
Gaussian model (averaging classifier, eps 0.5) and the Bernoulli model (majority vote,
tau = d^-1/4, eps = tau/2): the two are timed interleaved, one thread, and the median
times, their ratio and the largest difference between the curves are printed (the
simulation's own Monte Carlo error is about 0.01-0.02 at these sizes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papers.schmidt import experiment as E  # noqa: E402
from papers.schmidt import method as M  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1600)
    ap.add_argument("--trials", type=int, default=100, help="training sets per n")
    ap.add_argument("--tests", type=int, default=200, help="test points per training set (simulation)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ns = [n for n in E.theory()["ns"] if n <= 16]
    d, tau = args.d, args.d ** -0.25

    def closed_gauss():
        return M.gaussian_errors(d, ns, 0.5, args.trials, torch.Generator().manual_seed(0))["robust"]

    def sim_gauss():
        g = torch.Generator().manual_seed(1)
        return [M.gaussian_simulate(d, n, 0.5, args.trials, args.tests, g)["robust"] for n in ns]

    def closed_bern():
        return M.bernoulli_errors(d, ns, tau, tau / 2)["robust_linear"]

    def sim_bern():
        g = torch.Generator().manual_seed(2)
        return [M.bernoulli_simulate(d, n, tau, tau / 2, args.trials, args.tests, g)["robust_linear"]
                for n in ns]

    for name, closed, sim in (("gaussian", closed_gauss, sim_gauss), ("bernoulli", closed_bern, sim_bern)):
        t_closed, t_sim = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            a = closed()
            t_closed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = sim()
            t_sim.append(time.perf_counter() - t0)
        diff = max(abs(x - y) for x, y in zip(a, b))
        tc, ts = statistics.median(t_closed), statistics.median(t_sim)
        print(f"{name:9s} d={d}, {len(ns)} n values: closed form {tc * 1e3:.1f} ms, simulation "
              f"{ts * 1e3:.1f} ms ({args.trials} training sets x {args.tests} test points): "
              f"{ts / tc:.1f}x faster; max |difference| {diff:.4f}")


if __name__ == "__main__":
    main()
