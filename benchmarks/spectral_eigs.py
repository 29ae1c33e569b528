"""Laplacian eigenpairs of the MNIST threshold graph at the cpu profile's size: dense
LAPACK eigh (the k smallest, float64) vs sparse ARPACK eigsh in shift-invert mode
(``papers.spectral_features.method.eigs``), single-threaded.

    python benchmarks/spectral_eigs.py [--n 2500] [--quantile 0.01] [--k 6] [--repeats 3]

The same graph as the experiment (a fixed random subset of MNIST training images, T =
the quantile of the pairwise l2 distances, the largest connected component); the two
solvers' eigenvalues and |cos| of their vectors are checked first, then both are timed,
interleaved, and the median times and their ratio printed.  Needs MNIST under
$REPRO_DATA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread, set
    os.environ[_var] = "1"  # before numpy loads its BLAS (torch.set_num_threads does not reach it)

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import data
from papers.spectral_features import method as M


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2500)
    p.add_argument("--quantile", type=float, default=0.01)
    p.add_argument("--k", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    train = data.load("mnist", train=True)
    pick = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:a.n]
    X = train.images[pick]
    D = M.distances(X, X)
    T = M.quantile_threshold(D, a.quantile)
    A = M.adjacency(D, T)
    keep = M.largest_component(A)
    L = M.laplacian(A[np.ix_(keep, keep)])
    wd, Vd = M.eigs(L, a.k)
    ws, Vs = M.eigs(L, a.k, solver="sparse")
    cos = np.abs((Vd[:, 1:] * Vs[:, 1:]).sum(0)).min()
    print(f"graph: {len(keep)}/{a.n} points, T = {T:.3f}, {int(A[np.ix_(keep, keep)].sum()) // 2} edges")
    print(f"agreement: max |dlambda| = {np.abs(wd - ws).max():.2e}, min |cos| = {cos:.12f}")
    times = {"dense": [], "sparse": []}
    for _ in range(a.repeats):
        for solver, spent in times.items():
            t0 = time.perf_counter()
            M.eigs(L, a.k, solver=solver)
            spent.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"dense eigh {med['dense']:.3f} s, sparse eigsh {med['sparse']:.3f} s "
          f"(median of {a.repeats}, one thread): dense / sparse = {med['dense'] / med['sparse']:.1f}x")


if __name__ == "__main__":
    main()
