"""Schmidt et al.: the closed forms against brute-force simulation, the sqrt(d) rate, and
the binarisation layer."""

import itertools
import math

import numpy as np
import pytest
import torch

from papers.schmidt import method as M


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("d,n", [(400, 4), (100, 8)])
def test_gaussian_closed_form_matches_simulation(d, n):
    closed = M.gaussian_errors(d, [n], 0.5, 4000, gen(1))
    sim = M.gaussian_simulate(d, n, 0.5, trials=200, tests=400, generator=gen(2))
    # 80,000 test decisions over 200 training sets: the robust error's Monte Carlo sd is
    # dominated by the spread over training sets, below 0.02 here
    assert abs(closed["standard"][0] - sim["standard"]) < 0.015
    assert abs(closed["robust"][0] - sim["robust"]) < 0.03


def test_gaussian_matches_the_notes_measured_table():
    """Independent measurement in the research notes (30 draws per cell): d = 400, n = 4
    robust 0.484; d = 1600, n = 16 robust 0.208; standard ~0.16 at n = 1."""
    r400 = M.gaussian_errors(400, [1, 4], 0.5, 2000, gen(3))
    r1600 = M.gaussian_errors(1600, [16], 0.5, 2000, gen(4))
    assert abs(r400["robust"][1] - 0.484) < 0.03
    assert abs(r1600["robust"][0] - 0.208) < 0.03
    assert abs(r400["standard"][0] - 0.164) < 0.02


def test_robust_sample_size_grows_as_sqrt_d():
    """The issue's test: log n50 against log d has slope 0.5 +- 0.1."""
    dims = [100, 400, 1600, 6400]
    ns = sorted({max(1, round(v)) for v in np.geomspace(1, 256, 30)})
    n50 = [M.crossing(ns, M.gaussian_errors(d, ns, 0.5, 100, gen(d))["robust"]) for d in dims]
    assert abs(M.loglog_slope(dims, n50) - 0.5) <= 0.1


def test_majority_accuracy_by_enumeration():
    tau, p = 0.3, 0.65
    for n in (1, 2, 3, 4, 5):
        total = 0.0
        for votes in itertools.product([1, -1], repeat=n):
            prob = math.prod(p if v == 1 else 1 - p for v in votes)
            s = sum(votes)
            total += prob * (1.0 if s > 0 else 0.5 if s == 0 else 0.0)
        assert M.majority_accuracy(n, tau) == pytest.approx(total, abs=1e-12)


@pytest.mark.parametrize("d,n", [(100, 4), (400, 8)])
def test_bernoulli_exact_matches_simulation(d, n):
    tau = d ** -0.25
    exact = M.bernoulli_errors(d, [n], tau, tau / 2)
    sim = M.bernoulli_simulate(d, n, tau, tau / 2, trials=300, tests=300, generator=gen(5))
    assert abs(exact["standard"][0] - sim["standard"]) < 0.01
    assert abs(exact["robust_linear"][0] - sim["robust_linear"]) < 0.02
    # the simulation thresholds the attacked input itself: an independent check that the
    # thresholded rule's robust error is the clean error
    assert abs(exact["robust_thresholded"][0] - sim["robust_thresholded"]) < 0.01
    assert sim["robust_thresholded"] == pytest.approx(sim["standard"], abs=1e-12)


def test_bernoulli_rejects_eps_at_least_one():
    with pytest.raises(ValueError):
        M.bernoulli_errors(100, [1], 0.3, 1.0)


def test_crossing_interpolates_in_log_n():
    assert M.crossing([1, 4], [0.9, 0.1]) == pytest.approx(2.0)
    assert M.crossing([1, 4], [0.4, 0.1]) == 1.0
    assert math.isnan(M.crossing([1, 4], [0.9, 0.8]))


def test_loglog_slope_known_answer():
    xs = [1, 10, 100]
    assert M.loglog_slope(xs, [3 * x ** 0.5 for x in xs]) == pytest.approx(0.5)
    assert math.isnan(M.loglog_slope(xs, [1, 0, 2]))


def test_binarize_forward_threshold_backward_identity():
    x = torch.tensor([0.1, 0.5, 0.51, 0.9], requires_grad=True)
    y = M.Binarize()(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    (y * torch.arange(4.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_binarised_model_ignores_perturbations_that_cross_no_threshold():
    torch.manual_seed(0)
    model = M.SmallCNN(binarize=True).eval()
    x = (torch.rand(8, 1, 28, 28) > 0.7).float()          # binary images, like most MNIST pixels
    delta = 0.3 * (torch.rand_like(x) * 2 - 1)
    x_adv = (x + delta).clamp(0, 1)
    with torch.no_grad():
        assert torch.equal(model(x), model(x_adv))
    # a standard model does see them
    plain = M.SmallCNN(binarize=False).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x), plain(x_adv))
