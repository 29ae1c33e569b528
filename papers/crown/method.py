"""Certified robustness of MLPs by linear bound propagation: interval bounds (IBP),
Fast-Lin (Weng et al., ICML 2018), CROWN-Ada and CROWN-general (Zhang, Weng, Chen,
Hsieh & Daniel, "Efficient Neural Network Robustness Certification with General
Activation Functions", NeurIPS 2018, arXiv 1811.00866), the global-Lipschitz baseline
and the certified radius by the official bisection on eps.

The network f(x) = W_m s(... s(W_1 x + b_1) ...) + b_m is held as an ``MLP`` (weights,
biases, activation).  Every bound is for a *specification* C (B, r, classes): the
margin f_true - f_target is the row e_true - e_target, used directly as the last linear
layer (CROWN §3.1: bounding the logits separately is much looser).  Each of the B
instances has its own centre x0, radius eps and spec, so images *and* targets are one
batch; nothing loops over images in Python.

- Relaxations (CROWN §3.2-3.3, Table 1): on [l, u] each neuron gets two lines
  aL*y + bL <= s(y) <= aU*y + bU.  ReLU, unstable (l < 0 < u): upper chord through
  (l, 0) and (u, u); lower line through the origin with slope u/(u-l) (Fast-Lin) or,
  CROWN-Ada, slope 1 if u > -l else 0 (official ``relu_lb_pn``: |u| > |l|).  Stable
  neurons are exact.  S-shaped activations (tanh, sigmoid, arctan: convex for y < 0,
  concave for y > 0): u <= 0: upper chord, lower tangent at (l+u)/2; l >= 0 the mirror;
  l < 0 < u: the upper line is the tangent at d >= 0 that passes through (l, s(l)),
  s'(d) = (s(d) - s(l))/(d - l), the lower one the tangent at d <= 0 through (u, s(u));
  d is found by bisection (``tangent_point``) and the end of the final bracket on the
  sound side is used, so the line is valid whatever the bisection's accuracy; where no
  such d lies inside [l, u] the chord is used (it is then valid: see ``s_shaped``).
  The official code (general_fit.py) uses 10 bisection steps and shifts the line by
  0.01 of its slope for safety; we bisect 40 steps (float64: 1e-12 of the bracket) and
  need no shift.
- Back-substitution (CROWN Theorem 3.2): Lambda starts as the spec rows, goes back
  through W_k and through each relaxation, picking per entry the lower (upper) line
  where the coefficient is positive (negative), accumulating the intercepts; at the
  input, min over the lp ball of Lambda x + Delta is Lambda x0 - eps ||Lambda||_q + Delta,
  1/p + 1/q = 1 (linf <-> l1, l2 <-> l2, l1 <-> linf).  Pre-activation bounds of every
  hidden layer come from the same procedure on the truncated net (upper = -lower(-I)).
- ``fastlin_forward``: Fast-Lin's own closed form (Weng et al. 2018, Theorem 3.5), the
  products W_k D_{k-1} ... built forward, the slack of each unstable ReLU kept as its own
  term.  It is the same bound as the back-substitution with Fast-Lin's slopes, computed
  another way (tests/test_crown.py checks they agree).
- ``global_lipschitz_radius``: margin / (||c^T W_m||_q prod_k ||W_k||_{p->p} * L_s^(m-1)),
  the product of operator norms (L_s = 1 for ReLU, tanh, arctan, 1/4 for sigmoid).
- ``certified_radius``: the official main.py search, per instance: eps starts at 0.005,
  x10 while certified and /10 while not until bracketed, then bisection; at most 15
  evaluations, stopping when the bracket is below 1e-5; the answer is the largest
  certified eps (0 if none).  (main.py also stops early when the margin bound is
  positive but below 0.01; we do not, so the answer is the bracket's own precision.)

The ball is *not* clipped to the [0, 1] image box, as in the original: the certificate
holds for the whole lp ball, a superset of the ball inside the box, so it is also a
certificate for images; attacks (which do stay in the box) can only find larger radii.

Reference code whose details were followed (read, not copied):
IBM/CROWN-Robustness-Certification main.py (search), general_fit.py (case table and
ReLU slopes), get_bounds_ours.py (layer-by-layer bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "arctan": None}
NORMS = {"linf": math.inf, "l2": 2.0, "l1": 1.0}
DUAL = {"linf": 1.0, "l2": 2.0, "l1": math.inf}
METHODS = ("ibp", "fastlin", "crown")


class Arctan(nn.Module):
    def forward(self, x):
        return torch.atan(x)


def make_mlp(hidden: tuple[int, ...], activation: str, d_in: int = 784, classes: int = 10) -> nn.Sequential:
    """Flatten, then Linear-activation blocks of the given widths, then the logit layer."""
    layers, prev = [nn.Flatten()], d_in
    for h in hidden:
        act = Arctan() if activation == "arctan" else ACTIVATIONS[activation]()
        layers += [nn.Linear(prev, h), act]
        prev = h
    layers.append(nn.Linear(prev, classes))
    return nn.Sequential(*layers)


@dataclass
class MLP:
    """Weights (out, in) and biases of every linear layer, and the hidden activation."""
    weights: list
    biases: list
    activation: str

    @classmethod
    def from_module(cls, model: nn.Sequential, activation: str, dtype=torch.float32) -> "MLP":
        lin = [m for m in model if isinstance(m, nn.Linear)]
        return cls([m.weight.detach().to(dtype) for m in lin], [m.bias.detach().to(dtype) for m in lin],
                   activation)


# ------------------------------------------------------------------ activations


def act_fn(name: str):
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "arctan": torch.atan}[name]


def act_grad(name: str, y):
    if name == "tanh":
        return 1 - torch.tanh(y) ** 2
    if name == "sigmoid":
        s = torch.sigmoid(y)
        return s * (1 - s)
    if name == "arctan":
        return 1 / (1 + y * y)
    raise ValueError(f"no smooth derivative for {name!r}")


def tangent_point(name: str, l, u, upper: bool, iters: int = 40):
    """For l < 0 < u: the tangent point d of the line through (l, s(l)) (``upper``;
    d in [0, u]) or (u, s(u)) (lower; d in [l, 0]), s'(d) = (s(d) - s(end)) / (d - end),
    by bisection.  Returns (d, found): ``d`` is the end of the final bracket on the
    sound side (the tangent there still bounds s on [l, u]); ``found`` is False where
    the equation has no root inside [l, u] (the chord is the bound there)."""
    s = act_fn(name)
    end = l if upper else u
    s_end = s(end)

    def gap(d):  # > 0 on the sound side of the root (towards the far end of the interval)
        return (s(d) - s_end) / (d - end) - act_grad(name, d)

    # The root lies between 0 (gap <= 0) and the far end (u for the upper line, l for
    # the lower one; gap > 0 there when a root exists); keep the bracket end on the sound side.
    sound = (u if upper else l).clone()
    other = torch.zeros_like(sound)
    found = gap(sound) > 0
    for _ in range(iters):
        mid = (sound + other) / 2
        pos = gap(mid) > 0
        sound, other = torch.where(pos, mid, sound), torch.where(pos, other, mid)
    return sound, found


def s_shaped(name: str, l, u):
    """CROWN-general lines (aL, bL, aU, bU) for an S-shaped activation on [l, u].

    The chord is valid as the upper line on a mixed interval when the tangent
    equation has no root in [0, u]: then the chord minus s is convex on [0, u] and
    decreasing there (its slope at u is already negative), so >= 0 on [0, u], and
    concave on [l, 0] with both ends >= 0; mirrored for the lower line."""
    s = act_fn(name)
    sl, su = s(l), s(u)
    width = u - l
    mid = (l + u) / 2
    tiny = width <= 1e-12
    chord_a = torch.where(tiny, act_grad(name, mid), (su - sl) / torch.where(tiny, torch.ones_like(width), width))
    chord_b = sl - chord_a * l
    tan_a = act_grad(name, mid)
    tan_b = s(mid) - tan_a * mid
    conv, conc = u <= 0, l >= 0
    mixed = ~(conv | conc)
    # mixed interval: tangents through an end point, or the chord
    dU, fU = tangent_point(name, torch.where(mixed, l, -torch.ones_like(l)),
                           torch.where(mixed, u, torch.ones_like(u)), upper=True)
    dL, fL = tangent_point(name, torch.where(mixed, l, -torch.ones_like(l)),
                           torch.where(mixed, u, torch.ones_like(u)), upper=False)
    aU_mix = torch.where(fU, act_grad(name, dU), chord_a)
    bU_mix = torch.where(fU, s(dU) - act_grad(name, dU) * dU, chord_b)
    aL_mix = torch.where(fL, act_grad(name, dL), chord_a)
    bL_mix = torch.where(fL, s(dL) - act_grad(name, dL) * dL, chord_b)
    aU = torch.where(conv, chord_a, torch.where(conc, tan_a, aU_mix))
    bU = torch.where(conv, chord_b, torch.where(conc, tan_b, bU_mix))
    aL = torch.where(conv, tan_a, torch.where(conc, chord_a, aL_mix))
    bL = torch.where(conv, tan_b, torch.where(conc, chord_b, bL_mix))
    return aL, bL, aU, bU


def relu_lines(l, u, lower: str = "adaptive"):
    """ReLU lines (aL, bL, aU, bU) on [l, u]; ``lower`` slope of unstable neurons:
    "adaptive" (CROWN-Ada), "fastlin" (= the upper slope), or "zero" / "one"."""
    unstable = (l < 0) & (u > 0)
    active = l >= 0
    slope = torch.where(unstable, u / torch.where(unstable, u - l, torch.ones_like(u)),
                        active.to(u.dtype))
    aU, bU = slope, torch.where(unstable, -l * slope, torch.zeros_like(l))
    if lower == "adaptive":
        low = (u > -l).to(u.dtype)
    elif lower == "fastlin":
        low = slope
    elif lower in ("zero", "one"):
        low = torch.full_like(u, 0.0 if lower == "zero" else 1.0)
    else:
        raise ValueError(f"unknown ReLU lower slope {lower!r}")
    aL = torch.where(unstable, low, active.to(u.dtype))
    return aL, torch.zeros_like(l), aU, bU


def relaxation(net: MLP, l, u, method: str):
    if net.activation == "relu":
        return relu_lines(l, u, "fastlin" if method == "fastlin" else "adaptive")
    if method == "fastlin":
        raise ValueError("Fast-Lin is defined for ReLU networks only (use crown)")
    return s_shaped(net.activation, l, u)


# ------------------------------------------------------------------ back-substitution


def _dual_norm(lam, norm: str):
    q = DUAL[norm]
    if q == 1.0:
        return lam.abs().sum(-1)
    if q == 2.0:
        return lam.norm(dim=-1)
    return lam.abs().amax(-1)


def backsubstitute(net: MLP, k: int, A, relax: list, x0, eps, norm: str):
    """Lower bound of A y_k over the ball, y_k the k-th linear layer's output
    (k = 1..m), A (B, r, n_k), ``relax[j]`` the lines of hidden layer j+1."""
    lam = A
    const = lam @ net.biases[k - 1]
    lam = lam @ net.weights[k - 1]
    for j in range(k - 1, 0, -1):
        aL, bL, aU, bU = relax[j - 1]
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        const = const + (pos * bL.unsqueeze(1)).sum(-1) + (neg * bU.unsqueeze(1)).sum(-1)
        lam = pos * aL.unsqueeze(1) + neg * aU.unsqueeze(1)
        const = const + lam @ net.biases[j - 1]
        lam = lam @ net.weights[j - 1]
    center = (lam @ x0.unsqueeze(-1)).squeeze(-1)
    return center - eps.unsqueeze(-1) * _dual_norm(lam, norm) + const


def first_layer(net: MLP, x0, eps, norm: str):
    """Exact bounds of W_1 x + b_1 over the ball."""
    y = x0 @ net.weights[0].T + net.biases[0]
    r = eps.unsqueeze(-1) * _dual_norm(net.weights[0], norm).unsqueeze(0)
    return y - r, y + r


def preactivation_bounds(net: MLP, x0, eps, norm: str, method: str):
    """(l, u) and the relaxation of every hidden layer, by ``method`` in METHODS."""
    bounds, relax = [], []
    for k in range(1, len(net.weights)):
        if k == 1:
            l, u = first_layer(net, x0, eps, norm)
        elif method == "ibp":
            zl, zu = act_fn(net.activation)(bounds[-1][0]), act_fn(net.activation)(bounds[-1][1])
            l, u = _interval_linear(net.weights[k - 1], net.biases[k - 1], zl, zu)
        else:
            n = net.weights[k - 1].shape[0]
            eye = torch.eye(n, dtype=x0.dtype, device=x0.device).expand(len(x0), n, n)
            both = backsubstitute(net, k, torch.cat([eye, -eye], 1), relax, x0, eps, norm)
            l, u = both[:, :n], -both[:, n:]
        bounds.append((l, u))
        if method != "ibp":
            relax.append(relaxation(net, l, u, method))
    return bounds, relax


def _interval_linear(W, b, zl, zu):
    mid, rad = (zu + zl) / 2, (zu - zl) / 2
    c = mid @ W.T + b
    r = rad @ W.abs().T
    return c - r, c + r


def lower_bound(net: MLP, x0, eps, C, norm: str, method: str):
    """Lower bound of C f(x) over the lp ball of radius eps (B,) around x0 (B, d);
    C (B, r, classes); ``method`` in METHODS.  Returns (B, r)."""
    bounds, relax = preactivation_bounds(net, x0, eps, norm, method)
    m = len(net.weights)
    if method == "ibp":
        if m == 1:
            return backsubstitute(net, 1, C, [], x0, eps, norm)
        s = act_fn(net.activation)
        zl, zu = s(bounds[-1][0]), s(bounds[-1][1])
        A = C @ net.weights[-1]  # the spec merged into the last layer
        return (A.clamp(min=0) @ zl.unsqueeze(-1) + A.clamp(max=0) @ zu.unsqueeze(-1)).squeeze(-1) \
            + C @ net.biases[-1]
    return backsubstitute(net, m, C, relax, x0, eps, norm)


def output_bounds(net: MLP, x0, eps, norm: str, method: str, C=None):
    """(lower, upper) of C f(x) (default C = I: the logits) over the ball."""
    if C is None:
        k = net.weights[-1].shape[0]
        C = torch.eye(k, dtype=x0.dtype, device=x0.device).expand(len(x0), k, k)
    r = C.shape[1]
    both = lower_bound(net, x0, eps, torch.cat([C, -C], 1), norm, method)
    return both[:, :r], -both[:, r:]


def fastlin_forward(net: MLP, x0, eps, norm: str, C=None):
    """Fast-Lin's closed form (Weng et al. 2018, Thm 3.5), computed forward: y_k =
    A_k x + c_k + sum_j N_kj delta_j with z_j = D_j y_j + delta_j, 0 <= delta_j <= t_j
    (D the chord slope u/(u-l), t = -l u/(u-l) on unstable ReLUs).  Lower bound of
    C f(x) (C default: I, the logits), (B, r)."""
    assert net.activation == "relu"
    B, m = len(x0), len(net.weights)

    def layer(k):  # the k-th linear layer (0-based), the spec merged into the last
        if k == m - 1 and C is not None:
            return C @ net.weights[k], (C @ net.biases[k].unsqueeze(-1)).squeeze(-1)
        return net.weights[k].expand(B, -1, -1), net.biases[k].expand(B, -1)

    A, c = layer(0)
    N, slack = [], []

    def bounds_now():
        mid = (A @ x0.unsqueeze(-1)).squeeze(-1) + c
        rad = eps.unsqueeze(-1) * _dual_norm(A, norm)
        lo, hi = mid - rad, mid + rad
        for Nj, tj in zip(N, slack):
            lo = lo + (Nj.clamp(max=0) * tj.unsqueeze(1)).sum(-1)
            hi = hi + (Nj.clamp(min=0) * tj.unsqueeze(1)).sum(-1)
        return lo, hi

    for k in range(1, m):
        l, u = bounds_now()
        unstable = (l < 0) & (u > 0)
        D = torch.where(unstable, u / torch.where(unstable, u - l, torch.ones_like(u)),
                        (l >= 0).to(u.dtype))
        slack.append(torch.where(unstable, -l * D, torch.zeros_like(l)))
        W, b = layer(k)
        M = W * D.unsqueeze(1)  # W_{k+1} D_k
        A = M @ A
        c = (M @ c.unsqueeze(-1)).squeeze(-1) + b
        N = [M @ Nj for Nj in N] + [W]
    return bounds_now()[0]


# ------------------------------------------------------------------ specifications, radii


def margin_spec(y, target, classes: int = 10, dtype=torch.float32):
    """Rows e_y - e_target, as C (B, 1, classes)."""
    C = torch.zeros(len(y), 1, classes, dtype=dtype, device=y.device)
    C[torch.arange(len(y)), 0, y] = 1.0
    C[torch.arange(len(y)), 0, target] -= 1.0
    return C


def targets(logits, y, generator: torch.Generator) -> dict:
    """The official target types (utils.generate_data): runner-up ("top2"), a random
    class other than the label, the least likely class."""
    masked = logits.scatter(1, y[:, None], float("-inf"))
    rand = torch.randint(0, logits.shape[1] - 1, (len(y),), generator=generator).to(y.device)
    rand = rand + (rand >= y).long()  # uniform over the other classes
    return {"runner_up": masked.argmax(1), "random": rand, "least_likely": logits.argmin(1)}


def certified_radius(net: MLP, x0, C, norm: str, method: str, eps0: float = 0.005,
                     steps: int = 15, tol: float = 1e-5, chunk: int = 512):
    """The largest eps the method certifies (lower bound of every row of C f(x) > 0),
    per instance, by the official search (module docstring).  Returns (B,)."""
    B = len(x0)
    lo = torch.zeros(B, dtype=x0.dtype, device=x0.device)
    hi = torch.full_like(lo, math.inf)
    eps = torch.full_like(lo, eps0)
    found_hi = torch.zeros(B, dtype=torch.bool, device=x0.device)  # a failing eps seen
    found_lo = torch.zeros_like(found_hi)  # a certified eps seen
    active = torch.ones_like(found_hi)
    for _ in range(steps):
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            break
        ok = torch.cat([(lower_bound(net, x0[i], eps[i], C[i], norm, method) > 0).all(-1)
                        for i in idx.split(chunk)])
        e = eps[idx]
        lo[idx] = torch.where(ok, e, lo[idx])
        hi[idx] = torch.where(ok, hi[idx], e)
        found_lo[idx] |= ok
        found_hi[idx] |= ~ok
        bracketed = found_lo[idx] & found_hi[idx]
        nxt = torch.where(bracketed, (lo[idx] + hi[idx]) / 2, torch.where(ok, e * 10, e / 10))
        eps[idx] = nxt
        active[idx] = ~(bracketed & (hi[idx] - lo[idx] <= tol))
    return lo


def operator_norm(W, norm: str):
    if norm == "linf":
        return W.abs().sum(1).max()
    if norm == "l1":
        return W.abs().sum(0).max()
    return torch.linalg.matrix_norm(W, ord=2)


def global_lipschitz_radius(net: MLP, x0, C, norm: str):
    """margin(x0) / Lipschitz constant of the margin from the product of operator norms
    (the paper's "global Lipschitz" baseline).  C (B, 1, classes).  Returns (B,)."""
    lip_act = 0.25 if net.activation == "sigmoid" else 1.0
    prod = torch.ones((), dtype=x0.dtype, device=x0.device)
    for W in net.weights[:-1]:
        prod = prod * operator_norm(W, norm) * lip_act
    row = (C[:, 0] @ net.weights[-1])  # (B, n)
    lip = _dual_norm(row, norm) * prod
    logits = forward(net, x0)
    g = (C[:, 0] * logits).sum(-1)
    return (g / lip).clamp(min=0)


def forward(net: MLP, x):
    s = act_fn(net.activation)
    for k, (W, b) in enumerate(zip(net.weights, net.biases)):
        x = x @ W.T + b
        if k < len(net.weights) - 1:
            x = s(x)
    return x
