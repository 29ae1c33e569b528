"""The lecture's toy topics against independent answers: scipy's densities,
brute-force Jacobians, Monte Carlo estimates of the closed-form kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from papers.uncertainty import aleatoric as A
from papers.uncertainty import flows as F
from papers.uncertainty import infinite as I
from papers.uncertainty import mdn as M


def test_gaussian_nll_equals_scipy():
    g = torch.Generator().manual_seed(0)
    y, mu, log_sigma = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    ours = A.gaussian_nll(y, mu, log_sigma).numpy()
    ref = -stats.norm.logpdf(y.numpy(), mu.numpy(), np.exp(log_sigma.numpy()))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_mixture_log_density_equals_scipy():
    g = torch.Generator().manual_seed(1)
    n, k = 40, 4
    t = torch.randn(n, 1, generator=g, dtype=torch.float64)
    log_pi = torch.log_softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    mu = torch.randn(n, k, generator=g, dtype=torch.float64)
    log_sigma = 0.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    ours = M.mixture_log_density(t, log_pi, mu, log_sigma).numpy()
    ref = np.log((np.exp(log_pi.numpy()) * stats.norm.pdf(t.numpy(), mu.numpy(), np.exp(log_sigma.numpy()))).sum(1))
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    # a grid of targets per row gives the same values column by column
    grid = torch.stack([t.squeeze(1), t.squeeze(1) + 1], 1)
    both = M.mixture_log_density(grid, log_pi, mu, log_sigma)
    np.testing.assert_allclose(both[:, 0].numpy(), ours, rtol=1e-12)


def test_true_conditional_is_bayes_rule():
    """p(x|y) on the grid integrates to 1 and its mean matches the Monte Carlo
    E[x | y in a narrow bin] of samples from the generating process."""
    cfg = M.mdn_setup()
    xs = torch.linspace(0, 1, 2001)
    x, y = M.sample(400000, cfg, torch.Generator().manual_seed(2))
    y0 = torch.tensor([[0.5]])
    dens = M.true_conditional(y0, xs, cfg)
    assert abs(dens.sum().item() * (xs[1] - xs[0]).item() - 1) < 1e-9
    mean = (dens * xs).sum().item() * (xs[1] - xs[0]).item()
    sel = (y - 0.5).abs() < 0.005
    assert sel.sum() > 1000
    assert abs(x[sel].mean().item() - mean) < 0.01


def test_point_on_branch_counts_density_ratio():
    xs = torch.linspace(0, 1, 11)
    dens = torch.tensor([[0, 0, 1, 4, 1, 0, 0, 0, 3, 0, 0.]])
    assert M.on_branch_fraction(torch.tensor([[0.3]]), dens, xs) == 1.0   # at the max
    assert M.on_branch_fraction(torch.tensor([[0.8]]), dens, xs) == 1.0   # 3 >= 0.5 * 4
    assert M.on_branch_fraction(torch.tensor([[0.55]]), dens, xs) == 0.0  # between the branches


def _random_flow(seed=0, std=0.3):
    torch.manual_seed(seed)
    flow = F.RealNVP(6, 16).double()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=std)
    return flow


def test_flow_log_det_equals_brute_force_jacobian():
    flow = _random_flow()
    x = torch.randn(8, 2, dtype=torch.float64)
    _, log_det = flow.to_latent(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v.unsqueeze(0))[0].squeeze(0), x[i])
        assert torch.linalg.slogdet(jac)[1].item() == pytest.approx(log_det[i].item(), abs=1e-9)


def test_flow_round_trip_and_normalisation():
    flow = _random_flow(1, std=0.15)
    x = torch.randn(500, 2, dtype=torch.float64)
    assert (flow.from_latent(flow.to_latent(x)[0]) - x).abs().max() < 1e-10
    axis = torch.linspace(-10, 10, 501, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    with torch.no_grad():
        mass = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.01)


def test_untrained_flow_is_the_base_density():
    """Zero-initialised output layers: the flow starts as the identity, so its
    log-density is the standard normal's (scipy)."""
    flow = F.RealNVP(4, 8)
    x = torch.randn(20, 2)
    ref = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(x.numpy())
    np.testing.assert_allclose(flow.log_prob(x).detach().numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["moons", "eight_gaussians", "checkerboard"])
def test_target_density_normalised_and_matches_its_sampler(name):
    axis = torch.linspace(-4, 4, 241)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    dens = F.target_log_prob(name, pts, n_quad=400).double().exp()
    cell = (axis[1] - axis[0]).item() ** 2
    assert dens.sum().item() * cell == pytest.approx(1.0, abs=0.02)
    # the sampler draws from the same density: histogram vs density on a coarse grid
    x = F.sample_target(name, 400000, torch.Generator().manual_seed(3)).double()
    edges = np.linspace(-2.5, 2.5, 11)
    hist, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=[edges, edges])
    hist = hist / len(x)
    per = 10  # midpoints per bin and axis
    fine = torch.linspace(-2.5, 2.5, 10 * per + 1)
    mid = (fine[:-1] + fine[1:]) / 2
    fx, fy = torch.meshgrid(mid, mid, indexing="ij")
    fd = F.target_log_prob(name, torch.stack([fx.flatten(), fy.flatten()], 1), n_quad=400).double().exp()
    df = (fine[1] - fine[0]).item()
    mass = fd.reshape(10, per, 10, per).sum((1, 3)).numpy() * df * df
    assert np.abs(hist - mass).max() < 0.01


def test_gaussian_fit_nll_is_the_mle():
    g = torch.Generator().manual_seed(4)
    train = torch.randn(3000, 2, generator=g) @ torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    ours = F.gaussian_fit_nll(train, train)
    ref = -stats.multivariate_normal(train.double().mean(0).numpy(),
                                     np.cov(train.double().numpy().T, bias=True)).logpdf(train.numpy()).mean()
    assert ours == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("act", ["erf", "relu", "tanh"])
def test_kernel_matches_monte_carlo(act):
    """C(x, x') = E[h(x) h(x')] against 10^6 draws of (a, u)."""
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 2.5])
    ker = I.analytic_kernel(act, x, 1.3, 0.7)
    g = torch.Generator().manual_seed(5)
    h = I.hidden_features(act, x, 1, 1000000, 1.3, 0.7, g).double()[0]
    mc = h.T @ h / len(h)
    assert torch.allclose(ker, mc, atol=4e-3 * ker.abs().max().item())


def test_erf_kernel_against_quadrature():
    """Williams' closed form against the same 2-D quadrature used for tanh."""
    x = torch.linspace(-2, 2, 7)
    nodes, weights = np.polynomial.hermite_e.hermegauss(150)
    z, w = torch.tensor(nodes), torch.tensor(weights / math.sqrt(2 * math.pi))
    h = torch.erf(0.8 * z[:, None, None] + 1.0 * z[None, :, None] * x.double())
    quad = torch.einsum("abp,abq->pq", h * (w[:, None] * w[None, :])[..., None], h)
    assert torch.allclose(I.analytic_kernel("erf", x, 1.0, 0.8), quad, atol=1e-5)


@pytest.mark.parametrize("act", ["erf", "relu", "tanh"])
def test_hidden_moments(act):
    m2, m4 = I.moments(act, 1.7)
    z = torch.randn(2000000, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * math.sqrt(1.7)
    h = I.ACTS[act](z)
    assert m2 == pytest.approx(h.pow(2).mean().item(), rel=0.01)
    assert m4 == pytest.approx(h.pow(4).mean().item(), rel=0.03)


def test_prior_functions_variance():
    """Var f(x) = sigma_b^2 + omega_v^2 E h(x)^2 at any width (here 3)."""
    cfg = dict(I.infinite_setup(), sigma_b=0.5, omega_v=2.0, sigma_u=1.0, sigma_a=1.0)
    x = torch.tensor([1.0])
    f = I.prior_functions("relu", x, 400000, 3, cfg, torch.Generator().manual_seed(7)).double()
    assert f.var().item() == pytest.approx(0.25 + 4.0 * 2.0 / 2, rel=0.02)
