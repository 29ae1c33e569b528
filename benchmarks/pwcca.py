"""CCA / SVCCA / PWCCA: papers.pwcca.method vs a straightforward NumPy implementation
of the same definitions, on two layers of 512 neurons x 10,000 data points (float64).

    python benchmarks/pwcca.py [--neurons 512] [--points 10000] [--repeats 5]

The NumPy version is what one writes from the definitions (and close to the
reference google/svcca code path): np.cov of the stacked layers, inverse
matrix square roots, an SVD, the canonical variates as data-point vectors,
their projections on the neurons; SVCCA first takes an SVD of each layer.
Ours reduces everything to one Gram matrix and small eigendecompositions
(see the method's docstring).  The two are interleaved, so machine noise hits
both alike; the script checks that they agree and prints the median ratio.
Target: >= 5x for the three measures together.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papers.pwcca import method as M  # noqa: E402


def numpy_cca(x, y):
    """rho, and the PWCCA similarity with weights from the smaller layer."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    n = len(x)
    c = np.cov(np.vstack([x, y]))
    cxx, cxy, cyy = c[:n, :n], c[:n, n:], c[n:, n:]

    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.T

    ix, iy = inv_sqrt(cxx), inv_sqrt(cyy)
    u, rho, vt = np.linalg.svd(ix @ cxy @ iy)
    k = min(len(x), len(y))
    rho = rho[:k]
    if len(x) <= len(y):
        h, acts = u[:, :k].T @ ix @ x, x  # canonical variates over the data points
    else:
        h, acts = vt[:k] @ iy @ y, y
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    alpha = np.abs(h @ acts.T).sum(1)
    return rho, float((alpha / alpha.sum() * rho).sum())


def numpy_svcca(x, y, keep=0.99):
    def reduce(a):
        a = a - a.mean(1, keepdims=True)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        d = int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), keep)) + 1
        return s[:d, None] * vt[:d]

    rho, _ = numpy_cca(reduce(x), reduce(y))
    return float(rho.mean())


def numpy_all(x, y):
    rho, pw = numpy_cca(x, y)
    return {"mean_cca": float(rho.mean()), "svcca": numpy_svcca(x, y), "pwcca": pw}


def ours_all(x, y):
    return M.similarities(M.prepare(x), M.prepare(y))


def ours_pwcca(x, y):
    return M.cca(x, y).pwcca


def layers(n, m, seed=0):
    """Two related layers: a shared 64-dim signal with decaying variance plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((64, m)) * np.linspace(3, 0.3, 64)[:, None]
    x = rng.standard_normal((n, 64)) @ z + 0.5 * rng.standard_normal((n, m))
    y = rng.standard_normal((n, 64)) @ z + 0.5 * rng.standard_normal((n, m))
    return np.maximum(x, 0), np.maximum(y, 0)  # ReLU-like, as real activations


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neurons", type=int, default=512)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = layers(args.neurons, args.points)
    a, b = ours_all(x, y), numpy_all(x, y)
    for k in a:
        assert abs(a[k] - b[k]) < 1e-8, (k, a[k], b[k])
    assert abs(ours_pwcca(x, y) - numpy_cca(x, y)[1]) < 1e-8
    print(f"{args.neurons} x {args.points} per layer, float64, {args.threads} threads; "
          f"agreement: " + ", ".join(f"{k} {a[k]:.6f}" for k in a))
    times = {"pwcca": ([], []), "all": ([], [])}
    for _ in range(args.repeats):
        times["pwcca"][0].append(timed(ours_pwcca, x, y)[0])
        times["pwcca"][1].append(timed(lambda p, q: numpy_cca(p, q)[1], x, y)[0])
        times["all"][0].append(timed(ours_all, x, y)[0])
        times["all"][1].append(timed(numpy_all, x, y)[0])
    for name, label in (("pwcca", "CCA + PWCCA"), ("all", "mean CCA + SVCCA + PWCCA")):
        o, n = (statistics.median(t) for t in times[name])
        print(f"{label:26s} ours {o * 1e3:8.1f} ms   numpy {n * 1e3:8.1f} ms   ratio {n / o:5.1f}x")


if __name__ == "__main__":
    main()
