"""SENN: the jacrev + vmap stability term against a loop of plain autograd, the linear
special case, the Lipschitz estimators on functions with known constants, and the
explainers against captum."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from common import saliency as S
from papers.senn import experiment as E
from papers.senn import method as M


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_mnist_senn(k=3, classes=4):
    torch.manual_seed(0)
    return M.SENN(M.ConvConceptizer(k), M.ConvParametrizer(k, classes, hidden=8)).double()


def loop_penalty(model: M.SENN, x: torch.Tensor) -> torch.Tensor:
    """|| J f - theta^T J h ||_F per sample by one autograd.grad call per output row
    and per sample (create_graph, so the result is differentiable in the weights)."""
    norms = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        logits, h, theta = model.parts(xi)
        jf = torch.stack([torch.autograd.grad(logits[0, c], xi, create_graph=True)[0].flatten()
                          for c in range(logits.shape[1])])
        jh = torch.stack([torch.autograd.grad(h[0, k], xi, create_graph=True)[0].flatten()
                          for k in range(h.shape[1])])
        norms.append((jf - theta[0].T @ jh).norm())
    return torch.stack(norms).mean()


def test_stability_term_matches_loop_autograd_value_and_weight_gradient():
    model = tiny_mnist_senn()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pen, logits, h, theta = M.stability_penalty(model, x)
    ref = loop_penalty(model, x)
    assert pen.item() == pytest.approx(ref.item(), rel=1e-10)
    assert pen.item() > 1e-4  # a non-trivial residual: the check compares something
    # the aux outputs are the forward pass
    fl, fh, ft = model.parts(x)
    assert torch.allclose(logits, fl) and torch.allclose(h, fh) and torch.allclose(theta, ft)
    # and the penalty trains the weights as the loop's would (double backprop)
    params = [p for p in model.parameters()]
    g1 = torch.autograd.grad(pen, params, allow_unused=True)
    g2 = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
            continue
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    assert any(a is not None and a.abs().max() > 0 for a in g1)


def test_stability_term_tabular_matches_loop():
    torch.manual_seed(0)
    model = M.SENN(M.IdentityConceptizer(), M.MLPParametrizer(6, 6, 2, hidden=(8,))).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    pen = M.stability_penalty(model, x)[0]
    assert pen.item() == pytest.approx(loop_penalty(model, x).item(), rel=1e-10)
    # h(x) = x: J h is the identity, so the residual is J f - theta^T
    jf, jh, _, _, theta = M.jacobians(model, x)
    assert torch.equal(jh, torch.eye(6, dtype=torch.float64).expand(5, 6, 6))


class ConstantTheta(nn.Module):
    def __init__(self, k, c):
        super().__init__()
        self.k, self.c = k, c
        self.w = nn.Parameter(torch.randn(k, c, dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(len(x), -1, -1)


def test_identity_concepts_and_constant_theta_is_linear_with_zero_penalty():
    torch.manual_seed(0)
    model = M.SENN(M.IdentityConceptizer(), ConstantTheta(7, 3))
    x = torch.randn(4, 7, dtype=torch.float64)
    # a linear model: f(x) = W^T x
    assert torch.allclose(model(x), x @ model.parametrizer.w)
    assert torch.allclose(model(2 * x - x[:1]), 2 * model(x) - model(x[:1]))
    pen = M.stability_penalty(model, x)[0]
    assert pen.abs().item() < 1e-12
    loss, parts = M.senn_loss(model, x, torch.tensor([0, 1, 2, 0]), lam=1.0)
    assert parts["penalty"].abs().item() < 1e-12 and parts["recon"].item() == 0
    # a theta that depends on x gives a non-zero term (the test can fail)
    model2 = M.SENN(M.IdentityConceptizer(), M.MLPParametrizer(7, 7, 3, hidden=(5,))).double()
    assert M.stability_penalty(model2, x)[0].item() > 1e-3


def test_pgd_lipschitz_of_linear_explainer_approaches_spectral_norm_from_below():
    g0 = torch.Generator().manual_seed(0)
    A = torch.randn(6, 10, generator=g0, dtype=torch.float64)
    spec = torch.linalg.matrix_norm(A, ord=2).item()
    x = torch.randn(5, 10, generator=g0, dtype=torch.float64)
    t = torch.zeros(5, dtype=torch.long)
    lin = lambda z, tt: z @ A.T  # noqa: E731
    est = M.lipschitz_pgd(lin, x, t, eps=0.3, steps=60, restarts=3, generator=torch.Generator().manual_seed(1))
    assert (est <= spec * (1 + 1e-9)).all()
    assert (est >= 0.99 * spec).all()
    few = M.lipschitz_pgd(lin, x, t, eps=0.3, steps=0, restarts=1, generator=torch.Generator().manual_seed(1))
    assert (few < est).all()  # random starts alone are well below: the ascent does the work
    rs = M.lipschitz_random(lin, x, t, eps=0.3, samples=20, generator=torch.Generator().manual_seed(2))
    assert (rs <= spec * (1 + 1e-9)).all() and (rs > 0).all()
    const = lambda z, tt: torch.ones(len(z), 3, dtype=z.dtype) + 0 * z[:, :3]  # noqa: E731
    assert M.lipschitz_pgd(const, x, t, eps=0.3, steps=5).max() == 0
    assert M.lipschitz_random(const, x, t, eps=0.3, samples=5).max() == 0


def test_pgd_finds_the_lipschitz_constant_of_a_nonlinear_explainer():
    """g(x) = sin(w . x) v: the best ratio in a ball of radius eps around x0 is at most
    |w| |v| and, near a zero of sin(w . x), close to it."""
    w = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    v = torch.tensor([1.0, 2.0], dtype=torch.float64)
    g = lambda z, tt: torch.sin(z @ w)[:, None] * v  # noqa: E731
    x = torch.zeros(2, 3, dtype=torch.float64)
    est = M.lipschitz_pgd(g, x, torch.zeros(2, dtype=torch.long), eps=0.05, steps=50, restarts=2)
    bound = (w.norm() * v.norm()).item()
    assert (est <= bound * (1 + 1e-9)).all() and (est >= 0.99 * bound).all()


def test_ball_points_stay_in_the_ball():
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    z = M.ball_points(x, 0.7, 30, torch.Generator().manual_seed(0), min_frac=0.1)
    d = (z - x[None]).flatten(2).norm(dim=2)
    assert z.shape == (30, 4, 1, 5, 5)
    assert (d <= 0.7 + 1e-12).all() and (d >= 0.07 - 1e-12).all()


def test_discrete_estimator_on_a_hand_example():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 10.0]])
    gx = torch.tensor([[0.0], [3.0], [1.0], [0.0]])
    est, count = M.lipschitz_discrete(gx, x, eps=2.5)
    # point 0: neighbours 1 (ratio 3/1) and 2 (1/2) -> 3; point 1: 0 (3) and 2 (2/sqrt 5) -> 3;
    # point 2: 0 (1/2) and 1 (2/sqrt 5 = 0.894) -> 0.894; point 3: none
    assert count.tolist() == [2, 2, 2, 0]
    assert est[:3].tolist() == pytest.approx([3.0, 3.0, 2 / 5 ** 0.5])
    assert torch.isnan(est[3])
    est, count = M.lipschitz_discrete(gx, x, eps=1.5)
    assert count.tolist() == [1, 1, 0, 0] and est[:2].tolist() == pytest.approx([3.0, 3.0])


def test_explainers_match_captum_and_are_differentiable():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net = M.CNN("softplus", 4, 4, 8).double().eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = S.predicted_class(net, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sal = captum.Saliency(net).attribute(x, t, abs=False)
        ixg = captum.InputXGradient(net).attribute(x, t)
        occ = captum.Occlusion(net).attribute(x, target=t, sliding_window_shapes=(1, 7, 7), strides=(1, 7, 7))
    assert torch.allclose(E.gradient_explainer("gradient", net, 8)(x, t), sal, atol=1e-12)
    assert torch.allclose(E.gradient_explainer("grad_x_input", net, 8)(x, t), ixg, atol=1e-12)
    g_occ = E.captum_explainer("occlusion", net, "mnist", {"occlusion_window": 7, "superpixel": 4})
    assert torch.allclose(g_occ(x, t), occ)
    occ = occ.double()  # captum returns float32 here
    # occlusion by hand: f(x) - f(x with one 7 x 7 patch zeroed), spread over the patch
    xz = x.clone()
    xz[:, :, :7, 7:14] = 0
    with torch.no_grad():
        drop = net(x).gather(1, t[:, None]) - net(xz).gather(1, t[:, None])
    assert torch.allclose(occ[:, 0, 3, 10], drop[:, 0], rtol=1e-5, atol=1e-6)
    # with a requires-grad input the gradient map is differentiable in x (smooth net)
    z = x.clone().requires_grad_(True)
    m = E.gradient_explainer("integrated_gradients", net, 6)(z, t)
    (gz,) = torch.autograd.grad(m.square().sum(), z)
    assert gz.abs().max() > 0


def test_senn_explainer_is_theta_of_the_target_class():
    model = tiny_mnist_senn()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    t = torch.tensor([1, 3])
    _, _, theta = model.parts(x)
    g = E.senn_explainer(model)(x, t)
    assert torch.equal(g, torch.stack([theta[0, :, 1], theta[1, :, 3]]))
