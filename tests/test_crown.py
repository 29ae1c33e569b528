"""CROWN / Fast-Lin / IBP bounds (papers/crown/method.py): soundness against random
points and PGD inside the ball, exactness without a hidden layer, Fast-Lin's closed
form, the tangent-point equation, the eps search, an exact LP (scipy) that CROWN must
not beat, and the bound-propagation library as a cross-check.  Float64 throughout."""

from __future__ import annotations

import math

import pytest
import torch

from common import attacks as A
from common import robustness as R
from papers.crown import method as M

D64 = torch.float64
NORMS = ("linf", "l2", "l1")


pytestmark = pytest.mark.usefixtures("one_thread")


def random_net(act, hidden=(12, 10, 8), d=6, k=4, seed=0):
    torch.manual_seed(seed)
    model = M.make_mlp(hidden, act, d_in=d, classes=k).double().eval()
    return model, M.MLP.from_module(model, act, D64)


def ball_samples(n, B, d, eps, norm, gen):
    """n points per instance, uniform in the lp ball of radius eps (B,), and its corners."""
    if norm == "linf":
        u = torch.rand(n, B, d, generator=gen, dtype=D64) * 2 - 1
        u[: n // 10] = u[: n // 10].sign()  # corners of the box
        return u * eps[:, None]
    if norm == "l2":
        v = torch.randn(n, B, d, generator=gen, dtype=D64)
    else:
        v = -torch.rand(n, B, d, generator=gen, dtype=D64).log() * (torch.randint(0, 2, (n, B, d), generator=gen) * 2 - 1)
    v = v / v.norm(p=2 if norm == "l2" else 1, dim=-1, keepdim=True)
    r = torch.rand(n, B, 1, generator=gen, dtype=D64) ** (1 / d)
    r[: n // 10] = 1.0  # on the sphere
    return v * r * eps[:, None]


def pgd_in_ball(net, x0, eps, C, norm, steps=100, sign=1.0):
    """Projected gradient descent on sign * (C f(x)) (one spec row), inside the ball."""
    delta = torch.zeros_like(x0)
    for _ in range(steps):
        delta.requires_grad_(True)
        val = sign * (C[:, 0] * M.forward(net, x0 + delta)).sum()
        (g,) = torch.autograd.grad(val, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = (delta - 0.05 * eps[:, None] * g.sign()).clamp(-eps[:, None], eps[:, None])
            elif norm == "l2":
                delta = A.project_l2_ball(delta - 0.1 * eps[:, None] * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12), eps)
            else:
                i = g.abs().argmax(1)
                step = torch.zeros_like(g)
                step[torch.arange(len(g)), i] = g[torch.arange(len(g)), i].sign()
                delta = A.project_l1_ball(delta - 0.1 * eps[:, None] * step, eps)
    return (C[:, 0] * M.forward(net, x0 + delta.detach())).sum(-1)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "arctan"])
def test_bounds_contain_random_points_and_pgd(act):
    """10^4 random points (and corners / the sphere) plus PGD from both sides never leave
    the certified interval of the margin spec, for every method, norm and target."""
    model, net = random_net(act)
    gen = torch.Generator().manual_seed(1)
    B = 4
    x0 = torch.rand(B, 6, generator=gen, dtype=D64)
    y = torch.tensor([0, 1, 2, 3])
    C = M.margin_spec(y, (y + 1) % 4, classes=4, dtype=D64)
    methods = ["ibp", "fastlin", "crown"] if act == "relu" else ["ibp", "crown"]
    for norm in NORMS:
        eps = torch.full((B,), {"linf": 0.15, "l2": 0.4, "l1": 0.8}[norm], dtype=D64)
        pts = x0 + ball_samples(10_000, B, 6, eps, norm, gen)
        vals = (C[:, 0] * M.forward(net, pts.reshape(-1, 6)).reshape(10_000, B, 4)).sum(-1)
        lo_pgd = pgd_in_ball(net, x0, eps, C, norm, sign=1.0)
        hi_pgd = pgd_in_ball(net, x0, eps, C, norm, sign=-1.0)
        assert (lo_pgd <= vals.amin(0) + 1e-6).any()  # the attack does its job somewhere
        for meth in methods:
            lo, hi = M.output_bounds(net, x0, eps, norm, meth, C=C)
            assert (lo[:, 0] <= vals.amin(0) + 1e-10).all(), (meth, norm)
            assert (hi[:, 0] >= vals.amax(0) - 1e-10).all(), (meth, norm)
            assert (lo[:, 0] <= lo_pgd + 1e-10).all() and (hi[:, 0] >= hi_pgd - 1e-10).all(), (meth, norm)


def test_crown_is_tighter_than_ibp_here_and_fastlin_matches_its_closed_form():
    """Back-substitution with Fast-Lin's slopes equals Fast-Lin's forward closed form
    (Weng et al. 2018, Thm 3.5), a different computation of the same bound."""
    for seed in range(3):
        _, net = random_net("relu", hidden=(20, 16, 12), seed=seed)
        x0 = torch.rand(5, 6, dtype=D64)
        y = torch.arange(5) % 4
        C = M.margin_spec(y, (y + 2) % 4, classes=4, dtype=D64)
        for norm in NORMS:
            eps = torch.full((5,), 0.2, dtype=D64)
            back = M.lower_bound(net, x0, eps, C, norm, "fastlin")
            fwd = M.fastlin_forward(net, x0, eps, norm, C=C)
            assert torch.allclose(back, fwd, atol=1e-10, rtol=0), (seed, norm)
            logits_fwd = M.fastlin_forward(net, x0, eps, norm)
            assert torch.allclose(M.output_bounds(net, x0, eps, norm, "fastlin")[0], logits_fwd, atol=1e-10)


def test_no_hidden_layer_gives_exact_bounds():
    """For f(x) = W x + b every method's lower bound is attained at an explicit point."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(7, 3)).double()
    net = M.MLP.from_module(model, "relu", D64)
    x0 = torch.rand(4, 7, dtype=D64)
    eps = torch.full((4,), 0.3, dtype=D64)
    C = M.margin_spec(torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2]), classes=3, dtype=D64)
    c = (C[:, 0] @ net.weights[0])  # (B, d)
    for norm in NORMS:
        if norm == "linf":
            x = x0 - eps[:, None] * c.sign()
        elif norm == "l2":
            x = x0 - eps[:, None] * c / c.norm(dim=1, keepdim=True)
        else:
            i = c.abs().argmax(1)
            x = x0.clone()
            x[torch.arange(4), i] -= eps * c[torch.arange(4), i].sign()
        attained = (C[:, 0] * M.forward(net, x)).sum(-1)
        for meth in M.METHODS:
            lo = M.lower_bound(net, x0, eps, C, norm, meth)[:, 0]
            assert torch.allclose(lo, attained, atol=1e-12), (norm, meth)
        # the exact radius of a linear margin, and the official search below it
        exact = (C[:, 0] * M.forward(net, x0)).sum(-1) / M._dual_norm(c, norm)
        ok = exact > 0
        r = M.certified_radius(net, x0[ok], C[ok], norm, "crown")
        # 15 evaluations: ~4 to bracket (0.005 -> 0.05 -> 0.5 -> 5), then 11 halvings of a
        # bracket at most 10x its lower end: within 10 * exact / 2**11 below the truth
        assert (r <= exact[ok]).all() and (exact[ok] - r <= 10 * exact[ok] / 2**11).all()
        r_more = M.certified_radius(net, x0[ok], C[ok], norm, "crown", steps=40)
        assert (exact[ok] - r_more <= 1e-5).all() and (r_more <= exact[ok]).all()
        assert (M.global_lipschitz_radius(net, x0[ok], C[ok], norm) - exact[ok]).abs().max() < 1e-12


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "arctan"])
def test_tangent_point_solves_its_equation(act):
    s, ds = M.act_fn(act), lambda d: M.act_grad(act, d)
    gen = torch.Generator().manual_seed(0)
    l = -torch.rand(200, generator=gen, dtype=D64) * 4 - 0.01
    u = torch.rand(200, generator=gen, dtype=D64) * 4 + 0.01
    for upper in (True, False):
        d, found = M.tangent_point(act, l, u, upper=upper)
        end = l if upper else u
        g = (s(d) - s(end)) / (d - end) - ds(d)
        assert found.any() and (~found).any()
        assert (g[found] >= 0).all() and (g[found].abs() < 1e-9).all()
        inside = (d >= 0) & (d <= u) if upper else (d <= 0) & (d >= l)
        assert inside[found].all()
        # the lines from s_shaped bound s on a fine grid of [l, u]
    aL, bL, aU, bU = M.s_shaped(act, l, u)
    t = torch.linspace(0, 1, 2001, dtype=D64)[:, None]
    y = l + t * (u - l)
    assert (aL * y + bL <= s(y) + 1e-12).all() and (aU * y + bU >= s(y) - 1e-12).all()


def test_crown_does_not_beat_the_exact_lp():
    """On a tiny ReLU net, with CROWN's own pre-activation bounds fixed, the triangle-
    relaxation LP (scipy linprog, L-inf ball) is at least CROWN's bound and at most the
    minimum over sampled points: CROWN <= LP <= true minimum."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    import numpy as np

    _, net = random_net("relu", hidden=(6, 5), d=3, k=3, seed=4)
    x0 = torch.rand(1, 3, dtype=D64)
    eps = torch.full((1,), 0.3, dtype=D64)
    C = M.margin_spec(torch.tensor([0]), torch.tensor([1]), classes=3, dtype=D64)
    crown = M.lower_bound(net, x0, eps, C, "linf", "crown")[0, 0].item()
    bounds, _ = M.preactivation_bounds(net, x0, eps, "linf", "crown")
    W = [w.numpy() for w in net.weights]
    b = [v.numpy() for v in net.biases]
    sizes = [3, 6, 6, 5, 5]  # x, y1, z1, y2, z2
    off = np.cumsum([0] + sizes)
    nv = off[-1]
    A_eq, b_eq, A_ub, b_ub = [], [], [], []

    def row(pairs):
        r = np.zeros(nv)
        for idx, val in pairs:
            r[idx] += val
        return r

    for layer, (yi, zi_prev) in enumerate(((1, 0), (3, 2))):
        Wl, bl = W[layer], b[layer]
        for i in range(Wl.shape[0]):  # y = W z_prev + b
            A_eq.append(row([(off[yi] + i, 1.0)] + [(off[zi_prev] + j, -Wl[i, j]) for j in range(Wl.shape[1])]))
            b_eq.append(bl[i])
        l, u = (t[0].numpy() for t in bounds[layer])
        for i in range(len(l)):
            y_, z_ = off[yi] + i, off[yi + 1] + i
            if l[i] >= 0:
                A_eq.append(row([(z_, 1.0), (y_, -1.0)]))
                b_eq.append(0.0)
            elif u[i] <= 0:
                A_eq.append(row([(z_, 1.0)]))
                b_eq.append(0.0)
            else:  # z >= 0, z >= y, z <= u (y - l) / (u - l)
                A_ub.append(row([(z_, -1.0)]))
                b_ub.append(0.0)
                A_ub.append(row([(y_, 1.0), (z_, -1.0)]))
                b_ub.append(0.0)
                s = u[i] / (u[i] - l[i])
                A_ub.append(row([(z_, 1.0), (y_, -s)]))
                b_ub.append(-s * l[i])
            A_ub.append(row([(y_, 1.0)]))
            b_ub.append(u[i])
            A_ub.append(row([(y_, -1.0)]))
            b_ub.append(-l[i])
    cW = (C[0, 0] @ net.weights[2]).numpy()
    const = float(C[0, 0] @ net.biases[2])
    obj = np.zeros(nv)
    obj[off[4]:off[5]] = cW
    box = [(float(v) - 0.3, float(v) + 0.3) for v in x0[0]] + [(None, None)] * (nv - 3)
    res = linprog(obj, A_ub=np.array(A_ub), b_ub=np.array(b_ub), A_eq=np.array(A_eq), b_eq=np.array(b_eq),
                  bounds=box, method="highs")
    assert res.status == 0
    lp = res.fun + const
    pts = x0 + ball_samples(20_000, 1, 3, eps, "linf", torch.Generator().manual_seed(0))[:, 0]
    sampled = (C[0, 0] * M.forward(net, pts)).sum(-1).min().item()
    assert crown <= lp + 1e-9 and lp <= sampled + 1e-9
    assert crown < sampled  # the relaxation is not exact on this net (the test can tell)


def test_certified_radius_below_attack_radius_on_a_trained_net():
    """A small MLP trained for a moment on MNIST-like data: every method's certified
    radius is at most the targeted-PGD radius, for every image and target."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 4, 4, generator=gen)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    model = M.make_mlp((16, 16), "relu", d_in=16, classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    logits = model(x[:30]).detach()
    keep = logits.argmax(1) == y[:30]
    xs, ys = x[:30][keep], y[:30][keep]
    tg = M.targets(logits[keep], ys, gen)
    net = M.MLP.from_module(model, "relu", D64)
    for norm in ("linf", "l2"):
        for t in tg.values():
            C = M.margin_spec(ys, t, classes=4, dtype=D64)
            att = R.minimal_eps(model, xs, t, lambda m, a, b, e: A.pgd(m, a, b, e, norm=norm, steps=50,
                                                                        step_size=2.5 * e / 50, targeted=True,
                                                                        loss="margin", random_start=False),
                                eps_max=4.0, search_steps=12, targeted=True).double()
            for meth in M.METHODS:
                r = M.certified_radius(net, xs.flatten(1).double(), C, norm, meth)
                assert (r <= att).all(), (norm, meth)
                assert (r > 0).all()


def test_against_bound_propagation():
    """bound-propagation 0.4.7: with its adaptive ReLU slope, CROWN on the logits is
    the same bound (L-inf); for tanh both are sound and agree to 1e-4 (different
    tangent searches).  Its LpNormSet uses q = p / (1 - p), negative for p = 2, so the
    L2 cross-check passes p = 2/3 to get q = 2 (checked below to be our dual norm)."""
    bp = pytest.importorskip("bound_propagation")
    for act, tol in (("relu", 1e-10), ("tanh", 1e-4), ("sigmoid", 1e-4)):
        model, net = random_net(act, hidden=(16, 12), d=6, k=4, seed=5)
        x0 = torch.rand(5, 6, dtype=D64)
        bnet = bp.BoundModelFactory(adaptive_relu=True).build(model[1:])
        for norm, region in (("linf", bp.HyperRectangle.from_eps(x0, 0.1)), ("l2", bp.LpNormSet(x0, 0.1, 2 / 3))):
            theirs = bnet.crown(region).concretize()
            lo, hi = M.output_bounds(net, x0, torch.full((5,), 0.1, dtype=D64), norm, "crown")
            assert torch.allclose(lo, theirs.lower, atol=tol) and torch.allclose(hi, theirs.upper, atol=tol), (act, norm)
            if norm == "linf":
                ibp = bnet.ibp(region).concretize()
                ilo, ihi = M.output_bounds(net, x0, torch.full((5,), 0.1, dtype=D64), norm, "ibp")
                assert torch.allclose(ilo, ibp.lower, atol=1e-10) and torch.allclose(ihi, ibp.upper, atol=1e-10)


def test_targets_and_spec():
    logits = torch.tensor([[3.0, 2.0, -1.0, 0.5], [0.0, 1.0, 5.0, -2.0]])
    y = torch.tensor([0, 2])
    t = M.targets(logits, y, torch.Generator().manual_seed(0))
    assert t["runner_up"].tolist() == [1, 1] and t["least_likely"].tolist() == [2, 3]
    assert (t["random"] != y).all()
    C = M.margin_spec(y, t["runner_up"], classes=4)
    assert (C[:, 0] * logits).sum(-1).tolist() == [1.0, 4.0]
    assert not math.isnan(M.operator_norm(torch.eye(3), "l2").item())
