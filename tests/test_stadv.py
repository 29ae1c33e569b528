"""stAdv (common.attacks.stadv and papers/stadv/method.py): the warp's known answers
(zero flow, integer shifts vs torch.roll), the flow loss against a hand computation,
gradients against finite differences, the per-sample L-BFGS (known minima, batch
independence) and a cross-check of the optimum against SciPy's L-BFGS-B run on one
image at a time with the same objective.  Float64 where exactness is checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from common import attacks as A
from papers.stadv import method as M

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10 * 10, 5)).double().eval()


def images(n, seed=1, side=12):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, side, side, dtype=D64)
    x[:, :, 3:9, 4:8] = torch.rand(n, 1, 6, 4, generator=g, dtype=D64)  # a blob, like a digit
    return x


def test_zero_flow_is_identity():
    x = torch.rand(3, 2, 7, 9, dtype=D64)
    out = A.flow_warp(x, torch.zeros(3, 2, 7, 9, dtype=D64))
    assert torch.allclose(out, x, atol=1e-12)


@pytest.mark.parametrize("du,dv", [(1, 0), (0, 1), (-2, 1), (3, -2)])
def test_integer_shift_is_roll_in_the_interior(du, dv):
    x = torch.rand(2, 1, 10, 11, dtype=D64)
    flow = torch.zeros(2, 2, 10, 11, dtype=D64)
    flow[:, 0], flow[:, 1] = du, dv
    out = A.flow_warp(x, flow)
    # output (i, j) = x(i + dv, j + du) = roll by (-dv, -du); valid where i + dv, j + du are inside
    rolled = torch.roll(x, shifts=(-dv, -du), dims=(-2, -1))
    rows = slice(max(0, -dv), 10 - max(0, dv))
    cols = slice(max(0, -du), 11 - max(0, du))
    assert torch.allclose(out[..., rows, cols], rolled[..., rows, cols], atol=1e-12)
    # outside the image the border is repeated (clamped coordinates)
    if du > 0:
        assert torch.allclose(out[..., rows, -1], x[..., rows.start + dv:rows.stop + dv, -1], atol=1e-12)


def test_half_pixel_shift_averages_neighbours():
    x = torch.rand(1, 1, 5, 6, dtype=D64)
    flow = torch.zeros(1, 2, 5, 6, dtype=D64)
    flow[:, 0] = 0.5
    out = A.flow_warp(x, flow)
    assert torch.allclose(out[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-12)


def hand_flow_loss(f, offsets, eps):
    """sum over p, over q in N(p) inside the image, sqrt(||f_p - f_q||^2 + eps), by loops."""
    _, h, w = f.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            for di, dj in offsets:
                a, b = i + di, j + dj
                if 0 <= a < h and 0 <= b < w:
                    d2 = (f[0, i, j] - f[0, a, b]) ** 2 + (f[1, i, j] - f[1, a, b]) ** 2
                    total += math.sqrt(d2 + eps)
    return total


@pytest.mark.parametrize("neighbourhood,offsets", [
    ("4", [(0, 1), (0, -1), (1, 0), (-1, 0)]),
    ("diagonal", [(1, 1), (1, -1), (-1, 1), (-1, -1)])])
@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.3])
def test_flow_loss_hand_computation_3x3(neighbourhood, offsets, eps):
    f = torch.tensor([[[0.0, 1.0, -0.5], [2.0, 0.0, 0.25], [1.0, 1.0, -1.0]],
                      [[0.5, 0.0, 0.0], [-1.0, 3.0, 0.0], [0.0, 0.5, 2.0]]], dtype=D64)
    ours = A.flow_loss(f[None], neighbourhood, eps).item()
    assert ours == pytest.approx(hand_flow_loss(f, offsets, eps), rel=1e-12)
    # a few values by hand for the 4-neighbourhood without eps: a constant field costs 0,
    # a unit step between two columns of a 1x2 field costs 2 (the pair in both orders)
    if neighbourhood == "4" and eps == 0.0:
        assert A.flow_loss(torch.full((1, 2, 3, 3), 0.7, dtype=D64), "4", 0.0).item() == 0.0
        step = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]]], dtype=D64)
        assert A.flow_loss(step, "4", 0.0).item() == pytest.approx(2.0)


def test_diagonal_loss_ignores_a_checkerboard():
    """The diagonal neighbourhood does not see a checkerboard flow (the 4-connected does):
    why the choice matters for how free the attack is."""
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    board = ((i + j) % 2).to(D64)
    f = torch.stack([board, torch.zeros_like(board)])[None]
    assert A.flow_loss(f, "diagonal", 0.0).item() == 0.0
    assert A.flow_loss(f, "4", 0.0).item() == pytest.approx(2 * 2 * 6 * 5)


def test_warp_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 5, 5, generator=g, dtype=D64, requires_grad=True)
    # fractional flows away from integer positions (bilinear is not differentiable there)
    flow = (torch.rand(2, 2, 5, 5, generator=g, dtype=D64) * 0.8 + 0.1) * torch.tensor([1, -1], dtype=D64).view(1, 2, 1, 1)
    flow.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: A.flow_warp(a, b), (x, flow), eps=1e-6, atol=1e-6)
    f2 = torch.rand(1, 2, 4, 4, generator=g, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: A.flow_loss(f, "4", 1e-8), (f2,), eps=1e-6, atol=1e-6)


def test_cw_margin_loss_values():
    z = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]], dtype=D64)
    t = torch.tensor([1, 0])
    # targeted: max_{i != t} Z_i - Z_t clamped at -kappa
    assert A.cw_margin_loss(z, t, True, 0.0).tolist() == [0.0, 5.0]
    assert A.cw_margin_loss(z, t, True, 0.5).tolist() == [-0.5, 5.0]
    # untargeted: Z_y - max_{i != y} Z_i
    assert A.cw_margin_loss(z, t, False, 0.0).tolist() == [1.0, 0.0]


def test_lbfgs_batched_finds_each_rows_minimum():
    """Quadratics of very different conditioning, one per row: each row converges to its
    own minimum, and a row's trajectory does not depend on its neighbours."""
    g = torch.Generator().manual_seed(0)
    n, d = 4, 12
    scales = torch.tensor([1.0, 10.0, 100.0, 1e3], dtype=D64)
    diag = torch.rand(n, d, generator=g, dtype=D64) * scales[:, None] + 0.1
    centre = torch.randn(n, d, generator=g, dtype=D64)

    def fun(z, idx):
        r = z - centre[idx]
        return (0.5 * diag[idx] * r * r).sum(1), diag[idx] * r, {}

    z, info = A.lbfgs_batched(fun, torch.zeros(n, d, dtype=D64), max_iter=200, gtol=1e-9, ftol=0.0)
    assert torch.allclose(z, centre, atol=1e-7)
    assert (info["status"] == 1).all()
    z3, info3 = A.lbfgs_batched(lambda zz, idx: fun(zz, idx[:] + 3), torch.zeros(1, d, dtype=D64),
                                max_iter=200, gtol=1e-9, ftol=0.0)
    assert torch.equal(z3[0], z[3]) and info3["iterations"][0] == info["iterations"][3]
    assert len(set(info["iterations"].tolist())) > 1  # the rows stopped at different times


def test_stadv_result_does_not_depend_on_the_batch():
    model = tiny_cnn()
    x = images(5)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = (y + 1) % 5
    kw = dict(tau=0.01, max_iter=80, ftol=1e-6)
    adv, info = A.stadv(model, x, y, target=t, return_info=True, **kw)
    for i in (0, 3):
        adv_i, info_i = A.stadv(model, x[i:i + 1], y[i:i + 1], target=t[i:i + 1], return_info=True, **kw)
        assert torch.allclose(info_i["flow"][0], info["flow"][i], atol=1e-10)
        assert info_i["iterations"][0] == info["iterations"][i]
        assert torch.allclose(adv_i[0], adv[i], atol=1e-10)
    # two chunks of the same batch give the same answer too
    adv_c = A.stadv(model, x, y, target=t, batch_size=2, **kw)
    assert torch.allclose(adv_c, adv, atol=1e-10)
    assert len(set(info["iterations"].tolist())) > 1  # the images stopped at different iterations


def test_second_start_returns_the_lower_paper_objective():
    """warm_start: per sample, the result of lower L_adv + tau * L_flow among the zero
    start and the (tau / 10 -> tau) start, each run on its own here."""
    model = tiny_cnn(2)
    x = images(6, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = (y + 2) % 5
    tau, kw = 0.05, dict(max_iter=30, ftol=1e-9)
    _, one = A.stadv(model, x, y, target=t, tau=tau, return_info=True, **kw)
    adv, two = A.stadv(model, x, y, target=t, tau=tau, warm_start=0.1, warm_iter=15, return_info=True, **kw)
    opt = dict(max_iter=30, history=10, gtol=1e-5, ftol=1e-9, max_ls=20)
    warm = A._stadv_chunk(model, x, t, torch.zeros_like(one["flow"]), True, 0.1 * tau, 0.0, "4", 1e-8,
                          "border", {**opt, "max_iter": 15})
    second = A._stadv_chunk(model, x, t, warm["flow"], True, tau, 0.0, "4", 1e-8, "border", opt)

    def objective(flow):  # by hand: C&W margin of the warped image + tau * flow loss
        with torch.no_grad():
            z = model(A.flow_warp(x, flow))
        other = z.masked_fill(nn.functional.one_hot(t, 5).bool(), -math.inf).amax(1)
        return (other - z.gather(1, t[:, None])[:, 0]).clamp_min(0) + tau * A.flow_loss(flow)

    o1, o2 = objective(one["flow"]), objective(second["flow"])
    assert torch.allclose(two["objective"], torch.minimum(o1, o2), atol=1e-10)
    assert torch.equal(two["second"], o2 < o1)
    for i in range(len(x)):
        src = second if o2[i] < o1[i] else one
        assert torch.allclose(two["flow"][i], src["flow"][i], atol=1e-12)
        assert two["success"][i] == src["success"][i]
    assert torch.equal(two["iterations"], one["iterations"] + warm["iterations"] + second["iterations"])
    assert torch.allclose(adv, A.flow_warp(x, two["flow"]), atol=1e-12)
    with pytest.raises(A.AttackInputError, match="warm_start"):
        A.stadv(model, x, y, target=t, warm_start=0.1, warm_iter=0)


def scipy_reference(model, x, t, tau, maxiter):
    """One image at a time: SciPy's L-BFGS-B (no bounds) on the same objective."""
    from scipy.optimize import fmin_l_bfgs_b

    h, w = x.shape[-2:]

    def fg(v):
        f = torch.tensor(v, dtype=D64).view(1, 2, h, w).requires_grad_(True)
        logits = model(A.flow_warp(x[None], f))
        obj = A.cw_margin_loss(logits, t.view(1), True) + tau * A.flow_loss(f)
        (g,) = torch.autograd.grad(obj.sum(), f)
        return obj.item(), g.flatten().numpy().astype(np.float64)

    v, fval, _ = fmin_l_bfgs_b(fg, np.zeros(2 * h * w), m=10, maxiter=maxiter, factr=10, pgtol=1e-5)
    return fval, v


def test_stadv_optimum_matches_scipy_lbfgs():
    model = tiny_cnn(seed=2)
    x = images(2, seed=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = (y + 2) % 5
    tau = 0.01
    _, info = A.stadv(model, x, y, target=t, tau=tau, max_iter=150, return_info=True)
    for i in range(2):
        ref, v = scipy_reference(model, x[i], t[i], tau, 150)
        flow = info["flow"][i:i + 1]
        with torch.no_grad():
            ours = (A.cw_margin_loss(model(A.flow_warp(x[i:i + 1], flow)), t[i:i + 1], True)
                    + tau * A.flow_loss(flow)).item()
        # the same local problem from the same start: objective values agree closely
        assert ours == pytest.approx(ref, rel=0.05, abs=1e-3)


def test_stadv_reaches_targets_on_a_separable_toy():
    """A model that reads the blob's horizontal position: moving it is the attack."""
    side = 12
    w = torch.zeros(2, 1, side, side, dtype=D64)
    w[0, 0, :, :side // 2] = 1.0
    w[1, 0, :, side // 2:] = 1.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 2, bias=False)).double().eval()
    model[1].weight.data = w.flatten(1)
    x = torch.zeros(4, 1, side, side, dtype=D64)
    x[:, :, 4:8, 3:6] = 1.0  # mostly left: class 0
    y = torch.zeros(4, dtype=torch.long)
    adv, info = A.stadv(model, x, y, target=torch.ones(4, dtype=torch.long), tau=0.001,
                        max_iter=100, return_info=True)
    assert info["success"].all()
    assert (model(adv).argmax(1) == 1).all()
    assert adv.min() >= 0 and adv.max() <= 1 + 1e-12
    untargeted = A.stadv(model, x, y, tau=0.001, max_iter=100)
    assert (model(untargeted).argmax(1) != y).all()


def test_stadv_input_checks():
    model = tiny_cnn()
    x = images(2)
    y = torch.tensor([0, 1])
    with pytest.raises(A.AttackInputError, match="training mode"):
        A.stadv(model.train(), x, y)
    model.eval()
    with pytest.raises(A.AttackInputError, match="target"):
        A.stadv(model, x, y, target=torch.tensor([1]))
    with pytest.raises(A.AttackInputError, match="box"):
        A.stadv(model, x + 2, y)
    with pytest.raises(A.AttackInputError, match="neighbourhood"):
        A.stadv(model, x, y, neighbourhood="8")
    with pytest.raises(A.AttackInputError, match="flow"):
        A.flow_warp(x, torch.zeros(2, 2, 3, 3, dtype=D64))


def test_models_and_pairs():
    for name in ("A", "B", "C"):
        out = M.make_model(name)(torch.zeros(2, 1, 28, 28))
        assert out.shape == (2, 10)
    y = torch.tensor([3, 0])
    img, tgt = M.all_pairs(y)
    assert len(tgt) == 18 and not (tgt == y[img]).any()
    assert img.tolist()[:9] == [0] * 9 and tgt.tolist()[:3] == [0, 1, 2]
    pred = torch.tensor([0, 0, 1, 1, 0, 1])
    lab = torch.tensor([0, 0, 1, 0, 0, 1])
    assert M.per_class_images(pred, lab, 2, classes=2).tolist() == [0, 1, 2, 5]
    s = M.success_summary(torch.tensor([True] + [False] * 17), img, 2)
    assert s["success_rate"] == pytest.approx(100 / 18) and s["image_any_success"] == 50.0
