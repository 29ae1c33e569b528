"""The shared adversarial toolkit (common/attacks.py, decision_attacks.py,
robustness.py, adversarial.py): known answers on linear models, where the
minimal perturbation has a closed form, cross-checks against torchattacks, and
input validation.

Linear two-class model: the margin is f(x) = w.x + b (class 0 iff f > 0), so the
smallest perturbation that flips the class has size |f(x)| / ||w||_q in the norm
whose dual norm is q: |f|/||w||_1 in L-inf, |f|/||w||_2 in L2, |f|/||w||_inf in L1
(when the box is not in the way: the inputs below sit in [0.4, 0.6] and the
distances are small enough for the minimisers to stay inside [0, 1])."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import adversarial as adv
from common import attacks as A
from common import decision_attacks as D
from common import robustness as R

D_IN = 20


def linear_model(w: torch.Tensor, b: float) -> nn.Module:
    """Two logits whose difference is w.x + b, on inputs of shape (N, 1, 4, 5)."""
    lin = nn.Linear(w.numel(), 2, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([w, -w]) / 2)
        lin.bias.copy_(torch.tensor([b, -b], dtype=w.dtype) / 2)
    return nn.Sequential(nn.Flatten(), lin).eval()


def make_linear():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D_IN, generator=g, dtype=torch.float64)
    w[3] = 8.0  # one dominant coordinate keeps the L1 minimiser (all on it) inside the box
    x = 0.5 + 0.1 * (2 * torch.rand(32, 1, 4, 5, generator=g, dtype=torch.float64) - 1)
    b = -0.5 * w.sum().item()
    model = linear_model(w, b)
    f = x.flatten(1) @ w + b
    y = (f < 0).long()
    dist = {"linf": f.abs() / w.abs().sum(), "l2": f.abs() / w.norm(), "l1": f.abs() / w.abs().max()}
    return model, x, y, w, f, dist


@pytest.fixture(scope="module")
def linear():
    return make_linear()


def margin_of(model, x):
    z = model(x)
    return (z[:, 0] - z[:, 1]).detach()


# ----------------------------------------------------------------- known answers


def test_fgsm_shifts_linear_margin_by_eps_l1norm(linear):
    model, x, y, w, f, _ = linear
    x_adv = A.fgsm(model, x, y, 0.05)
    expected = f - torch.sign(f) * 0.05 * w.abs().sum()
    torch.testing.assert_close(margin_of(model, x_adv), expected, atol=1e-9, rtol=0)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-12


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_succeeds_just_above_and_fails_just_below_the_minimal_perturbation(linear, norm):
    model, x, y, *_, dist = linear
    d = dist[norm]
    attack = functools.partial(A.pgd, norm=norm, steps=10, step_size=0.1, random_start=False)
    below = R.predict(model, attack(model, x, y, 0.99 * d))
    above = R.predict(model, attack(model, x, y, 1.01 * d))
    assert (below == y).all(), "no perturbation smaller than the closed form can flip a linear model"
    assert (above != y).all(), f"{norm} PGD misses the closed-form minimal perturbation"


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_pgd_stays_in_ball_and_box(linear, norm):
    model, x, y, *_ = linear
    eps = {"linf": 0.3, "l2": 1.5, "l1": 4.0}[norm]
    for random_start in (False, True):
        x_adv = A.pgd(model, x, y, eps, norm=norm, steps=10, step_size=eps / 4,
                      random_start=random_start, generator=torch.Generator().manual_seed(1))
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (R.norms(x_adv - x, norm) <= eps * (1 + 1e-9)).all()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_minimal_eps_bisection_matches_closed_form(linear, norm):
    model, x, y, *_, dist = linear
    attack = functools.partial(A.pgd, norm=norm, steps=10, step_size=0.1, random_start=False)
    found = R.minimal_eps(model, x, y, attack, eps_max=1.0, search_steps=12)
    assert (found >= dist[norm] - 1e-9).all()
    assert (found <= dist[norm] + 1.0 / 2 ** 12 + 1e-9).all()


def test_pgd_per_sample_step_sizes_follow_their_samples_across_chunks(linear):
    model, x, y, *_ = linear
    eps = torch.linspace(0.05, 0.5, len(x), dtype=x.dtype)
    whole = A.pgd(model, x, y, eps, norm="l2", steps=5, step_size=eps / 4, random_start=False)
    chunked = A.pgd(model, x, y, eps, norm="l2", steps=5, step_size=eps / 4, random_start=False, batch_size=7)
    assert torch.allclose(whole, chunked, atol=1e-6)
    # a sample's step size is its own: one L2 step (inside the box and the ball) moves
    # every sample by exactly its eps / 4
    one = A.pgd(model, x, y, eps, norm="l2", steps=1, step_size=eps / 4, random_start=False, batch_size=7)
    assert torch.allclose(R.norms(one - x, "l2"), eps / 4, rtol=1e-6)


def test_minimal_eps_returns_the_adversarials_at_the_found_budget(linear):
    model, x, y, *_, dist = linear
    attack = functools.partial(A.pgd, norm="l2", steps=10, step_size=0.1, random_start=False)
    found, x_adv = R.minimal_eps(model, x, y, attack, eps_max=1.0, search_steps=8, return_adversarials=True)
    assert torch.equal(found, R.minimal_eps(model, x, y, attack, eps_max=1.0, search_steps=8))
    ok = torch.isfinite(found) & (found > 0)
    assert ok.any()
    # each returned image fools the model and lies within the budget returned for it
    assert (R.predict(model, x_adv[ok]) != y[ok]).all()
    assert (R.norms(x_adv[ok] - x[ok], "l2") <= found[ok] * (1 + 1e-6)).all()
    assert torch.equal(x_adv[~ok], x[~ok])


def test_carlini_wagner_finds_the_minimal_l2_perturbation(linear):
    model, x, y, *_, dist = linear
    x_adv = A.carlini_wagner_l2(model, x[:16], y[:16], steps=150, lr=0.02, binary_search_steps=8)
    d = R.distances(model, x[:16], y[:16], x_adv, "l2")
    assert torch.isfinite(d).all()
    assert (d >= dist["l2"][:16] - 1e-6).all()
    assert (d <= 1.05 * dist["l2"][:16]).all(), (d / dist["l2"][:16]).max()


def test_boundary_attack_converges_to_the_minimal_l2_perturbation(linear):
    model, x, y, *_, dist = linear
    x_adv = D.boundary_attack(model, x[:16], y[:16], steps=1000,
                              generator=torch.Generator().manual_seed(0))
    d = R.distances(model, x[:16], y[:16], x_adv, "l2")
    assert (d >= dist["l2"][:16] - 1e-6).all()
    assert (d <= 1.05 * dist["l2"][:16]).all(), (d / dist["l2"][:16]).max()


def _three_of_six_model():
    """f(x) = sum of 6 chosen pixels - (3 - 1.2): at x = 0.5 everywhere f = 1.2; each of
    those pixels set to 0 lowers f by 0.5, so exactly 3 of them (and nothing else)
    is a minimal L0 adversarial, and every locally minimal one has exactly 3."""
    w = torch.zeros(30, dtype=torch.float64)
    chosen = torch.tensor([1, 7, 12, 18, 22, 29])
    w[chosen] = 1.0
    model = linear_model(w, -(3 - 1.2))
    x = torch.full((8, 1, 5, 6), 0.5, dtype=torch.float64)
    return model, x, torch.zeros(8, dtype=torch.long), chosen


def test_pointwise_attack_reaches_the_minimal_l0():
    model, x, y, chosen = _three_of_six_model()
    x_adv = D.pointwise(model, x, y, generator=torch.Generator().manual_seed(0))
    d = R.distances(model, x, y, x_adv, "l0")
    assert (d == 3).all(), d
    changed = (x_adv != x).flatten(1)
    assert changed[:, chosen].sum(1).eq(3).all(), "only pixels the model reads may stay changed"
    assert (x_adv.flatten(1)[changed] == 0).all()


def test_pointwise_l2_refinement_keeps_l0_and_shrinks_l2():
    model, x, y, _ = _three_of_six_model()
    plain = D.pointwise(model, x, y, generator=torch.Generator().manual_seed(0))
    refined = D.pointwise(model, x, y, l2_search_steps=10, generator=torch.Generator().manual_seed(0))
    assert (R.distances(model, x, y, refined, "l0") == 3).all()
    assert (R.distances(model, x, y, refined, "l2") < R.distances(model, x, y, plain, "l2")).all()
    # three pixels lowered together by > 1.2: each by at least 0.4 at the optimum
    assert (R.distances(model, x, y, refined, "l2") >= math.sqrt(3 * 0.4 ** 2) - 1e-3).all()


def test_salt_and_pepper_finds_adversarials_no_smaller_than_minimal():
    model, x, y, _ = _three_of_six_model()
    x_adv = D.salt_and_pepper(model, x, y, steps=200, generator=torch.Generator().manual_seed(0))
    d = R.distances(model, x, y, x_adv, "l0")
    assert torch.isfinite(d).all() and (d >= 3).all()
    assert set(x_adv.unique().tolist()) <= {0.0, 0.5, 1.0}


def test_targeted_pgd_reaches_a_chosen_class():
    g = torch.Generator().manual_seed(3)
    lin = nn.Linear(D_IN, 3).double()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = 0.5 + 0.1 * (2 * torch.rand(32, 1, 4, 5, generator=g, dtype=torch.float64) - 1)
    target = (R.predict(model, x) + 1) % 3
    x_adv = A.pgd(model, x, target, 0.5, steps=50, step_size=0.02, targeted=True)
    assert (R.predict(model, x_adv) == target).all()
    ll = A.least_likely(model, x)
    assert (ll == model(x).argmin(1)).all()


def test_restarts_keep_an_adversarial_restart_when_any(linear):
    """With 0 steps each restart is just its random start; the attack must return,
    per sample, an adversarial start whenever one of the R starts was adversarial."""
    model, x, y, *_, dist = linear
    eps, restarts = dist["linf"].median().item() * 1.5, 6
    got = A.pgd(model, x, y, eps, steps=0, restarts=restarts, generator=torch.Generator().manual_seed(5))
    starts = A._random_start(x.repeat(restarts, 1, 1, 1), torch.full((restarts * len(x),), eps,
                             dtype=x.dtype), "linf", torch.Generator().manual_seed(5)).clamp(0, 1)
    any_adv = (R.predict(model, starts) != y.repeat(restarts)).view(restarts, -1).any(0)
    assert ((R.predict(model, got) != y) == any_adv).all()
    assert 0 < any_adv.sum() < len(x), "the test needs both outcomes"


def test_l1_projection_is_the_euclidean_projection():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(50, 30, generator=g, dtype=torch.float64)
    eps = torch.rand(50, generator=g, dtype=torch.float64) * 20
    p = A.project_l1_ball(delta, eps)
    inside = delta.abs().sum(1) <= eps
    assert torch.equal(p[inside], delta[inside])
    torch.testing.assert_close(p[~inside].abs().sum(1), eps[~inside])
    # optimality (KKT): p = sign(d) max(|d| - theta, 0) for one theta >= 0 per row
    theta = (delta.abs() - p.abs())[~inside]
    kept = p[~inside] != 0
    th = torch.where(kept, theta, torch.nan).nanmean(1)
    torch.testing.assert_close(torch.where(kept, theta, th[:, None]), th[:, None].expand_as(theta))
    assert (delta.abs()[~inside][~kept] <= th[:, None].expand_as(theta)[~kept] + 1e-12).all()


# ------------------------------------------------------------- robustness helpers


def test_distances_accuracy_median_and_best_over_attacks(linear):
    model, x, y, *_ = linear
    x_flip = A.pgd(model, x, y, 1.0, steps=10, step_size=0.1, random_start=False)
    y_wrong = y.clone()
    y_wrong[:4] = 1 - y_wrong[:4]  # four samples the model already gets wrong
    d_fail = R.distances(model, x, y_wrong, x, "linf")  # "attack" that changes nothing
    assert (d_fail[:4] == 0).all() and torch.isinf(d_fail[4:]).all()
    d = R.distances(model, x, y, x_flip, "linf")
    assert torch.isfinite(d).all() and (d > 0).all()
    best = R.best_over_attacks(d, torch.full_like(d, math.inf), d * 2)
    assert torch.equal(best, d)
    assert R.accuracy_at(torch.tensor([0.0, 0.1, 0.2, math.inf]), 0.1) == 50.0
    assert R.accuracy_curve(torch.tensor([0.0, 0.1, 0.2, math.inf]), [0, 0.15, 1]) == [75.0, 50.0, 25.0]
    assert R.median(torch.tensor([0.0, 0.1, 0.3, math.inf])) == pytest.approx(0.2)
    assert R.median(torch.tensor([0.0, math.inf, math.inf])) == math.inf
    assert R.median(torch.tensor([0.3, 0.1, 0.2])) == pytest.approx(0.2)


def test_robust_accuracy_union_is_the_per_sample_and(linear):
    model, x, y, *_, dist = linear
    mid = lambda d: d.sort().values[len(d) // 2 - 1: len(d) // 2 + 1].mean().item()  # between samples
    eps = mid(dist["linf"])
    attacks = {"linf": functools.partial(A.pgd, norm="linf", steps=10, step_size=0.1, random_start=False),
               "l2": functools.partial(A.pgd, norm="l2", steps=10, step_size=0.1, random_start=False)}
    out = R.robust_accuracy(model, x, y, attacks, {"linf": eps, "l2": mid(dist["l2"])})
    c = out["correct"]
    assert torch.equal(c["union"], c["linf"] & c["l2"])
    assert out["linf"] == pytest.approx(100 * (dist["linf"] > eps).double().mean().item(), abs=1e-9)
    assert out["union"] <= min(out["linf"], out["l2"])
    curve = R.robust_accuracy_curve(model, x, y, attacks["linf"], [0.0, eps, 1.0])
    assert curve[0] == 100.0 and curve[-1] == 0.0


# ----------------------------------------------------------------- torchattacks


@pytest.fixture(scope="module")
def cnn_batch():
    torch.manual_seed(0)
    model = adv.MadryCNN(width=0.25).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return model, x, y


def test_fgsm_matches_torchattacks(cnn_batch):
    ta = pytest.importorskip("torchattacks")
    model, x, y = cnn_batch
    ours = A.fgsm(model, x, y, 0.3)
    theirs = ta.FGSM(model, eps=0.3)(x, y)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_matches_torchattacks(cnn_batch, targeted):
    ta = pytest.importorskip("torchattacks")
    model, x, y = cnn_batch
    target = (y + 3) % 10
    ours = A.pgd(model, x, target if targeted else y, 0.3, steps=15, step_size=0.03,
                 random_start=False, targeted=targeted)
    atk = ta.PGD(model, eps=0.3, alpha=0.03, steps=15, random_start=False)
    if targeted:
        atk.set_mode_targeted_by_label(quiet=True)
    theirs = atk(x, target if targeted else y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_bim_matches_torchattacks(cnn_batch):
    ta = pytest.importorskip("torchattacks")
    model, x, y = cnn_batch
    ours = A.bim(model, x, y, 0.1, steps=10, step_size=0.02)
    theirs = ta.BIM(model, eps=0.1, alpha=0.02, steps=10)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_pgd_l2_matches_torchattacks_over_a_few_steps(cnn_batch):
    """torchattacks adds 1e-10 to the gradient norm of its mean loss, so the runs
    agree to ~1e-5 per step and then drift apart chaotically at ReLU kinks."""
    ta = pytest.importorskip("torchattacks")
    model, x, y = cnn_batch
    ours = A.pgd(model, x, y, 2.0, norm="l2", steps=2, step_size=0.5, random_start=False)
    theirs = ta.PGDL2(model, eps=2.0, alpha=0.5, steps=2, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


# ----------------------------------------------------------------- bad input


ALL_ATTACKS = {
    "fgsm": lambda m, x, y: A.fgsm(m, x, y, 0.1),
    "pgd": lambda m, x, y: A.pgd(m, x, y, 0.1, steps=2),
    "pgd_l1": lambda m, x, y: A.pgd(m, x, y, 1.0, norm="l1", steps=2),
    "bim": lambda m, x, y: A.bim(m, x, y, 0.1, steps=2),
    "cw": lambda m, x, y: A.carlini_wagner_l2(m, x, y, steps=2, binary_search_steps=1),
    "salt_and_pepper": lambda m, x, y: D.salt_and_pepper(m, x, y, steps=2),
    "pointwise": lambda m, x, y: D.pointwise(m, x, y, init_steps=2),
    "boundary": lambda m, x, y: D.boundary_attack(m, x, y, steps=2),
}


@pytest.mark.parametrize("name", list(ALL_ATTACKS))
def test_bad_input_gives_one_clear_error(name, cnn_batch):
    model, x, y = cnn_batch
    attack = ALL_ATTACKS[name]
    x, y = x[:4], y[:4]
    cases = {
        "outside the box": (model, x + 1.5, y, "box"),
        "wrong label shape": (model, x, y[:3], "shape"),
        "non-finite": (model, torch.where(x > 0.5, torch.nan, x), y, "non-finite"),
        "training mode": (adv.MadryCNN(width=0.25).train(), x, y, "training mode"),
        "labels out of range": (model, x, y + 20, "labels"),
        "not a batch": (model, x[0, 0, 0], y, "batch"),
    }
    for what, (m, xx, yy, words) in cases.items():
        with pytest.raises(A.AttackInputError, match=words):
            attack(m, xx, yy)
    with pytest.raises(A.AttackInputError, match="logits"):
        attack(SumModel().eval(), x, y)


class SumModel(nn.Module):
    """Returns one number per sample instead of a row of logits."""

    def forward(self, x):
        return x.flatten(1).sum(1)


def test_error_names_the_problem_in_one_line(cnn_batch):
    model, x, y = cnn_batch
    with pytest.raises(A.AttackInputError) as info:
        A.pgd(model, x * 255, y, 0.3)
    msg = str(info.value)
    assert "\n" not in msg and "[0, 1]" in msg and "254.9" in msg


# ------------------------------------------------------------ adversarial training


def test_mixed_batch_loss_matches_kurakins_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 3)).train()
    x, y = torch.rand(10, 1, 4, 5), torch.randint(0, 3, (10,))
    shift = lambda m, xx, yy: (xx + 0.1).clamp(0, 1)  # a stand-in attack, easy to recompute
    loss = adv.mixed_batch_loss(model, x, y, attack=shift, k=4, lam=0.3,
                                generator=torch.Generator().manual_seed(2))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(2))
    a, c = order[:4], order[4:]
    expected = (F.cross_entropy(model(x[c]), y[c], reduction="sum")
                + 0.3 * F.cross_entropy(model(shift(None, x[a], None)), y[a], reduction="sum")) / (6 + 0.3 * 4)
    torch.testing.assert_close(loss, expected)
    assert model.training


def test_multi_perturbation_max_and_avg():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 3)).train()
    x, y = torch.rand(10, 1, 4, 5), torch.randint(0, 3, (10,))
    attacks = [lambda m, xx, yy: (xx + 0.3).clamp(0, 1), lambda m, xx, yy: (xx - 0.3).clamp(0, 1)]
    advs = [a(None, x, y) for a in attacks]
    per = torch.stack([F.cross_entropy(model(a), y, reduction="none") for a in advs])
    torch.testing.assert_close(adv.multi_perturbation_loss(model, x, y, attacks=attacks, strategy="max"),
                               per.amax(0).mean())
    torch.testing.assert_close(adv.multi_perturbation_loss(model, x, y, attacks=attacks, strategy="avg"),
                               per.mean())
    assert model.training


def test_madry_loss_attacks_in_eval_mode_and_restores_training():
    model = adv.MadryCNN(width=0.25).train()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    loss = adv.madry_loss(model, x, y, attack=functools.partial(A.pgd, eps=0.3, steps=2))
    loss.backward()
    assert model.training and all(p.grad is not None for p in model.parameters())
