"""Spectral robust features (Garg, Sharan, Zhang & Valiant, "A Spectral View of
Adversarially Robust Features", NeurIPS 2018, arXiv 1811.06609).

A graph on the training points x_1..x_n: an edge i~j when ||x_i - x_j||_2 <= T; its
Laplacian L = D - A; the spectral feature is f = sqrt(n) v_2 (v_2 the unit eigenvector
of the second-smallest eigenvalue lambda_2), so that f has mean 0 and variance 1 over
the data (v_2 is orthogonal to the constant vector when the graph is connected).  More
features: v_2..v_{k+1}.  The paper's exact theorem statements and constants were not
readable from any source here; the inequalities below are *our derivations* of what
its argument rests on (the Rayleigh quotient and an eigengap bound), each checked
exactly in tests/test_spectral_features.py and on every run:

- Rayleigh quotient: for ANY g with mean 0 and variance 1 over the n points,
  sum_{(i,j) in E} (g_i - g_j)^2 = g^T L g >= lambda_2 g^T g = n lambda_2, so the RMS
  change over edges is >= sqrt(n lambda_2 / |E|) (and so is the max); equality for f.
  (``dirichlet_energy``, ``spectral_lower_bound``.)
- Eigengap (a Davis-Kahan sin-theta bound, our derivation): for two graphs on the same
  nodes with Laplacians L, L' and unit v (L v = lambda_2 v, v orthogonal to 1), let P
  project onto the eigenvectors of L' with eigenvalue >= lambda_3'.  Since v is
  orthogonal to 1, sin angle(v, v_2') = ||P v||, and P (L' - lambda_2) v = P (L' - L) v,
  while ||(L' - lambda_2) P v|| >= (lambda_3' - lambda_2) ||P v||; hence
  sin angle(v_2, v_2') <= ||(L' - L) v_2|| / (lambda_3' - lambda_2) when
  lambda_3' > lambda_2.  (``davis_kahan``.)

Out-of-sample extensions (how a new point x gets a feature value), both labelled:

(a) ``augmented_feature``: add x as node n+1 with edges to its training points within T,
    take v_2 of the (n+1)-node Laplacian, sign-aligned with the original v_2 (the
    training entries' inner product is made >= 0), F(x) = sqrt(n+1) v_2[n+1].  Exact
    definition, one (n+1)-node eigenproblem per evaluation (dense, float64).
(b) ``harmonic_extension``: F(x) = mean of f over the training points within T of x.
    A cheaper approximation (the Schur complement of (a) at the new node gives
    v_z = sum_{i in N(x)} u_i / (|N(x)| - mu_2), u the new eigenvector on the old nodes:
    (a) is (b) up to the change of u and the factor |N| / (|N| - mu_2)).

Worst case under an l2 budget eps: only training points with T - eps < d(x, x_i) <= T +
eps can enter or leave the neighbourhood (``flippable``).  For (b) the maximum (minimum)
of the neighbour mean over ALL membership patterns of those points is exact
(``prefix_extremes``: for a fixed number of added points the best are the largest
(smallest) values, so the optimum is a prefix of the sorted values).  It ignores whether
a pattern is geometrically realisable, so it is an UPPER bound on the true worst case.
The feature is piecewise constant in x: gradient attacks see no gradient, and none are
reported for it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sps
import scipy.sparse.linalg as spla
import torch
from scipy.sparse import csgraph


# ---------------------------------------------------------------- the graph
def distances(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Exact l2 distances (float64, no Gram-matrix shortcut), rows a, columns b."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").numpy()


def quantile_threshold(D: np.ndarray, q: float) -> float:
    """T as the q-quantile of the pairwise distances (i < j)."""
    iu = np.triu_indices(len(D), 1)
    return float(np.quantile(D[iu], q))


def adjacency(D: np.ndarray, T: float) -> np.ndarray:
    A = (D <= T).astype(np.float64)
    np.fill_diagonal(A, 0.0)
    return A


def largest_component(A: np.ndarray) -> np.ndarray:
    """Indices of the largest connected component (sorted)."""
    _, lab = csgraph.connected_components(sps.csr_matrix(A), directed=False)
    return np.flatnonzero(lab == np.bincount(lab).argmax())


def laplacian(A: np.ndarray) -> np.ndarray:
    return np.diag(A.sum(1)) - A


def edges(A: np.ndarray) -> np.ndarray:
    """(|E|, 2) array of the edges i < j."""
    i, j = np.nonzero(np.triu(A, 1))
    return np.stack([i, j], 1)


def fix_signs(V: np.ndarray) -> np.ndarray:
    """Deterministic sign: each column's entry of largest magnitude (first on ties) > 0."""
    idx = np.abs(V).argmax(0)
    s = np.sign(V[idx, np.arange(V.shape[1])])
    s[s == 0] = 1.0
    return V * s


def eigs(L: np.ndarray, k: int, solver: str = "dense") -> tuple[np.ndarray, np.ndarray]:
    """The k smallest eigenpairs of L (ascending), signs fixed by ``fix_signs``.
    dense: LAPACK eigh on the float64 matrix (all pairs when k >= n); sparse: ARPACK
    eigsh in shift-invert mode around a small negative shift (L + sigma I is positive
    definite, so the factorisation is stable)."""
    n = len(L)
    if solver == "dense":
        if k >= n:
            w, V = np.linalg.eigh(L)
        else:
            w, V = sla.eigh(L, subset_by_index=[0, k - 1])
    elif solver == "sparse":
        w, V = spla.eigsh(sps.csc_matrix(L), k=k, sigma=-1e-3 * max(1.0, float(np.diag(L).max())),
                          which="LM", tol=1e-12, v0=np.ones(n) + np.arange(n) / n)
        order = np.argsort(w)
        w, V = w[order], V[:, order]
    else:
        raise ValueError(f"unknown eigensolver {solver!r} (dense or sparse)")
    return w, fix_signs(V)


def spectral_features(V: np.ndarray, k: int) -> np.ndarray:
    """f_1..f_k = sqrt(n) v_2..v_{k+1}: mean 0 and variance 1 over the n points."""
    return math.sqrt(len(V)) * V[:, 1:k + 1]


def normalise(g: np.ndarray) -> np.ndarray:
    """Mean 0, (population) variance 1 over the points, per column."""
    g = g - g.mean(0)
    return g / g.std(0)


# ------------------------------------------------- the spectral lower bound
def dirichlet_energy(G: np.ndarray, E: np.ndarray) -> np.ndarray:
    """sum over edges of (g_i - g_j)^2, per column of G (n,) or (n, c)."""
    d = G[E[:, 0]] - G[E[:, 1]]
    return (d ** 2).sum(0)


def edge_changes(G: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RMS and max |g_i - g_j| over the edges, per column."""
    d = np.abs(G[E[:, 0]] - G[E[:, 1]])
    return np.sqrt((d ** 2).mean(0)), d.max(0)


def spectral_lower_bound(lam2: float, n: int, n_edges: int) -> float:
    """sqrt(n lambda_2 / |E|): no feature with mean 0 and variance 1 over the n points
    has a smaller RMS (hence max) change over the edges (Rayleigh quotient)."""
    return math.sqrt(n * max(lam2, 0.0) / n_edges)


def davis_kahan(L: np.ndarray, v2: np.ndarray, lam2: float, L2: np.ndarray, v2_new: np.ndarray,
                lam3_new: float) -> dict:
    """sin of the angle between v2 (of L, unit, orthogonal to 1) and v2_new (of L2), and
    the bound ||(L2 - L) v2|| / (lambda_3' - lambda_2) (None when lambda_3' <= lambda_2)."""
    c = abs(float(v2_new @ v2)) / (np.linalg.norm(v2) * np.linalg.norm(v2_new))
    sin = math.sqrt(max(0.0, 1.0 - min(1.0, c) ** 2))
    gap = float(lam3_new - lam2)
    num = float(np.linalg.norm((L2 - L) @ v2))
    return {"sin": sin, "bound": num / gap if gap > 0 else None, "gap": gap}


# ----------------------------------------------------- out-of-sample extensions
def augmented_laplacian(A: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """Laplacian of the graph A plus a node n+1 joined to the training nodes in ``nbr`` (bool)."""
    n = len(A)
    A2 = np.zeros((n + 1, n + 1))
    A2[:n, :n] = A
    A2[n, :n] = A2[:n, n] = nbr.astype(np.float64)
    return laplacian(A2)


def augmented_feature(A: np.ndarray, v2: np.ndarray, nbr: np.ndarray) -> dict:
    """Extension (a): the new node's entry of v_2 of the augmented graph, sign-aligned
    with ``v2`` on the training nodes, times sqrt(n+1).  Also returns the augmented
    Laplacian, its v_2, lambda_2 and lambda_3 (for the eigengap checks)."""
    L2 = augmented_laplacian(A, nbr)
    w, V = eigs(L2, 3)
    v = V[:, 1] * (1.0 if V[:-1, 1] @ v2 >= 0 else -1.0)
    return {"value": math.sqrt(len(v)) * float(v[-1]), "L": L2, "v2": v, "lam2": float(w[1]),
            "lam3": float(w[2])}


def harmonic_extension(f: np.ndarray, nbr: np.ndarray, D_near: np.ndarray | None = None) -> tuple:
    """Extension (b): mean of f over each new point's within-T training points.
    nbr: (m, n) bool; f: (n,) or (n, k).  A point with no neighbour gets the value of its
    nearest training point when ``D_near`` (m, n distances) is given (labelled fallback),
    else NaN.  Returns (values, has_neighbour)."""
    W = nbr.astype(np.float64)
    cnt = W.sum(1)
    F = (W @ f) / np.maximum(cnt, 1)[(...,) + (None,) * (f.ndim - 1)]
    has = cnt > 0
    if (~has).any():
        F[~has] = f[D_near[~has].argmin(1)] if D_near is not None else np.nan
    return F, has


# ------------------------------------------------ worst case under a budget eps
def flippable(d: np.ndarray, T: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """For distances d (.., n) from x to the training points and ||x' - x|| <= eps:
    (always in: d + eps <= T, can flip: T - eps < d <= T + eps but not always in)."""
    core = d + eps <= T
    flip = (d - eps <= T) & ~core
    return core, flip


def prefix_extremes(f: np.ndarray, core: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact max and min, over every subset S of the flippable points (with core | S
    non-empty), of mean(f[core | S]), batched over rows (m, n).  For a fixed |S| = j the
    maximum takes the j largest flippable values, so the optimum is the best prefix of
    the sorted values.  Rows without any possible neighbour get NaN."""
    m, n = core.shape
    c_sum = (core * f).sum(1)
    c_cnt = core.sum(1).astype(np.float64)
    out = []
    for sign in (1.0, -1.0):
        vals = np.where(flip, sign * f, -np.inf)
        vals = -np.sort(-vals, axis=1)  # descending, -inf last
        ok = np.isfinite(vals)
        csum = np.concatenate([np.zeros((m, 1)), np.cumsum(np.where(ok, vals, 0.0), 1)], 1)
        j = np.arange(n + 1, dtype=np.float64)
        cnt = c_cnt[:, None] + j
        valid = np.concatenate([np.ones((m, 1), bool), ok], 1) & (cnt > 0)
        means = np.where(valid, (sign * c_sum[:, None] + csum) / np.maximum(cnt, 1), -np.inf)
        best = means.max(1)
        out.append(np.where(np.isfinite(best), sign * best, np.nan))
    return out[0], out[1]


def prefix_patterns(f: np.ndarray, core: np.ndarray, flip: np.ndarray, sign: float) -> np.ndarray:
    """The membership pattern (bool, n) attaining ``prefix_extremes``' max (sign +1) or
    min (sign -1), for one row."""
    idx = np.flatnonzero(flip)
    order = idx[np.argsort(-sign * f[idx], kind="stable")]
    c_sum, c_cnt = float((core * f).sum()), int(core.sum())
    best, best_j = -np.inf, 0
    run = 0.0
    for j in range(len(order) + 1):
        if j:
            run += f[order[j - 1]]
        if c_cnt + j == 0:
            continue
        val = sign * (c_sum + run) / (c_cnt + j)
        if val > best + 1e-15:
            best, best_j = val, j
    pat = core.copy()
    pat[order[:best_j]] = True
    return pat


def brute_force_extremes(f: np.ndarray, core: np.ndarray, flip: np.ndarray) -> tuple[float, float]:
    """Max and min of the neighbour mean over all 2^|flip| subsets (tests only)."""
    idx = np.flatnonzero(flip)
    best_hi, best_lo = -np.inf, np.inf
    for mask in range(1 << len(idx)):
        pat = core.copy()
        pat[idx[[b for b in range(len(idx)) if mask >> b & 1]]] = True
        if pat.any():
            v = f[pat].mean()
            best_hi, best_lo = max(best_hi, v), min(best_lo, v)
    return best_hi, best_lo


# ------------------------------------------------------------ comparison features
def pca(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the top-k principal directions (k, d) of the rows of X (SVD)."""
    mu = X.mean(0)
    _, _, Vt = np.linalg.svd(X - mu, full_matrices=False)
    return mu, Vt[:k]


def linear_worst_case(w: np.ndarray, std: float, eps: np.ndarray) -> np.ndarray:
    """Exact worst-case change of the normalised linear feature (w.x - m) / std over an
    l2 ball of radius eps (no box constraint): eps ||w||_2 / std."""
    return np.asarray(eps) * np.linalg.norm(w) / std


class PenultimateFeature(torch.nn.Module):
    """A network's penultimate layer projected on a direction u and normalised:
    g(x) = (u . h(x) - mean) / std, mean and std over the graph points."""

    def __init__(self, body: torch.nn.Module, u: torch.Tensor, mean: float, std: float):
        super().__init__()
        self.body, self.mean, self.std = body, mean, std
        self.register_buffer("u", u)

    def forward(self, x):
        return (self.body(x) @ self.u - self.mean) / self.std


def pgd_feature_change(g, x: torch.Tensor, eps: float, steps: int = 40) -> torch.Tensor:
    """Largest |g(x') - g(x)| found by l2 PGD (normalised-gradient ascent, projection on
    the ball, no box constraint), pushing up and down, all images in one batch: a LOWER
    bound on the worst-case change of g."""
    with torch.no_grad():
        g0 = g(x)
    best = torch.zeros_like(g0)
    if eps <= 0:
        return best
    step = 2.5 * eps / steps
    for sign in (1.0, -1.0):
        delta = torch.zeros_like(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            obj = sign * g(x + delta).sum()
            (grad,) = torch.autograd.grad(obj, delta)
            with torch.no_grad():
                gn = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                delta = delta + step * grad / gn
                dn = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
                delta = delta * torch.clamp(eps / dn.clamp_min(1e-12), max=1.0)
                best = torch.maximum(best, (g(x + delta) - g0).abs())
    return best


def lipschitz_upper(layers: list[torch.nn.Linear], u: torch.Tensor, std: float) -> float:
    """Global l2 Lipschitz constant of g = (u . h(x) - m)/std for ReLU layers: the
    product of the spectral norms times ||u|| / std (an UPPER bound)."""
    prod = 1.0
    for lin in layers:
        prod *= torch.linalg.matrix_norm(lin.weight.detach().double(), ord=2).item()
    return prod * u.double().norm().item() / std


# ------------------------------------------------------------------ classifier
def logistic_regression(Xtr: torch.Tensor, ytr: torch.Tensor, classes: int, l2: float = 1e-4,
                        iters: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, full-batch L-BFGS (float64), small L2 penalty."""
    W = torch.zeros(Xtr.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xtr @ W + b, ytr) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()
