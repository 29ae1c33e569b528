"""CCA / SVCCA / PWCCA: papers.pwcca.method vs a straightforward NumPy implementation
of the same definitions, on two layers of 512 neurons x 10,000 data points (float64).

    python benchmarks/pwcca.py [--neurons 512] [--points 10000] [--repeats 5] [--clock process]
                               [--svcca /tmp/svcca]    # a google/svcca checkout, if you have one

The NumPy version is what one writes from the definitions: np.cov of the stacked
layers, inverse matrix square roots, an SVD, the canonical variates as data-point
vectors, their projections on the neurons; SVCCA first takes an SVD of each layer.
It computes the "centred" weighting, compared with ours in that mode.  With
``--svcca``, the authors' own ``pwcca.compute_pwcca`` is timed too, against ours in
the default "reference" weighting (the same quantity; values compared).  Ours
reduces everything to one Gram matrix and small eigendecompositions (see the
method's docstring).  The sides are interleaved after a warm-up round, so machine
noise hits all alike; the script checks agreement and prints the median of the
per-repeat ratios.  One thread unless --threads.  Target: >= 5x for the three
measures together.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402
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


def ours_all(x, y, weighting="centred"):
    return M.similarities(M.prepare(x), M.prepare(y), weighting=weighting)


def ours_pwcca(x, y, weighting="centred"):
    return M.cca(x, y, weighting=weighting).pwcca


def layers(n, m, seed=0):
    """Two related layers: a shared 64-dim signal with decaying variance plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((64, m)) * np.linspace(3, 0.3, 64)[:, None]
    x = rng.standard_normal((n, 64)) @ z + 0.5 * rng.standard_normal((n, m))
    y = rng.standard_normal((n, 64)) @ z + 0.5 * rng.standard_normal((n, m))
    return np.maximum(x, 0), np.maximum(y, 0)  # ReLU-like, as real activations


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neurons", type=int, default=512)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--svcca", default=None, help="a google/svcca checkout (cca_core.py, pwcca.py)")
    _bench.add_clock_argument(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = layers(args.neurons, args.points)
    a, b = ours_all(x, y), numpy_all(x, y)
    for k in a:
        assert abs(a[k] - b[k]) < 1e-8, (k, a[k], b[k])
    print(f"{args.neurons} x {args.points} per layer, float64, {args.threads} thread(s), "
          f"{args.clock} clock, median of {args.repeats}; agreement with the NumPy definitions "
          f"(centred weighting): " + ", ".join(f"{k} {a[k]:.6f}" for k in a))
    sides = {
        "ours CCA + PWCCA": lambda: ours_pwcca(x, y),
        "numpy CCA + PWCCA": lambda: numpy_cca(x, y)[1],
        "ours all three": lambda: ours_all(x, y),
        "numpy all three": lambda: numpy_all(x, y),
    }
    if args.svcca:
        sys.path.insert(0, args.svcca)
        import pwcca as reference  # google/svcca

        ref = reference.compute_pwcca(x, y, epsilon=0.0)[0]
        ours_ref = ours_pwcca(x, y, "reference")
        print(f"reference weighting: ours {ours_ref:.12f}, google/svcca compute_pwcca {ref:.12f} "
              f"(difference {abs(ours_ref - ref):.1e})")
        sides["ours PWCCA (reference)"] = lambda: ours_pwcca(x, y, "reference")
        sides["google/svcca compute_pwcca"] = lambda: reference.compute_pwcca(x, y, epsilon=0.0)
    times = _bench.interleaved(sides, args.repeats, args.clock)
    pairs = [("numpy CCA + PWCCA", "ours CCA + PWCCA"), ("numpy all three", "ours all three")]
    if args.svcca:
        pairs.append(("google/svcca compute_pwcca", "ours PWCCA (reference)"))
    for slow, fast in pairs:
        r, rs = _bench.ratios(times, slow, fast)
        print(f"{fast:24s} {statistics.median(times[fast]) * 1e3:8.1f} ms   {slow:27s} "
              f"{statistics.median(times[slow]) * 1e3:8.1f} ms   ratio {r:5.1f}x "
              f"(repeats {_bench.fmt_ratios(rs)})")


if __name__ == "__main__":
    main()
