"""The epistemic topic's pieces against independent computations: BBB's closed-form
KL vs torch.distributions, the Gaussian NLL vs scipy, MC dropout's stochastic eval
vs the deterministic plain eval, the stacked-weight ensemble vs a per-member loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch.distributions import Normal, kl_divergence

from papers.uncertainty import epistemic as E


def test_bbb_kl_matches_torch_distributions():
    torch.manual_seed(0)
    model = E.BayesMLP((3, 5, 2), prior_sigma=0.3, rho_init=-2.0)
    with torch.no_grad():  # posterior sigmas that differ per weight
        for r in [*model.rho_w, *model.rho_b]:
            r.copy_(torch.randn_like(r))
    want = sum(kl_divergence(Normal(mu, sig), Normal(torch.zeros_like(mu), 0.3 * torch.ones_like(mu))).sum()
               for mu, sig in model.posterior())
    assert model.kl().item() == pytest.approx(want.item(), rel=1e-6)
    # and a Monte-Carlo estimate E_q[log q - log p] agrees within its error
    mcs = []
    for mu, sig in model.posterior():
        w = mu + sig * torch.randn(20000, *mu.shape)
        mcs.append((Normal(mu, sig).log_prob(w) - Normal(0.0, 0.3).log_prob(w)).flatten(1).sum(1))
    mc = torch.stack(mcs).sum(0)
    assert abs(mc.mean().item() - want.item()) < 4 * mc.std().item() / math.sqrt(len(mc)) + 1e-3


def test_bbb_sigma_is_softplus_rho_and_samples_vary():
    torch.manual_seed(1)
    model = E.BayesMLP((4, 6, 3), rho_init=-3.0)
    assert torch.allclose(model.posterior()[0][1], F.softplus(torch.tensor(-3.0)).expand(4, 6))
    x = torch.randn(7, 4)
    out = model(x, samples=5)
    assert out.shape == (5, 7, 3)
    assert (out[0] - out[1]).abs().max() > 1e-4  # independent weight draws per sample
    with torch.no_grad():  # sigma -> 0: every draw is the mean network
        for r in [*model.rho_w, *model.rho_b]:
            r.fill_(-60.0)
    out = model(x, samples=3)
    mean_net = F.linear(F.relu(F.linear(x, model.mu_w[0].T, model.mu_b[0])), model.mu_w[1].T, model.mu_b[1])
    assert torch.allclose(out, mean_net.expand(3, -1, -1), atol=1e-6)


def test_mc_dropout_varies_plain_eval_is_deterministic():
    torch.manual_seed(2)
    model = E.MLP((5, 32, 32, 2), p=0.5).eval()
    x = torch.randn(10, 5)
    a, b = model(x), model(x)
    assert torch.equal(a, b)  # eval mode: dropout off
    s = E.mc_dropout_samples(model, x, 8)
    assert s.shape == (8, 10, 2)
    assert (s[0] - s[1]).abs().max() > 1e-3  # dropout kept on at test time
    assert not model.training  # MC sampling did not flip the module to train mode
    plain = E.MLP((5, 32, 32, 2), p=0.0).eval()
    assert torch.equal(E.mc_dropout_samples(plain, x, 3)[0], E.mc_dropout_samples(plain, x, 3)[2])
    # where the ReLU is the identity (positive pre-activations), the MC mean is unbiased for
    # the standard (weight-scaled) eval output: agree within 5 standard errors
    lin = E.MLP((5, 200, 1), p=0.5).eval()
    with torch.no_grad():
        lin.layers[0].bias.fill_(10.0)
        lin.layers[0].weight.mul_(0.01)
        s = E.mc_dropout_samples(lin, x, 4000)
        se = s.std(0) / math.sqrt(len(s))
        assert ((s.mean(0) - lin(x)).abs() < 5 * se).all()
        assert (s.std(0) > 0.1).all()


def test_ensemble_stacked_equals_member_loop():
    torch.manual_seed(3)
    ens = E.EnsembleMLP(4, (6, 8, 3))
    x = torch.randn(9, 6)
    out = ens(x)
    for m in range(4):
        h = F.relu(x @ ens.weights[0][m] + ens.biases[0][m])
        assert torch.allclose(out[m], h @ ens.weights[1][m] + ens.biases[1][m], atol=1e-6)
    per_member = torch.randn(4, 9, 6)  # each member its own batch
    out = ens(per_member)
    h = F.relu(per_member[2] @ ens.weights[0][2] + ens.biases[0][2])
    assert torch.allclose(out[2], h @ ens.weights[1][2] + ens.biases[1][2], atol=1e-6)


def test_gaussian_nll_matches_scipy():
    y = torch.tensor([0.0, 1.5, -2.0, 0.3], dtype=torch.float64)
    mean = torch.tensor([0.1, 1.0, -1.0, 0.3], dtype=torch.float64)
    var = torch.tensor([1.0, 0.25, 4.0, 0.01], dtype=torch.float64)
    want = -norm.logpdf(y.numpy(), loc=mean.numpy(), scale=var.sqrt().numpy())
    assert E.gaussian_nll(y, mean, var).numpy() == pytest.approx(want, rel=1e-12)
    assert E.gaussian_nll(y, mean, 0.04).numpy() == pytest.approx(
        -norm.logpdf(y.numpy(), loc=mean.numpy(), scale=0.2), rel=1e-12)


def test_complexity_term_is_kl_over_n():
    torch.manual_seed(4)
    model = E.BayesMLP((2, 3, 1))
    assert E.kl_per_example("bbb", model, 50).item() == pytest.approx(model.kl().item() / 50)
    assert E.kl_per_example("mc_dropout", E.MLP((2, 3, 1)), 50) == 0.0


def test_gap_data_and_regions():
    x, y = E.gap_data(500, 0.3, 0.1, torch.Generator().manual_seed(0))
    assert ((x.abs() >= 0.3) & (x.abs() <= 1.0)).all()
    resid = y - E.true_function(x)
    assert 0.08 < resid.std().item() < 0.12
    r = E.regions(torch.linspace(-2, 2, 401), 0.3)
    assert not (r["data"] & r["gap"]).any() and not (r["data"] & r["far"]).any()
