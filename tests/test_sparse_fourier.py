"""Sparse Fourier (Bafna et al.): the orthonormal DCT against scipy, IHT's exact
recovery of k-sparse DCT signals under t arbitrary spikes, the patch-wise variant,
batching, BPDA's backward passes; the L0 attacks: JSMA against torchattacks and a hand
computation, its pixel budget, C&W-L0's support."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from common import l0_attacks as L0
from papers.sparse_fourier import method as M


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ DCT


@pytest.mark.parametrize("n", [8, 28])
def test_dct_matrix_is_orthonormal(n):
    c = M.dct_matrix(n)
    eye = torch.eye(n, dtype=torch.float64)
    assert torch.allclose(c.T @ c, eye, atol=1e-13)
    assert torch.allclose(c @ c.T, eye, atol=1e-13)


def test_dct2_matches_scipy_and_inverts():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = scipy.fft.dctn(x.numpy(), type=2, axes=(-2, -1), norm="ortho")
    assert np.abs(M.dct2(x).numpy() - ref).max() < 1e-12
    assert torch.allclose(M.idct2(M.dct2(x)), x, atol=1e-13)
    # non-square images use one matrix per axis
    z = torch.rand(2, 1, 6, 10, dtype=torch.float64)
    assert np.abs(M.dct2(z).numpy() - scipy.fft.dctn(z.numpy(), axes=(-2, -1), norm="ortho")).max() < 1e-12


def test_hard_threshold_keeps_the_k_largest():
    v = torch.tensor([[[[3.0, -5.0], [1.0, 0.5]]]])
    assert M.hard_threshold(v, 2).tolist() == [[[[3.0, -5.0], [0.0, 0.0]]]]
    assert M.hard_threshold(v, 0).abs().sum() == 0
    assert torch.equal(M.hard_threshold(v, 9), v)


# ------------------------------------------------------------------ IHT


@pytest.mark.parametrize("k,t", [(5, 5), (10, 10), (5, 10)])
def test_iht_recovers_sparse_signals_exactly(k, t):
    """k-sparse in the DCT + t spikes 10-20x the signal's largest pixel: relative
    error < 1e-6 on every one of 30 signals (float64)."""
    x, e = M.sparse_signals(30, 28, k, t, torch.Generator().manual_seed(k * 100 + t))
    assert (e != 0).flatten(1).sum(1).eq(t).all()
    assert e.abs().amax() > 9 * x.abs().amax()
    err = M.recovery_error(x, e, k, t, iters=30)
    assert err.max() < 1e-6, err.max()
    # and the noise estimate is the noise
    _, e_hat = M.iht(x + e, k, t, 30)
    assert torch.allclose(e_hat, e, atol=1e-9 * e.abs().max())


def test_plain_projection_does_not_recover():
    """Without the noise step the top-k projection of x + e is far from x's coefficients
    (the spikes spread over every DCT coefficient): what makes IHT necessary."""
    x, e = M.sparse_signals(10, 28, 10, 10, torch.Generator().manual_seed(1))
    X = M.hard_threshold(M.dct2(x + e), 10)
    rel = (X - M.dct2(x)).flatten(1).norm(dim=1) / M.dct2(x).flatten(1).norm(dim=1)
    assert rel.min() > 0.5


def test_iht_residual_never_increases():
    """Each half step minimises ||y - x - e|| over one sparse block given the other."""
    torch.manual_seed(0)
    y = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    k, t = 60, 30
    e_hat = torch.zeros_like(y)
    prev = torch.full((5,), float("inf"), dtype=torch.float64)
    for _ in range(15):
        x_hat = M.idct2(M.hard_threshold(M.dct2(y - e_hat), k))
        r1 = (y - x_hat - e_hat).flatten(1).norm(dim=1)
        e_hat = M.hard_threshold(y - x_hat, t)
        r2 = (y - x_hat - e_hat).flatten(1).norm(dim=1)
        assert (r1 <= prev + 1e-12).all() and (r2 <= r1 + 1e-12).all()
        prev = r2


def test_iht_batch_equals_per_image():
    torch.manual_seed(1)
    y = torch.rand(6, 1, 28, 28)
    X, e = M.iht(y, 40, 20, 10)
    for i in range(6):
        Xi, ei = M.iht(y[i:i + 1], 40, 20, 10)
        assert torch.equal(Xi, X[i:i + 1]) and torch.equal(ei, e[i:i + 1])


def test_patch_iht_recovers_a_contiguous_corruption():
    """Algorithm 2 (our patch variant): a 5x5 patch of arbitrary values at a random place
    (25 corrupted pixels), located and removed exactly."""
    g = torch.Generator().manual_seed(3)
    x, _ = M.sparse_signals(20, 28, 10, 0, g)
    e = torch.zeros_like(x)
    for i in range(20):
        r, c = torch.randint(0, 24, (2,), generator=g).tolist()
        e[i, 0, r:r + 5, c:c + 5] = 10 * torch.randn(5, 5, generator=g, dtype=torch.float64)
    X, e_hat = M.patch_iht(x + e, 10, 5, 30)
    assert torch.allclose(X, M.dct2(x), atol=1e-9)
    assert torch.allclose(e_hat, e, atol=1e-9)


def test_patch_threshold_keeps_the_best_window():
    r = torch.zeros(1, 1, 6, 6)
    r[0, 0, 1, 1] = 1.0
    r[0, 0, 3:5, 3:5] = 0.9  # energy 3.24 beats 1
    out = M.patch_threshold(r, 2)
    assert torch.equal(out[0, 0, 3:5, 3:5], r[0, 0, 3:5, 3:5]) and out.sum() == pytest.approx(3.6)


def test_bpda_backward_passes():
    torch.manual_seed(0)
    y = torch.rand(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    out = M.iht_bpda(y, 50, 10, 10, "identity")
    assert torch.allclose(out, M.iht_image(y.detach(), 50, 10, 10))
    (g,) = torch.autograd.grad((out * w).sum(), y)
    assert torch.equal(g, w)
    out = M.iht_bpda(y, 50, 10, 10, "projection")
    (g,) = torch.autograd.grad((out * w).sum(), y)
    mask = M.iht(y.detach(), 50, 10, 10)[0] != 0
    assert torch.allclose(g, M.idct2(M.dct2(w) * mask), atol=1e-12)
    assert ((M.dct2(g).abs() > 1e-12) <= mask).all()  # the gradient lives on the kept support


# ------------------------------------------------------------------ JSMA


class _Linear(torch.nn.Module):
    def __init__(self, d=16, classes=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = torch.nn.Linear(d, classes)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(classes, d, generator=g))
            self.lin.bias.copy_(torch.randn(classes, generator=g))

    def forward(self, x):
        return self.lin(x.flatten(1))


def _hand_jsma_linear(W, b, x, target, gamma):
    """JSMA by hand for logits W x + b (the Jacobian is W), numpy loops over pairs."""
    W, b, x = W.double().numpy(), b.double().numpy(), x.double().numpy().copy()
    n = x.size
    gt = W[target]
    go = W.sum(0) - gt
    domain = x < 0.99
    for _ in range(int(np.ceil(n * gamma / 2))):
        if np.argmax(W @ x + b) == target or not domain.any():
            break
        best, pair = 0.0, None
        for p in range(n):
            for q in range(n):
                if p == q or not (domain[p] and domain[q]):
                    continue
                a, bb = gt[p] + gt[q], go[p] + go[q]
                if a > 0 and bb < 0 and a * abs(bb) > best:
                    best, pair = a * abs(bb), (p, q)
        if pair is None:
            break
        for i in pair:
            x[i] = min(1.0, x[i] + 1.0)
            domain[i] = False
    return x


def test_jsma_matches_a_hand_computation_on_a_linear_model():
    model = _Linear().double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=g, dtype=torch.float64) * 0.5
    target = torch.randint(0, 4, (8,), generator=g)
    adv = L0.jsma(model, x, target, gamma=0.5)
    for i in range(8):
        ref = _hand_jsma_linear(model.lin.weight.detach(), model.lin.bias.detach(), x[i].flatten(), int(target[i]), 0.5)
        assert np.allclose(adv[i].flatten().numpy(), ref, atol=1e-12), i


def _small_cnn(seed=0):
    torch.manual_seed(seed)
    return M.SmallCNN(4, 8, 16).eval()


def test_jsma_budget_box_and_batching():
    model = _small_cnn()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 28, 28, generator=g) * 0.8
    target = torch.randint(0, 10, (6,), generator=g)
    gamma = 12 / 784
    adv = L0.jsma(model, x, target, gamma=gamma, batch_size=4)
    assert (L0.l0_norm(adv, x) <= 12).all()
    assert adv.min() >= 0 and adv.max() <= 1
    changed = (adv - x).abs() > 0
    assert ((adv[changed] - x[changed]) > 0).all()  # increasing attack
    for i in range(6):
        assert torch.equal(L0.jsma(model, x[i:i + 1], target[i:i + 1], gamma=gamma), adv[i:i + 1])


def test_jsma_matches_torchattacks():
    torchattacks = pytest.importorskip("torchattacks")
    model = _small_cnn(1)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 28, 28, generator=g) * 0.9
    y = torch.randint(0, 10, (4,), generator=g)
    target = (y + 1) % 10  # torchattacks' default target
    ours = L0.jsma(model, x, target, theta=1.0, gamma=0.03)
    theirs = torchattacks.JSMA(model, theta=1.0, gamma=0.03)(x, y)
    assert torch.equal(ours, theirs)


# ------------------------------------------------------------------ C&W-L0


def test_cw_l0_respects_its_support_and_budget():
    model = _Linear(64, 4, seed=2).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 1, 8, 8, generator=g) * 0.6 + 0.2
    y = model(x).argmax(1)
    allowed = torch.zeros_like(x, dtype=torch.bool)
    allowed[:, :, 2:7, 2:7] = True
    adv = L0.carlini_wagner_l0(model, x, y, allowed=allowed, steps=30, rounds=4, const_tries=2)
    assert torch.equal(adv[~allowed], x[~allowed])
    assert adv.min() >= 0 and adv.max() <= 1
    fooled = model(adv).argmax(1) != y
    assert fooled.all()
    assert (L0.l0_norm(adv, x) < 25).all()  # the shrinking removed pixels
    # budget: an adversarial changing more than max_pixels pixels is returned as x
    kw = dict(allowed=allowed, steps=30, rounds=1, const_tries=2)
    one_round = L0.carlini_wagner_l0(model, x, y, **kw)
    assert (L0.l0_norm(one_round, x) > 3).all() and (model(one_round).argmax(1) != y).all()
    capped = L0.carlini_wagner_l0(model, x, y, max_pixels=3, **kw)
    assert torch.equal(capped, x)


def test_cw_l0_batch_equals_per_image():
    model = _Linear(64, 4, seed=3).double().eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = model(x).argmax(1)
    kw = dict(steps=15, rounds=3, const_tries=2)
    adv = L0.carlini_wagner_l0(model, x, y, **kw)
    assert (model(adv).argmax(1) != y).all()
    for i in range(3):
        one = L0.carlini_wagner_l0(model, x[i:i + 1], y[i:i + 1], **kw)
        assert torch.allclose(one, adv[i:i + 1], atol=1e-10)
