"""AutoAttack through torchattacks' components (common/autoattack.py).

The known answer: for a linear classifier f(x) = Wx + b and a point whose eps ball
stays inside the [0, 1] box, the smallest perturbation that changes the label from
y to j has size m_j / ||w_y - w_j||_* (m_j the logit margin, * the dual norm: l1 for
an l-inf budget, l2 for l2). A correct attack cascade finds every image whose
smallest such distance is below eps and none above it.
"""

from __future__ import annotations

import itertools
import sys

import pytest
import torch

from common import robustness as R
from common.attacks import AttackInputError, pgd

pytest.importorskip("torchattacks")
from common.autoattack import autoattack, run_autoattack

# a short plan keeps the tests fast; the linear problems need few steps
FAST = (("apgd-ce", {"steps": 20}), ("apgd-t", {"steps": 20, "targets": 3}),
        ("square", {"queries": 100}))


def _linear_problem(n=160, d=64, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g) / d ** 0.5)
        lin.bias.copy_(0.1 * torch.randn(k, generator=g))
    model = torch.nn.Sequential(torch.nn.Flatten(), lin).eval()
    x = 0.3 + 0.4 * torch.rand(n, 1, 8, 8, generator=g)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    y[:8] = (y[:8] + 1) % k  # a few misclassified images: never robust
    return model, x, y, z, lin.weight.detach()


def _exact_distance(z, w, y, norm):
    """Per image, the exact smallest perturbation to any other class (0 if misclassified)."""
    m = z.gather(1, y[:, None]) - z
    wd = w[y][:, None, :] - w[None]
    den = wd.abs().sum(-1) if norm == "linf" else wd.norm(dim=-1)
    dist = (m / den).masked_fill(torch.arange(z.shape[1])[None] == y[:, None], float("inf")).amin(1)
    return dist.clamp_min(0)


def _optimum_in_box(x, z, w, y, norm, dist, eps):
    m = z.gather(1, y[:, None]) - z
    wd = w[y][:, None, :] - w[None]
    den = wd.abs().sum(-1) if norm == "linf" else wd.norm(dim=-1)
    j = (m / den).masked_fill(torch.arange(z.shape[1])[None] == y[:, None], float("inf")).argmin(1)
    v = -wd[torch.arange(len(y)), j]  # direction that raises logit j against y
    step = eps * v.sign() if norm == "linf" else eps * v / v.norm(dim=1, keepdim=True)
    moved = x.flatten(1) + step
    inside = (moved >= 0).all(1) & (moved <= 1).all(1)
    return bool(inside[dist <= eps].all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_model_matches_the_exact_robust_set(norm):
    model, x, y, z, w = _linear_problem()
    dist = _exact_distance(z, w, y, norm)
    eps = dist[8:].median().item()  # about half the correctly classified images robust
    # the closed form is exact where each image's optimal perturbation stays in the box
    # (for a robust image the box can only make the attack harder)
    assert _optimum_in_box(x, z, w, y, norm, dist, eps)
    res = run_autoattack(model, x, y, eps, norm=norm, version=FAST)
    exact = dist > eps
    far = (dist - eps).abs() > 0.02 * eps
    assert far.sum() > 140
    assert torch.equal(res.robust[far], exact[far])
    assert not res.robust[:8].any() and not res.clean[:8].any()
    # every counted adversarial is re-checked: inside the ball and box, misclassified
    fooled = res.clean & ~res.robust
    delta = (res.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size[fooled] <= eps * (1 + 1e-5)).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        assert (model(res.x_adv[fooled]).argmax(1) != y[fooled]).all()
    assert torch.equal(res.x_adv[res.robust], x[res.robust])


def test_cascade_accuracy_is_a_running_worst_case():
    model, x, y, z, w = _linear_problem(seed=1)
    eps = _exact_distance(z, w, y, "linf")[8:].median().item()
    res = run_autoattack(model, x, y, eps, version=FAST)
    acc = list(res.accuracy.values())
    assert list(res.accuracy) == ["clean"] + [n for n, _ in FAST]
    assert all(a >= b for a, b in itertools.pairwise(acc))
    assert acc[-1] == pytest.approx(100.0 * res.robust.float().mean().item())
    assert set(res.seconds) == {n for n, _ in FAST}


def test_union_with_hub_attacks_is_the_per_image_worst_case():
    model, x, y, z, w = _linear_problem(seed=2)
    eps = _exact_distance(z, w, y, "linf")[8:].median().item()
    attacks = {"pgd": lambda m, a, b, e: pgd(m, a, b, e, steps=5, step_size=eps / 4, norm="linf"),
               "autoattack": autoattack("linf", version=FAST)}
    res = R.robust_accuracy(model, x, y, attacks, eps)
    c = res["correct"]
    assert torch.equal(c["union"], c["pgd"] & c["autoattack"])
    assert res["union"] <= min(res["pgd"], res["autoattack"])


def test_caller_random_state_is_kept():
    model, x, y, *_ = _linear_problem(n=20)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_autoattack(model, x, y, 0.05, version=FAST, seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_same_seed_same_result():
    model, x, y, *_ = _linear_problem(n=40, seed=3)
    a = run_autoattack(model, x, y, 0.03, version=(("square", {"queries": 50}),), seed=5)
    b = run_autoattack(model, x, y, 0.03, version=(("square", {"queries": 50}),), seed=5)
    assert torch.equal(a.x_adv, b.x_adv)


def test_bad_inputs_raise_clear_errors(monkeypatch):
    model, x, y, *_ = _linear_problem(n=4)
    with pytest.raises(AttackInputError, match="version"):
        run_autoattack(model, x, y, 0.1, version="fast")
    with pytest.raises(AttackInputError, match="per-sample"):
        run_autoattack(model, x, y, torch.full((4,), 0.1))
    with pytest.raises(AttackInputError, match="norm"):
        autoattack("l1")
    with pytest.raises(AttackInputError, match=r"\[0, 1\]"):
        run_autoattack(model, x + 2, y, 0.1)
    with pytest.raises(AttackInputError, match="component"):
        run_autoattack(model, x, y, 0.1, version=(("pgd", {}),))
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match="setup.sh"):
        run_autoattack(model, x, y, 0.1)


def test_nothing_left_to_attack():
    model, x, y, *_ = _linear_problem(n=8)  # all eight misclassified
    res = run_autoattack(model, x, y, 0.05, version=FAST)
    assert not res.clean.any() and not res.robust.any()
    assert torch.equal(res.x_adv, x)
    assert all(a == 0 for a in res.accuracy.values())
