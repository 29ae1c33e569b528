"""SVCCA / PWCCA core: known answers, an independent CCA (principal angles), the
paper's PWCCA definition computed the slow way (the "centred" weighting), the
reference code's own outputs on fixed inputs (the default "reference" weighting),
layers of different sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from papers.pwcca import method as M

FIXTURE = Path(__file__).parent / "fixtures" / "pwcca_reference.npz"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def naive_pwcca(x, y):
    """The definition written out over data points: canonical variates h_i = a_i^T X_c,
    unit norm; alpha_i = sum_j |<h_i, z_j>| over the centred neurons of the layer
    with fewer neurons; similarity = sum alpha_i rho_i / sum alpha_i."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    n = len(x)
    c = np.cov(np.vstack([x, y]))
    cxx, cxy, cyy = c[:n, :n], c[:n, n:], c[n:, n:]

    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w ** -0.5) @ v.T

    ix, iy = inv_sqrt(cxx), inv_sqrt(cyy)
    u, rho, vt = np.linalg.svd(ix @ cxy @ iy)
    k = min(len(x), len(y))
    h, acts = ((u.T @ ix @ x), x) if len(x) <= len(y) else ((vt @ iy @ y), y)
    h = h[:k] / np.linalg.norm(h[:k], axis=1, keepdims=True)
    alpha = np.abs(h @ acts.T).sum(1)
    return rho[:k], float((alpha / alpha.sum() * rho[:k]).sum())


def test_invertible_linear_map_gives_all_rho_one(rng):
    a = rng.standard_normal((40, 2000))
    b = rng.standard_normal((40, 40)) @ a + 5.0  # invertible map and an offset
    res = M.cca(a, b)
    assert res.rho.numpy() == pytest.approx(np.ones(40), abs=1e-8)
    assert res.mean == pytest.approx(1.0, abs=1e-8)
    assert res.pwcca == pytest.approx(1.0, abs=1e-8)
    sims = M.similarities(M.prepare(a), M.prepare(b))
    assert all(v == pytest.approx(1.0, abs=1e-8) for v in sims.values())


def test_identical_layers_have_zero_pwcca_distance(rng):
    a = rng.standard_normal((30, 1000)) * np.arange(1, 31)[:, None]
    assert M.pwcca_distance(a, a) == pytest.approx(0.0, abs=1e-10)


def test_independent_layers_with_many_points_have_rho_near_zero(rng):
    a, b = rng.standard_normal((20, 50000)), rng.standard_normal((25, 50000))
    res = M.cca(a, b)
    # the largest sample canonical correlation of independent data is about
    # (sqrt(n1) + sqrt(n2)) / sqrt(m) = 0.042 here
    assert res.rho.max().item() < 0.06
    assert res.mean < 0.03 and res.pwcca < 0.03


def test_canonical_correlations_are_cosines_of_principal_angles(rng):
    """Independent known answer: CCA's rho are the cosines of the principal angles
    between the centred data-point subspaces of the two layers (scipy)."""
    x = rng.standard_normal((15, 800))
    y = np.vstack([x[:8] + 0.7 * rng.standard_normal((8, 800)), rng.standard_normal((12, 800))])
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    cosines = np.sort(np.cos(scipy.linalg.subspace_angles(xc.T, yc.T)))[::-1]
    assert M.cca(x, y).rho.numpy() == pytest.approx(cosines, abs=1e-10)


@pytest.mark.parametrize("n1,n2", [(12, 30), (30, 12), (20, 20)])
def test_pwcca_matches_the_definition_for_layers_of_different_sizes(rng, n1, n2):
    """The centred weighting is the definition computed the slow way; the reference
    google/svcca raises IndexError when the second layer is the smaller one (its
    PR #9); here both orders work and match the definition."""
    z = rng.standard_normal((10, 3000))
    x = rng.standard_normal((n1, 10)) @ z + 0.5 * rng.standard_normal((n1, 3000))
    y = rng.standard_normal((n2, 10)) @ z + 0.5 * rng.standard_normal((n2, 3000))
    x *= rng.uniform(0.1, 10, (n1, 1))  # neurons of very different scales
    rho, pw = naive_pwcca(x, y)
    res = M.cca(x, y, weighting="centred")
    assert res.rho.numpy() == pytest.approx(rho, abs=1e-9)
    assert res.pwcca == pytest.approx(pw, abs=1e-9)
    assert res.weights_from == (1 if n1 <= n2 else 2)
    assert res.weights.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("case", ["gaussian", "relu_shared", "relu_dead_neuron"])
def test_reference_weighting_equals_the_reference_code_on_fixed_inputs(case):
    """tests/fixtures/pwcca_reference.npz holds google/svcca compute_pwcca's outputs
    (made by tests/fixtures/make_pwcca_reference.py from its checkout)."""
    f = np.load(FIXTURE)
    a, b = f[f"{case}/acts1"], f[f"{case}/acts2"]
    res = M.cca(a, b)  # "reference" is the default
    assert res.pwcca == pytest.approx(float(f[f"{case}/pwcca"]), abs=1e-12)
    assert res.weights.numpy() == pytest.approx(f[f"{case}/weights"], abs=1e-12)
    assert res.coefs.numpy() == pytest.approx(f[f"{case}/coefs"], abs=1e-12)
    # the reference's other branch crashes; here swapping the layers gives the same value
    assert M.cca(b, a).pwcca == pytest.approx(res.pwcca, abs=1e-12)
    assert M.cca(b, a).weights_from == 2
    if case != "gaussian":  # nonnegative layers: the added-back means change the answer
        assert abs(M.cca(a, b, weighting="centred").pwcca - res.pwcca) > 1e-3


def test_reference_weighting_gram_shortcut_equals_the_explicit_qr(rng, monkeypatch):
    """The projections come from a Cholesky factor of D D^T instead of a QR of the
    data-point-sized D^T; forcing the QR fallback must give the same weights."""
    z = rng.standard_normal((5, 600))
    a = np.maximum(rng.standard_normal((7, 5)) @ z + 0.4, 0)
    b = np.maximum(rng.standard_normal((9, 5)) @ z + 0.2 * rng.standard_normal((9, 600)), 0)
    fast = M.cca(a, b)
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda m: (real(m)[0], torch.tensor(1)))  # "not positive definite"
    slow = M.cca(a, b)
    assert slow.weights.numpy() == pytest.approx(fast.weights.numpy(), abs=1e-12)
    with pytest.raises(ValueError, match="weighting"):
        M.cca(a, b, weighting="uncentred")


def test_pwcca_weights_favour_high_variance_shared_directions(rng):
    """A shared high-variance signal plus an unshared low-variance tail: PWCCA
    reports far more similarity than the unweighted mean (the paper's point)."""
    a, b = M.synthetic_pair(60, 4000, 0.5, 0.2, torch.Generator().manual_seed(0))
    res = M.cca(a, b)
    assert res.pwcca > 0.75 > 0.6 > res.mean  # about 1 / (1 + 0.2) vs 0.5


def test_dead_and_duplicate_neurons_are_dropped_not_nan(rng):
    a = rng.standard_normal((10, 500))
    a = np.vstack([a, np.zeros((3, 500)), a[:2]])  # 3 dead, 2 duplicated neurons
    layer = M.prepare(a)
    assert layer.rank == 10 and layer.n_neurons == 15
    res = M.cca(a, rng.standard_normal((8, 500)))
    assert torch.isfinite(res.rho).all() and np.isfinite(res.pwcca)
    empty = M.cca(np.zeros((4, 100)), rng.standard_normal((4, 100)))
    assert len(empty.rho) == 0 and empty.pwcca == 0.0


def test_svcca_keeps_the_directions_explaining_99_percent_of_variance(rng):
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    scales = np.r_[np.full(5, 10.0), np.full(15, 0.1)]  # 5 directions hold 99.94% of variance
    layer = M.prepare(q @ (scales[:, None] * rng.standard_normal((20, 20000))))
    assert layer.top(0.99).rank == 5
    assert layer.top(1.0).rank == 20


def test_distance_matrix_is_symmetric_with_zero_diagonal(rng):
    layers = [M.prepare(rng.standard_normal((6, 300))) for _ in range(4)]
    d = M.distance_matrix(layers)
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert (d[~np.eye(4, dtype=bool)] > 0.5).all()


def test_conv_acts_positions_and_pool():
    fmap = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    pos = M.conv_acts(fmap, "positions")
    assert pos.shape == (3, 2 * 16)
    assert torch.equal(pos[1, :16], fmap[0, 1].flatten())
    assert torch.equal(M.conv_acts(fmap, "pool"), fmap.mean((2, 3)).T)
    sub = M.conv_acts(fmap, "positions", max_points=10, generator=torch.Generator().manual_seed(0))
    assert sub.shape == (3, 10)
    assert M.conv_acts(torch.ones(5, 7)).shape == (7, 5)  # dense layers: transpose


def test_models_expose_layer_activations():
    logits, acts = M.ConvNet(4)(torch.zeros(3, 1, 28, 28), return_acts=True)
    assert logits.shape == (3, 10) and list(acts) == list(M.ConvNet.LAYERS)
    assert acts["conv4"].shape == (3, 8, 7, 7) and acts["fc"].shape == (3, 64)
    logits, acts = M.RowLSTM(8, 2)(torch.zeros(3, 1, 28, 28), return_acts=True)
    assert logits.shape == (3, 10) and acts["lstm2"].shape == (3, 28, 8)
