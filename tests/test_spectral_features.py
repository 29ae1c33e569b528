"""Spectral robust features (papers/spectral_features/method.py): the Rayleigh-quotient
lower bound and the eigengap (Davis-Kahan) inequality on random small graphs, known
spectra (complete graph, path), dense vs sparse eigensolvers, the feature's
normalisation, the exact prefix worst-case solver against brute force over all subsets,
the flippable set against random perturbations, the augmented-graph extension's twin
invariant and Schur identity, and PGD against the closed form on a linear feature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.spectral_features import method as M


pytestmark = pytest.mark.usefixtures("one_thread")


def random_graph(n=40, d=5, q=0.25, seed=0):
    """Points in R^d, a threshold graph at the q-quantile, restricted to its largest
    component (at least 10 nodes)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    D = M.distances(torch.from_numpy(X), torch.from_numpy(X))
    T = M.quantile_threshold(D, q)
    A = M.adjacency(D, T)
    keep = M.largest_component(A)
    assert len(keep) >= 10
    return X[keep], D[np.ix_(keep, keep)], T, A[np.ix_(keep, keep)]


def test_known_spectra():
    n = 9
    K = np.ones((n, n)) - np.eye(n)
    w, _ = M.eigs(M.laplacian(K), 3)
    assert np.allclose(w, [0, n, n], atol=1e-10)  # complete graph: 0, n (n-1 times)
    P = np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    w, _ = M.eigs(M.laplacian(P), 3)
    expect = [2 * (1 - math.cos(math.pi * k / n)) for k in range(3)]
    assert np.allclose(w, expect, atol=1e-10)  # path graph


@pytest.mark.parametrize("seed", range(5))
def test_rayleigh_lower_bound_any_feature(seed):
    _, _, _, A = random_graph(seed=seed)
    n, L, E = len(A), M.laplacian(A), M.edges(A)
    w, V = M.eigs(L, n)
    assert w[1] > 1e-9  # connected
    f = M.spectral_features(V, 1)[:, 0]
    G = M.normalise(np.random.default_rng(seed).standard_normal((n, 500)) ** 3)  # non-Gaussian too
    energy = M.dirichlet_energy(G, E)
    assert np.allclose(energy, np.einsum("ic,ij,jc->c", G, L, G))  # sum over edges = g^T L g
    assert (energy >= n * w[1] * (1 - 1e-12)).all()
    assert M.dirichlet_energy(f, E) == pytest.approx(n * w[1], rel=1e-10)  # equality for f
    bound = M.spectral_lower_bound(w[1], n, len(E))
    rms, mx = M.edge_changes(G, E)
    assert (rms >= bound * (1 - 1e-12)).all() and (mx >= rms).all()
    assert M.edge_changes(f, E)[0] == pytest.approx(bound, rel=1e-10)
    # the bound is tight only for the eigenvector: any other feature is strictly above
    assert rms.min() > bound * (1 + 1e-6)


def test_dense_and_sparse_eigensolvers_agree():
    _, _, _, A = random_graph(n=80, seed=3)
    L = M.laplacian(A)
    wd, Vd = M.eigs(L, 6)
    ws, Vs = M.eigs(L, 6, solver="sparse")
    assert np.abs(wd - ws).max() < 1e-9
    assert np.diff(wd).min() > 1e-6  # distinct eigenvalues: the vectors are determined up to sign
    assert np.allclose(Vd, Vs, atol=1e-7)  # same sign convention
    full_w = np.linalg.eigvalsh(L)[:6]
    assert np.allclose(wd, full_w, atol=1e-10)
    with pytest.raises(ValueError):
        M.eigs(L, 3, solver="nope")


def test_feature_normalisation_and_signs():
    _, _, _, A = random_graph(seed=1)
    n = len(A)
    _, V = M.eigs(M.laplacian(A), 6)
    F = M.spectral_features(V, 5)
    assert np.abs(F.mean(0)).max() < 1e-10
    assert np.abs(F.var(0) - 1).max() < 1e-10  # population variance over the data
    assert np.allclose(M.fix_signs(-V), V)
    assert (F[np.abs(F).argmax(0), range(5)] > 0).all()
    g = M.normalise(np.arange(n, dtype=float) ** 2)
    assert abs(g.mean()) < 1e-12 and abs(g.var() - 1) < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_prefix_extremes_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    rows, n = 40, 11
    f = rng.standard_normal(n)
    state = rng.integers(0, 3, size=(rows, n))  # 0 out, 1 core, 2 flippable
    core, flip = state == 1, state == 2
    flip[:, 9:] = False  # at most 9 flippable: 512 subsets
    core[0] = False  # a row with no core at all
    hi, lo = M.prefix_extremes(f, core, flip)
    for r in range(rows):
        if not (core[r] | flip[r]).any():
            assert np.isnan(hi[r]) and np.isnan(lo[r])
            continue
        bh, bl = M.brute_force_extremes(f, core[r], flip[r])
        assert hi[r] == pytest.approx(bh, abs=1e-12) and lo[r] == pytest.approx(bl, abs=1e-12)
        for sign, val in ((1.0, bh), (-1.0, bl)):
            pat = M.prefix_patterns(f, core[r], flip[r], sign)
            assert (pat >= core[r]).all() and (pat <= core[r] | flip[r]).all()
            assert f[pat].mean() == pytest.approx(val, abs=1e-12)


def test_flippable_contains_every_realised_change():
    rng = np.random.default_rng(0)
    Xtr = rng.standard_normal((200, 6))
    x = rng.standard_normal((1, 6))
    d = M.distances(torch.from_numpy(x), torch.from_numpy(Xtr))[0]
    T, eps = float(np.quantile(d, 0.3)), 0.4
    core, flip = M.flippable(d, T, eps)
    delta = rng.standard_normal((2000, 6))
    delta *= eps * rng.random((2000, 1)) ** 0.2 / np.linalg.norm(delta, axis=1, keepdims=True)
    d2 = M.distances(torch.from_numpy(x + delta), torch.from_numpy(Xtr))
    inside = d2 <= T
    assert inside[:, core].all()  # core points never leave
    assert not inside[:, ~(core | flip)].any()  # the rest never enter
    changed = inside != (d <= T)
    assert changed.any() and flip[changed.any(0)].all()


def test_augmented_extension_twin_and_schur():
    _, D, T, A = random_graph(n=60, seed=2)
    n = len(A)
    _, V = M.eigs(M.laplacian(A), 3)
    v2 = V[:, 1]
    L2 = M.augmented_laplacian(A, D[5] <= T)
    assert np.allclose(L2.sum(1), 0) and L2[n, n] == (D[5] <= T).sum()
    # a duplicate of training point 5: it and node 5 are adjacent twins, so their entries
    # of every eigenvector with eigenvalue != deg + 1 agree exactly
    res = M.augmented_feature(A, v2, D[5] <= T)
    assert abs(res["lam2"] - (L2[n, n] + 1)) > 1e-6
    assert res["v2"][n] == pytest.approx(res["v2"][5], abs=1e-10)
    assert res["value"] == pytest.approx(math.sqrt(n + 1) * res["v2"][5], abs=1e-9)
    assert res["v2"][:n] @ v2 > 0  # aligned with the original
    # the Schur identity at the new node: v_z = sum_{i in N} u_i / (|N| - mu_2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        nbr = rng.random(n) < 0.2
        nbr[rng.integers(n)] = True
        r = M.augmented_feature(A, v2, nbr)
        assert r["v2"][n] == pytest.approx(r["v2"][:n][nbr].sum() / (nbr.sum() - r["lam2"]), abs=1e-10)
        assert np.allclose(M.augmented_laplacian(A, nbr) @ r["v2"], r["lam2"] * r["v2"], atol=1e-9)
    # the neighbour-average extension (b) of a duplicate is the mean of f over N(x_5)
    f = M.spectral_features(V, 1)[:, 0]
    Fb, has = M.harmonic_extension(f, (D[5:6] <= T))
    assert has[0] and Fb[0] == pytest.approx(f[D[5] <= T].mean())


@pytest.mark.parametrize("seed", range(3))
def test_davis_kahan_bound(seed):
    """sin(v2, v2') <= ||(L' - L) v2|| / (lambda_3' - lambda_2) for augmented graphs that
    differ in the new node's edges, and for random edge flips of a graph."""
    *_, A = random_graph(n=50, seed=seed)
    n = len(A)
    rng = np.random.default_rng(seed)
    defined = 0
    w, V = M.eigs(M.laplacian(A), 3)
    for trial in range(30):
        if trial % 2:
            nbr = rng.random(n) < 0.15
            nbr[0] = True
            base = M.augmented_feature(A, V[:, 1], nbr)
            pat = nbr ^ (rng.random(n) < 0.05)
            new = M.augmented_feature(A, V[:, 1], pat)
            La, va, la, Lb, vb, l3b = base["L"], base["v2"], base["lam2"], new["L"], new["v2"], new["lam3"]
        else:
            B = A.copy()
            for i, j in rng.integers(0, n, size=(3, 2)):
                if i != j:
                    B[i, j] = B[j, i] = 1 - B[i, j]
            wb, Vb = M.eigs(M.laplacian(B), 3)
            La, va, la, Lb, vb, l3b = M.laplacian(A), V[:, 1], w[1], M.laplacian(B), Vb[:, 1], wb[2]
        chk = M.davis_kahan(La, va, la, Lb, vb, l3b)
        if chk["bound"] is not None:
            defined += 1
            assert chk["sin"] <= chk["bound"] * (1 + 1e-9) + 1e-12
    assert defined >= 20


def test_pgd_reaches_closed_form_on_linear_feature():
    torch.manual_seed(0)
    w = torch.randn(20, dtype=torch.float64)
    body = torch.nn.Identity()
    g = M.PenultimateFeature(body, w, 0.3, 2.0)
    x = torch.randn(7, 20, dtype=torch.float64)
    exact = M.linear_worst_case(w.numpy(), 2.0, 0.5)
    found = M.pgd_feature_change(g, x, 0.5, steps=10)
    assert torch.allclose(found, torch.full_like(found, float(exact)), rtol=1e-6)
    # Lipschitz upper bound >= PGD lower bound on a small ReLU net
    lin1, lin2 = torch.nn.Linear(20, 16).double(), torch.nn.Linear(16, 8).double()
    net = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2, torch.nn.ReLU())
    u = torch.randn(8, dtype=torch.float64)
    g2 = M.PenultimateFeature(net, u, 0.0, 0.7)
    lip = M.lipschitz_upper([lin1, lin2], u, 0.7)
    assert (M.pgd_feature_change(g2, x, 0.5, steps=20) <= lip * 0.5 + 1e-9).all()
