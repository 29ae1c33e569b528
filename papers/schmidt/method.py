"""Schmidt, Santurkar, Tsipras, Talwar & Madry, "Adversarially robust generalization
requires more data" (NeurIPS 2018): the two data models of §2-§4 in closed form, and the
pieces of the MNIST experiment (a small CNN, an input-binarisation layer).

Gaussian model (§2): y uniform on {-1, +1}, x ~ N(y theta*, sigma^2 I_d), with
||theta*||_2 = sqrt(d) (here theta* = 1) and sigma = d^(1/4).  The averaging classifier
w = (1/n) sum_j y_j x_j is distributed as N(theta*, sigma^2/n I).  Given w, the linear rule
sign(w.x) has (exactly)

    standard error       Phi(-w.theta* / (sigma ||w||_2))
    l_inf-robust error   Phi((eps ||w||_1 - w.theta*) / (sigma ||w||_2))

(the worst perturbation is delta = -eps y sign(w), which lowers the margin by
eps ||w||_1).  The expectation over training sets is an average of these over draws of
w (``gaussian_errors``).

Bernoulli model (§4): theta* in {-1, +1}^d (here all +1: every rule below is
sign-equivariant, so this is no loss), each coordinate of x equals y theta*_i with
probability (1 + tau) / 2 and -y theta*_i otherwise.  Our linear classifier: the
coordinate-wise majority vote w_i = sign(sum_j y_j x_ji) (ties broken by a fair coin; our
choice, it makes the error an exact binomial sum).  The coordinates are independent and
identically distributed, so over the joint draw of training set and test point
S = y w.x = sum_i t_i with t_i iid +-1, P(t_i = +1) = r = q p + (1 - q)(1 - p), where
p = (1 + tau)/2 and q = P(w_i = theta*_i) is the majority vote's accuracy.  Hence, exactly,

    standard error       P(S < 0) + P(S = 0)/2,            S = 2 Bin(d, r) - d
    robust error         P(S < eps d) + P(S = eps d)/2      (||w||_1 = d; linear rule)
    thresholded, robust  = standard error for eps < 1: sign(x + delta) = x on {-1, +1}^d

(``bernoulli_errors``).  This is the paper's point that the gap depends on the model
class: the thresholded (non-linear) rule is as robust as it is accurate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from scipy import stats


# ---------------------------------------------------------------- Gaussian model


def gaussian_conditional_errors(w: torch.Tensor, eps: float, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact standard and l_inf-robust errors of sign(w.x) under the Gaussian model with
    theta* = 1, for each row of ``w`` (shape (..., d))."""
    normal = torch.distributions.Normal(0.0, 1.0)
    margin = w.sum(-1)                      # w . theta* with theta* = 1
    scale = sigma * w.norm(dim=-1)
    std = normal.cdf(-margin / scale)
    rob = normal.cdf((eps * w.abs().sum(-1) - margin) / scale)
    return std, rob


def gaussian_errors(d: int, ns, eps: float, draws: int, generator: torch.Generator,
                    sigma: float | None = None) -> dict:
    """Expected standard / robust error of the averaging classifier for each n in ``ns``:
    the exact conditional errors averaged over ``draws`` training sets, drawn through
    w = theta* + (sigma / sqrt(n)) z (the same z for every n: common random numbers, so
    the curve in n is smooth).  Float64."""
    sigma = d ** 0.25 if sigma is None else sigma
    z = torch.randn(draws, d, generator=generator, dtype=torch.float64)
    std, rob = [], []
    for n in ns:
        w = 1.0 + (sigma / math.sqrt(n)) * z
        s, r = gaussian_conditional_errors(w, eps, sigma)
        std.append(s.mean().item())
        rob.append(r.mean().item())
    return {"n": [int(n) for n in ns], "standard": std, "robust": rob}


def crossing(ns, errors, level: float = 0.5) -> float:
    """The (log-linearly interpolated) n at which a decreasing error curve first drops
    to ``level``; nan if it never does, ns[0] if it starts below."""
    ns, errors = np.asarray(ns, float), np.asarray(errors, float)
    if errors[0] <= level:
        return float(ns[0])
    below = np.nonzero(errors <= level)[0]
    if len(below) == 0:
        return float("nan")
    i = below[0]
    x0, x1 = math.log(ns[i - 1]), math.log(ns[i])
    e0, e1 = errors[i - 1], errors[i]
    return float(math.exp(x0 + (e0 - level) / (e0 - e1) * (x1 - x0)))


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y against log x (nan if any y is not positive/finite)."""
    xs, ys = np.log(np.asarray(xs, float)), np.asarray(ys, float)
    if not np.all(np.isfinite(ys)) or np.any(ys <= 0):
        return float("nan")
    return float(np.polyfit(xs, np.log(ys), 1)[0])


def gaussian_lower_bound_n(d: int, eps: float) -> float:
    """The shape of the paper's information-theoretic lower bound for l_inf-robust learning
    in the Gaussian model, eps^2 sqrt(d) / log d (constants not verified: drawn as a shape
    reference only)."""
    return eps ** 2 * math.sqrt(d) / math.log(d)


# ---------------------------------------------------------------- Bernoulli model


def majority_accuracy(n: int, tau: float) -> float:
    """P(sign(sum of n iid +-1 votes with P(+1) = (1 + tau)/2) = +1), a tie counting 1/2."""
    p = (1 + tau) / 2
    k = np.arange(n + 1)
    pmf = stats.binom.pmf(k, n, p)
    return float(pmf[2 * k > n].sum() + 0.5 * pmf[2 * k == n].sum())


def _sum_below(d: int, r: float, threshold: float) -> float:
    """P(S < threshold) + P(S = threshold)/2 for S = 2 Bin(d, r) - d."""
    k = np.arange(d + 1)
    s = 2 * k - d
    pmf = stats.binom.pmf(k, d, r)
    return float(pmf[s < threshold].sum() + 0.5 * pmf[np.isclose(s, threshold)].sum())


def bernoulli_errors(d: int, ns, tau: float, eps: float) -> dict:
    """Exact expected errors in the Bernoulli model (module docstring) for each n:
    the majority-vote linear rule's standard and l_inf-robust error, and the thresholded
    rule's robust error (eps < 1 required)."""
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1) for the thresholded rule, not {eps}")
    p = (1 + tau) / 2
    std, rob, thr = [], [], []
    for n in ns:
        q = majority_accuracy(int(n), tau)
        r = q * p + (1 - q) * (1 - p)
        s = _sum_below(d, r, 0.0)
        std.append(s)
        rob.append(_sum_below(d, r, eps * d))
        thr.append(s)   # sign(x + delta) = x for ||delta||_inf < 1: the clean error
    return {"n": [int(n) for n in ns], "standard": std, "robust_linear": rob,
            "robust_thresholded": thr}


def bernoulli_simulate(d: int, n: int, tau: float, eps: float, trials: int, tests: int,
                       generator: torch.Generator) -> dict:
    """Brute-force check of ``bernoulli_errors``: draw training sets and test points, fit
    the majority vote, attack every test point with its worst l_inf perturbation
    delta = -eps y sign(w) and classify the perturbed point with the linear rule and with
    the thresholded rule sign(w . sign(x + delta))."""
    p = (1 + tau) / 2
    errs = {"standard": 0.0, "robust_linear": 0.0, "robust_thresholded": 0.0}

    def draw(count):
        y = torch.randint(0, 2, (trials, count, 1), generator=generator).double() * 2 - 1
        flip = torch.rand(trials, count, d, generator=generator, dtype=torch.float64) < p
        return y, y * (flip.double() * 2 - 1)

    y_tr, x_tr = draw(n)
    votes = (y_tr * x_tr).sum(1)                                       # (trials, d)
    coin = torch.randint(0, 2, votes.shape, generator=generator).double() * 2 - 1
    w = torch.where(votes == 0, coin, votes.sign())
    y, x = draw(tests)
    delta = -eps * y * w[:, None, :].sign()

    def error(scores):  # sign(score) vs y, a zero score counting 1/2
        m = y[..., 0] * scores
        return ((m < 0).double() + 0.5 * (m == 0).double()).mean().item()

    errs["standard"] = error((x * w[:, None]).sum(-1))
    errs["robust_linear"] = error(((x + delta) * w[:, None]).sum(-1))
    errs["robust_thresholded"] = error(((x + delta).sign() * w[:, None]).sum(-1))
    return errs


def gaussian_simulate(d: int, n: int, eps: float, trials: int, tests: int,
                      generator: torch.Generator) -> dict:
    """Brute-force check of the Gaussian closed forms: sample training sets, fit the
    averaging classifier, attack sampled test points with delta = -eps y sign(w)."""
    sigma = d ** 0.25
    y_tr = torch.randint(0, 2, (trials, n, 1), generator=generator).double() * 2 - 1
    x_tr = y_tr + sigma * torch.randn(trials, n, d, generator=generator, dtype=torch.float64)
    w = (y_tr * x_tr).mean(1)
    y = torch.randint(0, 2, (trials, tests, 1), generator=generator).double() * 2 - 1
    x = y + sigma * torch.randn(trials, tests, d, generator=generator, dtype=torch.float64)
    delta = -eps * y * w[:, None, :].sign()
    std = ((y[..., 0] * (x * w[:, None]).sum(-1)) < 0).double().mean().item()
    rob = ((y[..., 0] * ((x + delta) * w[:, None]).sum(-1)) < 0).double().mean().item()
    return {"standard": std, "robust": rob}


# ---------------------------------------------------------------- MNIST pieces


class _StraightThroughBinarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold):
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Binarize(nn.Module):
    """x -> 1[x > threshold], the paper's thresholding of MNIST inputs.  Its backward
    pass is the identity (straight-through, i.e. BPDA): without it the layer has zero
    gradient everywhere and every gradient attack would fail for a reason that is not
    robustness."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        return _StraightThroughBinarize.apply(x, self.threshold)


class SmallCNN(nn.Module):
    """A small MNIST CNN (conv 4x4/2 (16) - conv 4x4/2 (32) - fc 100 - 10, ReLU), about
    0.17M parameters; cheap enough to adversarially train 30 times per run on a CPU.
    ``binarize``: threshold the input first (``Binarize``)."""

    def __init__(self, binarize: bool = False, width: int = 16, hidden: int = 100):
        super().__init__()
        self.pre = Binarize() if binarize else nn.Identity()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(self.pre(x))
