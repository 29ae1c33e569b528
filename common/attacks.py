"""Gradient-based adversarial attacks on any PyTorch classifier that returns logits.

Every attack takes ``(model, x, y, ...)`` with ``x`` a batch (N, ...) of inputs in
the box ``bounds = (lo, hi)`` and ``y`` (N,) integer labels, and returns a tensor
of adversarial inputs shaped like ``x``, in the box, on ``x``'s device.  ``y`` is
the true label (untargeted: make the prediction differ from it) or, with
``targeted=True``, the target class (make the prediction equal it; see
``least_likely``).  ``eps`` is a float or a (N,) tensor (one budget per sample).
All work is batched over samples *and* restarts (restarts are stacked along the
batch dimension), so one forward/backward serves every sample and restart.

- ``fgsm``: x + eps * sign(grad) (Goodfellow et al., ICLR 2015, §3).
- ``bim``: iterated FGSM clipped to the eps-box, no random start (Kurakin, Goodfellow
  & Bengio, "Adversarial examples in the physical world", ICLR-W 2017, §2.1; their
  default of min(eps*255 + 4, 1.25 eps*255) steps of one grey level).
- ``pgd``: projected gradient descent (Madry et al., ICLR 2018, §2-3) under the
  L-inf, L2 or L1 norm, with a random start and restarts.  L-inf steps by sign(g);
  L2 by g/||g||_2; L1 by Tramer & Boneh's sparse L1 descent ("SLIDE", NeurIPS 2019,
  §4 and their pgd_attack.py): only coordinates whose |g| reaches the q-th quantile
  (default 0.99) move, sign(g)/count each, gradients pointing out of the box at
  coordinates already on its edge are zeroed first.  After each step the
  perturbation is projected onto the eps-ball (L-inf: clip; L2: rescale; L1: the
  sort-based simplex projection of Duchi et al., ICML 2008) and then clipped into
  the box -- ball first, box second, which keeps both constraints (clipping into
  the box only shrinks every |delta_i| because x itself is in the box) but is not
  the exact projection onto their intersection.  Random start: uniform in the
  L-inf ball (Madry); uniform in the L2 / L1 ball (Gaussian / Laplace direction,
  radius eps * U^(1/d)); then clipped into the box.  Restarts keep, per sample,
  an adversarial restart if any, else the one with the highest loss.  The result
  is the last iterate of each restart (as Madry's pgd_attack.py and torchattacks).
- ``carlini_wagner_l2``: minimal-L2 attack of Carlini & Wagner (S&P 2017, §V.A):
  tanh box reparametrisation, Adam on ||delta||_2^2 + c * max(Z_y - max_{j!=y} Z_j,
  -kappa), a per-sample binary search over c; returns the smallest adversarial
  found (x itself where none was).

Losses (what the iterative attacks ascend): ``"ce"`` cross entropy, or
``"margin"`` max_{j!=y} Z_j - Z_y (the "CW loss" of Madry's leaderboard and the
loss of Tramer & Boneh's attacks); targeted attacks descend the loss of the target.

Decision-based attacks (salt-and-pepper, pointwise L0, boundary) are in
``common.decision_attacks``; evaluation (distances, robust accuracy, minimal
perturbations, best over attacks) in ``common.robustness``; adversarial training
in ``common.adversarial``.

Bad input -- x outside the box, wrong shapes, non-finite values, labels out of
range, a model in training mode -- raises ``AttackInputError`` with one message.

Reference code whose details were followed (read, not copied): MadryLab/mnist_challenge
pgd_attack.py (L-inf step, random start), CausalLearning/MultiRobustness pgd_attack.py
(SLIDE step, L1 projection, edge masking, restart selection), carlini/nn_robust_attacks
l2_attack.py (tanh space, binary search over c), torchattacks 3.5 (FGSM/BIM/PGD
conventions; our FGSM and PGD match it to float precision, see tests/test_attacks.py).
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from registry import ReproError

NORMS = ("linf", "l2", "l1")
LOSSES = ("ce", "margin")


class AttackInputError(ReproError, ValueError):
    """Invalid input to an attack (shape, range, finiteness, model mode)."""


# ------------------------------------------------------------------ validation


def check_inputs(model, x: torch.Tensor, y: torch.Tensor | None, bounds: Sequence[float],
                 name: str = "attack") -> tuple[float, float]:
    """Validate an attack's inputs; returns ``(lo, hi)``.  Raises ``AttackInputError``."""
    if isinstance(model, torch.nn.Module) and model.training:
        raise AttackInputError(
            f"{name}: the model is in training mode; call model.eval() first (BatchNorm and "
            f"dropout would make the attacked function differ from the evaluated one)")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise AttackInputError(f"{name}: x must be a floating-point tensor, got "
                               f"{type(x).__name__}{'' if not isinstance(x, torch.Tensor) else ' of ' + str(x.dtype)}")
    if x.dim() < 2 or len(x) == 0:
        raise AttackInputError(f"{name}: x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16,
                                                              torch.uint8, torch.int8):
            raise AttackInputError(f"{name}: y must be an integer tensor of labels")
        if y.shape != (len(x),):
            raise AttackInputError(f"{name}: y must have shape ({len(x)},) to match x of shape "
                                   f"{tuple(x.shape)}, got {tuple(y.shape)}")
        if y.device != x.device:
            raise AttackInputError(f"{name}: x is on {x.device} but y on {y.device}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise AttackInputError(f"{name}: bounds must be a pair (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise AttackInputError(f"{name}: bounds must be finite with lo < hi, got ({lo}, {hi})")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()[:5].tolist()
        raise AttackInputError(f"{name}: x has non-finite values (NaN or inf), e.g. in samples {bad}")
    xmin, xmax = x.min().item(), x.max().item()
    tol = 1e-6 * (hi - lo)
    if xmin < lo - tol or xmax > hi + tol:
        raise AttackInputError(f"{name}: x must lie in the box [{lo:g}, {hi:g}] but spans "
                               f"[{xmin:g}, {xmax:g}]; rescale the inputs or pass bounds=")
    return lo, hi


def _check_logits(logits: torch.Tensor, y: torch.Tensor | None, n: int, name: str) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or len(logits) != n:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise AttackInputError(f"{name}: the model must return logits of shape (N, classes) = "
                               f"({n}, C), got {shape}")
    if y is not None and len(y) and (y.min().item() < 0 or y.max().item() >= logits.shape[1]):
        raise AttackInputError(f"{name}: labels must lie in [0, {logits.shape[1]}), got "
                               f"[{y.min().item()}, {y.max().item()}]")


@torch.no_grad()
def check_model(model, x: torch.Tensor, y: torch.Tensor | None, name: str) -> None:
    """One forward pass on the first sample: the model returns (1, C) logits and
    every label lies in [0, C).  (Gradient attacks check their first full batch.)"""
    logits = model(x[:1])
    _check_logits(logits, None, 1, name)
    if y is not None and (y.min().item() < 0 or y.max().item() >= logits.shape[1]):
        raise AttackInputError(f"{name}: labels must lie in [0, {logits.shape[1]}), got "
                               f"[{y.min().item()}, {y.max().item()}]")


def per_sample(eps, n: int, like: torch.Tensor, name: str = "eps") -> torch.Tensor:
    """``eps`` as a (N,) tensor on ``like``'s device and dtype (a float is broadcast)."""
    e = torch.as_tensor(eps, dtype=like.dtype, device=like.device)
    if e.dim() == 0:
        e = e.expand(n)
    if e.shape != (n,):
        raise AttackInputError(f"{name} must be a number or a ({n},) tensor, got shape {tuple(e.shape)}")
    if not torch.isfinite(e).all() or (e < 0).any():
        raise AttackInputError(f"{name} must be finite and >= 0")
    return e


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample (N,) tensor shaped to broadcast against x (N, ...)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


@contextlib.contextmanager
def frozen(model):
    """Parameters do not require gradients inside (only input gradients are computed)."""
    params = [p for p in getattr(model, "parameters", lambda: [])() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# --------------------------------------------------------------------- losses


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Z_y - max_{j != y} Z_j per sample (> 0 iff classified as y)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return z_y - other


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                targeted: bool = False) -> torch.Tensor:
    """Per-sample loss an attack *ascends*: CE (or the negative margin) of the true
    label; for targeted attacks, minus that of the target."""
    if loss == "ce":
        value = F.cross_entropy(logits, y, reduction="none")
    elif loss == "margin":
        value = -margin(logits, y)
    else:
        raise AttackInputError(f"unknown loss {loss!r}: one of {', '.join(LOSSES)}")
    return -value if targeted else value


def success(logits: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Whether each prediction is adversarial: != y, or == y for a targeted attack."""
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


@torch.no_grad()
def least_likely(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The least-likely class per sample (Kurakin et al.'s ILLC / step l.l. target)."""
    return torch.cat([model(x[i:i + batch_size]).argmin(1) for i in range(0, len(x), batch_size)])


def input_gradient(model, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                   targeted: bool = False, name: str = "attack") -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the summed attack loss w.r.t. x, logits at x)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    _check_logits(logits, y, len(x), name)
    (g,) = torch.autograd.grad(attack_loss(logits, y, loss, targeted).sum(), x)
    return g, logits.detach()


# ------------------------------------------------------------------- one step


def fgsm(model, x: torch.Tensor, y: torch.Tensor, eps, *, targeted: bool = False,
         loss: str = "ce", bounds=(0.0, 1.0)) -> torch.Tensor:
    """Fast gradient sign method: clip(x + eps * sign(grad_x loss), box)."""
    lo, hi = check_inputs(model, x, y, bounds, "fgsm")
    e = _view(per_sample(eps, len(x), x), x)
    with frozen(model):
        g, _ = input_gradient(model, x, y, loss, targeted, "fgsm")
    return (x.detach() + e * g.sign()).clamp_(lo, hi)


# ----------------------------------------------------------------- projections


def project_l1_ball(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``delta`` (N, ...) onto {||d||_1 <= eps_i}
    (Duchi et al. 2008, Fig. 1: soft-threshold at the theta that makes the L1 norm eps)."""
    flat = delta.flatten(1)
    a = flat.abs()
    outside = a.sum(1) > eps
    if not outside.any():
        return delta
    mu = a.sort(1, descending=True).values
    cums = mu.cumsum(1)
    j = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    positive = mu * j > cums - eps[:, None]  # mu_j - (cumsum_j - eps) / j > 0, monotone in j
    rho = positive.sum(1).clamp_min(1)  # number of kept coordinates
    theta = (cums.gather(1, (rho - 1)[:, None]).squeeze(1) - eps) / rho
    shrunk = flat.sign() * (a - theta[:, None]).clamp_min(0)
    return torch.where(outside[:, None], shrunk, flat).view_as(delta)


def project_l2_ball(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    norms = delta.flatten(1).norm(dim=1)
    factor = (eps / norms.clamp_min(1e-12)).clamp(max=1.0)
    return delta * _view(factor, delta)


def _random_start(x0: torch.Tensor, eps: torch.Tensor, norm: str,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random point of the eps-ball around each x0 (before box clipping)."""
    gen_device = generator.device if generator is not None else x0.device
    shape, d = x0.shape, x0[0].numel()
    e = _view(eps, x0)
    if norm == "linf":
        u = torch.rand(shape, generator=generator, device=gen_device, dtype=x0.dtype).to(x0.device)
        return x0 + (2 * u - 1) * e
    if norm == "l2":
        direction = torch.randn(shape, generator=generator, device=gen_device, dtype=x0.dtype)
    else:  # l1: a Laplace vector normalised by its L1 norm is uniform on the L1 sphere
        u = torch.rand(shape, generator=generator, device=gen_device, dtype=x0.dtype)
        direction = -u.clamp_min(1e-12).log() * (2 * (torch.rand(shape, generator=generator,
                                                                 device=gen_device,
                                                                 dtype=x0.dtype) < 0.5) - 1)
    direction = direction.to(x0.device)
    p = 2 if norm == "l2" else 1
    direction = direction / _view(direction.flatten(1).norm(p=p, dim=1).clamp_min(1e-12), x0)
    radius = torch.rand(len(x0), generator=generator, device=gen_device,
                        dtype=x0.dtype).to(x0.device) ** (1.0 / d)
    return x0 + direction * e * _view(radius, x0)


# ----------------------------------------------------------------- iterative


def _pgd_run(model, x0, y, eps, norm, steps, step_size, random_start, targeted, loss,
             l1_sparsity, lo, hi, generator):
    """One PGD run per row of x0 (rows may be repeated samples = restarts)."""
    e = _view(eps, x0)
    if norm == "linf":  # the ball and the box intersect in a box: one clamp per step
        lower, upper = (x0 - e).clamp_(min=lo), (x0 + e).clamp_(max=hi)
    x = _random_start(x0, eps, norm, generator) if random_start else x0.clone()
    if norm == "linf":
        x = torch.max(torch.min(x, upper), lower)
    else:
        x = x.clamp_(lo, hi)
    step = step_size if not isinstance(step_size, torch.Tensor) else _view(step_size, x0)
    first = True
    for _ in range(steps):
        x.requires_grad_(True)
        logits = model(x)
        if first:
            _check_logits(logits, y, len(x0), "pgd")
            first = False
        (g,) = torch.autograd.grad(attack_loss(logits, y, loss, targeted).sum(), x)
        x = x.detach()
        if norm == "linf":
            x = torch.max(torch.min(x.add_(g.sign_().mul_(step)), upper), lower)
            continue
        if norm == "l2":
            g = g / _view(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
            delta = project_l2_ball(x - x0 + step * g, eps)
        else:
            # SLIDE: no step out of the box at its edges; move only the top-(1-q) |g|
            g = g.masked_fill_(((x >= hi) & (g > 0)) | ((x <= lo) & (g < 0)), 0.0)
            a = g.abs().flatten(1)
            thr = torch.quantile(a, l1_sparsity, dim=1, keepdim=True)
            keep = (a >= thr) & (a > 0)
            direction = g.flatten(1).sign() * keep / keep.sum(1, keepdim=True).clamp_min(1)
            delta = project_l1_ball(x - x0 + step * direction.view_as(x), eps)
        x = (x0 + delta).clamp_(lo, hi)
    return x.detach()


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps, *, norm: str = "linf", steps: int = 40,
        step_size: float = 0.01, random_start: bool = True, restarts: int = 1,
        targeted: bool = False, loss: str = "ce", l1_sparsity: float = 0.99,
        bounds=(0.0, 1.0), batch_size: int | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent under ``norm`` in {"linf", "l2", "l1"} (module docstring).

    ``steps`` steps of ``step_size`` (a number or, like ``eps``, one per sample; an
    L-inf step moves every coordinate by it; an L2 step has L2 length ``step_size``; an
    L1 (SLIDE) step has L1 length ``step_size`` spread over the coordinates whose
    |gradient| reaches the ``l1_sparsity`` quantile).
    ``restarts`` random starts run side by side (rows stacked in one batch); per sample
    the result is an adversarial restart if any, else the highest-loss one.
    ``batch_size`` bounds the samples (times restarts) per forward pass; ``generator``
    draws the random starts (on its own device).  Defaults are Madry's MNIST values.
    """
    lo, hi = check_inputs(model, x, y, bounds, "pgd")
    if norm not in NORMS:
        raise AttackInputError(f"pgd: unknown norm {norm!r}: one of {', '.join(NORMS)}")
    if loss not in LOSSES:
        raise AttackInputError(f"pgd: unknown loss {loss!r}: one of {', '.join(LOSSES)}")
    if steps < 0 or restarts < 1 or not 0.0 <= l1_sparsity < 1.0:
        raise AttackInputError("pgd: need steps >= 0, restarts >= 1 and 0 <= l1_sparsity < 1")
    if not random_start and restarts > 1:
        raise AttackInputError("pgd: restarts > 1 without a random start would repeat one run")
    n = len(x)
    eps = per_sample(eps, n, x)
    step_per_row = isinstance(step_size, torch.Tensor) and step_size.dim() > 0
    if step_per_row:
        step_size = per_sample(step_size, n, x, "step_size")  # per sample, like eps
    x, y = x.detach(), y.long()
    chunk = batch_size or n
    out = torch.empty_like(x)
    with frozen(model):
        for s in range(0, n, chunk):
            xs, ys, es = x[s:s + chunk], y[s:s + chunk], eps[s:s + chunk]
            m = len(xs)
            rep = (restarts,) + (1,) * (x.dim() - 1)
            ss = step_size[s:s + chunk].repeat(restarts) if step_per_row else step_size
            adv = _pgd_run(model, xs.repeat(rep), ys.repeat(restarts), es.repeat(restarts), norm,
                           steps, ss, random_start, targeted, loss, l1_sparsity, lo, hi,
                           generator)
            if restarts > 1:
                with torch.no_grad():
                    logits = model(adv)
                    score = attack_loss(logits, ys.repeat(restarts), loss, targeted)
                    score = torch.where(success(logits, ys.repeat(restarts), targeted),
                                        torch.full_like(score, float("inf")), score)
                best = score.view(restarts, m).argmax(0)
                adv = adv.view(restarts, m, *x.shape[1:])[best, torch.arange(m, device=x.device)]
            out[s:s + chunk] = adv
    return out


def bim(model, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int | None = None,
        step_size: float | None = None, targeted: bool = False, loss: str = "ce",
        bounds=(0.0, 1.0), batch_size: int | None = None) -> torch.Tensor:
    """Basic iterative method (iterative FGSM) of Kurakin et al.: L-inf PGD without a
    random start; by default steps of one grey level (1/255 of the box) and
    min(eps*255 + 4, 1.25 * eps*255) steps, their rule.  ``targeted`` with
    ``y = least_likely(model, x)`` is their iterative least-likely-class method."""
    lo, hi = (float(b) for b in bounds)
    if step_size is None:
        step_size = (hi - lo) / 255
    if steps is None:
        if isinstance(eps, torch.Tensor) and eps.dim():
            raise AttackInputError("bim: give steps= when eps differs per sample")
        grey = float(eps) / (hi - lo) * 255
        steps = max(1, int(math.ceil(min(grey + 4, 1.25 * grey))))
    return pgd(model, x, y, eps, norm="linf", steps=steps, step_size=step_size,
               random_start=False, targeted=targeted, loss=loss, bounds=bounds,
               batch_size=batch_size)


# ---------------------------------------------------------------- Carlini-Wagner


def carlini_wagner_l2(model, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
                      confidence: float = 0.0, initial_const: float = 1e-2,
                      binary_search_steps: int = 9, steps: int = 1000, lr: float = 1e-2,
                      abort_early: bool = True, bounds=(0.0, 1.0),
                      batch_size: int | None = None) -> torch.Tensor:
    """Carlini & Wagner's L2 attack (defaults: their l2_attack.py, with 1000 steps
    instead of 10,000).  Returns, per sample, the adversarial of smallest L2 norm
    found over all constants and steps, or x itself when none was found (the
    robustness helpers then see a non-adversarial point: distance inf)."""
    lo, hi = check_inputs(model, x, y, bounds, "carlini_wagner_l2")
    x, y = x.detach(), y.long()
    chunk = batch_size or len(x)
    with frozen(model):
        return torch.cat([_cw_chunk(model, x[s:s + chunk], y[s:s + chunk], targeted, confidence,
                                    initial_const, binary_search_steps, steps, lr, abort_early,
                                    lo, hi) for s in range(0, len(x), chunk)])


def _cw_chunk(model, x, y, targeted, kappa, c0, search_steps, steps, lr, abort_early, lo, hi):
    n = len(x)
    half = (hi - lo) / 2
    w0 = torch.atanh(((x - lo) / half - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    const = torch.full((n,), c0, device=x.device, dtype=x.dtype)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, 1e10)
    best_l2 = torch.full_like(const, float("inf"))
    best = x.clone()
    first = True
    for _ in range(search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        prev = float("inf")
        for it in range(steps):
            x_new = lo + (torch.tanh(w) + 1) * half
            logits = model(x_new)
            if first:
                _check_logits(logits, y, n, "carlini_wagner_l2")
                first = False
            l2sq = (x_new - x).flatten(1).pow(2).sum(1)
            m = margin(logits, y)  # Z_y - max_{j != y} Z_j
            f = (-m + kappa).clamp_min(0) if targeted else (m + kappa).clamp_min(0)
            total = (l2sq + const * f).sum()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            with torch.no_grad():  # bookkeeping on the point just evaluated
                adv = (m - kappa >= 0) if targeted else (m + kappa <= 0)
                adv &= success(logits, y, targeted)
                better = adv & (l2sq.sqrt() < best_l2)
                best_l2 = torch.where(better, l2sq.sqrt(), best_l2)
                best[better] = x_new.detach()[better]
                found |= adv
            if abort_early and it % max(1, steps // 10) == 0:
                if total.item() > prev * 0.9999:
                    break
                prev = total.item()
        # binary search on c: smaller where an adversarial was found, larger elsewhere
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return best


# ------------------------------------------------------------- spatial (stAdv)
#
# Xiao, Zhu, Li, He, Liu & Song, "Spatially transformed adversarial examples"
# (ICLR 2018, arXiv 1801.02612), §3: a per-pixel flow field f = (du, dv) moves each
# output pixel's sampling point; the adversarial image is the bilinear interpolation
# of x at the displaced points (backward warping, their Eq. 1), and
#     f* = argmin_f  L_adv(x_f) + tau * L_flow(f)
# with the C&W-style margin loss L_adv (kappa) and the total-variation-like flow loss
#     L_flow(f) = sum_p sum_{q in N(p)} sqrt(||du_p - du_q||^2 + ||dv_p - dv_q||^2 + eps).
# Choices the paper leaves open, made here (ablated in papers/stadv):
# - N(p): the 4-connected neighbours inside the image (right, left, down, up), every
#   ordered pair (p, q) counted, as the double sum reads -- so each unordered pair
#   twice; no padding (a pixel at the border has fewer neighbours).  ``neighbourhood=
#   "diagonal"`` takes the four (+-1, +-1) neighbours instead (the choice of
#   rakutentech/stAdv's flow_loss, which also pads the field with zeros; we do not pad).
# - eps = 1e-8 inside the square root (rakutentech v0.2's value): without it the
#   gradient at zero flow is 0/0.
# - initialisation: zero flow (``init="zero"``); ``"uniform"`` draws each component in
#   U[0, 1) (rakutentech's demo), ``"normal"`` N(0, 1) (DL_Group35's variant).
# - optimiser: L-BFGS run *per sample* (``lbfgs_batched``): every image has its own
#   history, step size, line search and stopping rule, only the forward/backward pass
#   is batched (one SciPy L-BFGS over a concatenated batch, as advertorch's
#   SpatialTransformAttack does, couples the step sizes and stops all images together).
# - the result per sample is, among the iterates that reached the goal (target class,
#   or any wrong class), the one of smallest flow loss; the last iterate where none did.
# - optional second start (``warm_start=r``, ``warm_iter=k``): the objective is not
#   convex and L-BFGS from zero flow stops in a local minimum that still fails for many
#   (image, target) pairs (papers/stadv README, diagnosis).  A second run first
#   minimises the objective with tau' = r * tau for k iterations from the same start,
#   then the paper's objective (tau) from there for ``max_iter`` iterations; per sample
#   the result of the two runs with the LOWER paper objective L_adv + tau * L_flow is
#   returned, so the objective being minimised stays the paper's.
#   With kappa = 0 the optimum sits on the decision boundary, so the last iterate can
#   fall on either side of it; C&W keep the best adversarial the same way.
# Warping: ``grid_sample`` with align_corners=True, so flow is in pixels and pixel
# centres sit on the grid; sampling points outside the image are clamped to its border
# (padding_mode="border", as rakutentech clamps its coordinates).  A clamped point has
# zero gradient in the clamped direction.  Bilinear interpolation is a convex
# combination of pixels, so the warped image stays in the box without clipping.

NEIGHBOURHOODS = ("4", "diagonal")
FLOW_INITS = ("zero", "uniform", "normal")


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Backward-warp ``x`` (N, C, H, W) by ``flow`` (N, 2, H, W), in pixels: output pixel
    (i, j) is the bilinear interpolation of x at row i + flow[:, 1, i, j] and column
    j + flow[:, 0, i, j] (flow[:, 0] = du horizontal, flow[:, 1] = dv vertical).  Points
    outside the image take the border's value (``padding="border"``) or 0 ("zeros")."""
    n, _, h, w = x.shape
    if flow.shape != (n, 2, h, w):
        raise AttackInputError(f"flow_warp: flow must have shape {(n, 2, h, w)}, got {tuple(flow.shape)}")
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    gx = (cols + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (rows + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # grid_sample wants (x, y) = (column, row)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def flow_loss(flow: torch.Tensor, neighbourhood: str = "4", eps: float = 1e-8) -> torch.Tensor:
    """Per-sample L_flow (N,) of ``flow`` (N, 2, H, W): the sum over pixels p and their
    neighbours q inside the image of sqrt(||f_p - f_q||^2 + eps) (module notes)."""
    if neighbourhood == "4":
        offsets = ((0, 1), (1, 0))  # (d_row, d_col); the opposite offsets give the same terms
    elif neighbourhood == "diagonal":
        offsets = ((1, 1), (1, -1))
    else:
        raise AttackInputError(f"flow_loss: neighbourhood must be one of {NEIGHBOURHOODS}, "
                               f"not {neighbourhood!r}")
    h, w = flow.shape[-2:]
    total = flow.new_zeros(len(flow))
    for dr, dc in offsets:
        a = flow[:, :, dr:, max(dc, 0):w + min(dc, 0)]
        b = flow[:, :, :h - dr, max(-dc, 0):w + min(-dc, 0)]
        # each unordered pair {p, q} appears as (p, q) and (q, p) in the double sum
        total = total + 2 * ((a - b).pow(2).sum(1) + eps).sqrt().flatten(1).sum(1)
    return total


def cw_margin_loss(logits: torch.Tensor, label: torch.Tensor, targeted: bool,
                   kappa: float = 0.0) -> torch.Tensor:
    """C&W's f_6 (S&P 2017) as stAdv's L_adv, per sample: targeted at ``label`` = t,
    max(max_{i != t} Z_i - Z_t, -kappa); untargeted (``label`` = true class y),
    max(Z_y - max_{i != y} Z_i, -kappa).  Zero (at kappa = 0) once the goal is met.
    (The paper writes the clamp as max(., kappa); both coincide at its kappa = 0.)"""
    m = margin(logits, label)  # Z_label - max_{other}
    return (-m if targeted else m).clamp_min(-kappa)


def _two_loop(g, S, Y, rho, valid):
    """The L-BFGS two-loop recursion, batched: H_k g per row with each row's own
    history (newest pair last; ``valid`` marks the pairs a row has)."""
    q = g.clone()
    m = S.shape[1]
    alpha = torch.zeros(len(g), m, dtype=g.dtype, device=g.device)
    for i in reversed(range(m)):
        a = rho[:, i] * (S[:, i] * q).sum(1) * valid[:, i]
        alpha[:, i] = a
        q -= a[:, None] * Y[:, i]
    sy, yy = (S[:, -1] * Y[:, -1]).sum(1), (Y[:, -1] * Y[:, -1]).sum(1)
    gamma = torch.where(valid[:, -1] > 0, sy / yy.clamp_min(1e-30), torch.ones_like(sy))
    r = gamma[:, None] * q
    for i in range(m):
        b = rho[:, i] * (Y[:, i] * r).sum(1) * valid[:, i]
        r += S[:, i] * (alpha[:, i] - b)[:, None]
    return r


LBFGS_STATUS = ("running", "gradient", "ftol", "line_search", "max_iter")


def lbfgs_batched(fun, z0: torch.Tensor, *, max_iter: int = 200, history: int = 10,
                  gtol: float = 1e-5, ftol: float = 1e-9, max_ls: int = 20, c1: float = 1e-4,
                  on_accept=None) -> tuple[torch.Tensor, dict]:
    """Minimise N independent objectives at once, one L-BFGS per row of ``z0`` (N, D).

    ``fun(z, idx) -> (f (k,), g (k, D), aux)`` evaluates the rows ``idx`` (k,) of the
    batch at ``z`` (k, D); only rows still running are evaluated.  Per row: the
    two-loop direction from its own last ``history`` pairs (a pair is kept only when
    s.y > 1e-10; a non-descent direction resets the history to steepest descent),
    a backtracking Armijo line search (first step 1, or min(1, 1/||g||_1) without
    history; halved up to ``max_ls`` times), and its own stop: max|g| <= ``gtol``
    ("gradient"), a relative decrease (f_old - f) / max(|f_old|, |f|, 1) <= ``ftol``
    ("ftol"), no Armijo step found ("line_search"), or ``max_iter`` iterations.
    ``on_accept(idx, z, f, aux)`` sees every accepted point (and the start).
    Returns (z, info) with per-row ``iterations``, ``evaluations``, ``status`` (index
    into LBFGS_STATUS) and the final ``f``."""
    n, d = z0.shape
    dev, dt = z0.device, z0.dtype
    z = z0.detach().clone()
    all_idx = torch.arange(n, device=dev)
    f, g, aux = fun(z, all_idx)
    if on_accept is not None:
        on_accept(all_idx, z, f, aux)
    S = torch.zeros(n, history, d, device=dev, dtype=dt)
    Y = torch.zeros_like(S)
    rho = torch.zeros(n, history, device=dev, dtype=dt)
    valid = torch.zeros(n, history, device=dev, dtype=torch.bool)
    iters = torch.zeros(n, dtype=torch.long, device=dev)
    evals = torch.ones(n, dtype=torch.long, device=dev)
    status = torch.zeros(n, dtype=torch.long, device=dev)
    status[g.abs().amax(1) <= gtol] = 1
    for _ in range(max_iter):
        idx = (status == 0).nonzero().flatten()
        if len(idx) == 0:
            break
        gi = g[idx]
        dirn = -_two_loop(gi, S[idx], Y[idx], rho[idx], valid[idx].to(dt))
        gd = (gi * dirn).sum(1)
        bad = ~(gd < 0) | ~torch.isfinite(gd)
        if bad.any():  # not a descent direction: forget this row's history
            dirn[bad] = -gi[bad]
            gd = torch.where(bad, -(gi * gi).sum(1), gd)
            valid[idx[bad]] = False
        fresh = ~valid[idx].any(1)
        t = torch.where(fresh, (1.0 / gi.abs().sum(1).clamp_min(1e-30)).clamp(max=1.0),
                        torch.ones_like(gd))
        searching = torch.ones(len(idx), dtype=torch.bool, device=dev)
        f_new = f[idx].clone()
        g_new = gi.clone()
        aux_new = None
        for _ls in range(max_ls):
            rows = searching.nonzero().flatten()
            if len(rows) == 0:
                break
            zt = z[idx[rows]] + t[rows, None] * dirn[rows]
            ft, gt, at = fun(zt, idx[rows])
            evals[idx[rows]] += 1
            ok = (ft <= f[idx[rows]] + c1 * t[rows] * gd[rows]) & torch.isfinite(ft)
            acc = rows[ok]
            f_new[acc], g_new[acc] = ft[ok], gt[ok]
            if aux_new is None:
                aux_new = {k: torch.empty((len(idx), *v.shape[1:]), dtype=v.dtype, device=v.device)
                           for k, v in at.items()}
            for k, v in at.items():
                aux_new[k][acc] = v[ok]
            searching[acc] = False
            t[rows[~ok]] *= 0.5
        failed = searching
        status[idx[failed]] = 3
        acc = (~failed).nonzero().flatten()
        if len(acc) == 0:
            continue
        ia = idx[acc]
        s = t[acc, None] * dirn[acc]
        yv = g_new[acc] - g[ia]
        sy = (s * yv).sum(1)
        keep = sy > 1e-10
        if keep.any():
            ik = ia[keep]
            S[ik] = torch.cat([S[ik, 1:], s[keep, None]], 1)
            Y[ik] = torch.cat([Y[ik, 1:], yv[keep, None]], 1)
            rho[ik] = torch.cat([rho[ik, 1:], (1.0 / sy[keep])[:, None]], 1)
            valid[ik] = torch.cat([valid[ik, 1:], torch.ones_like(valid[ik, :1])], 1)
        f_old = f[ia]
        z[ia] = z[ia] + s
        f[ia], g[ia] = f_new[acc], g_new[acc]
        iters[ia] += 1
        if on_accept is not None:
            on_accept(ia, z[ia], f[ia], {k: v[acc] for k, v in aux_new.items()})
        rel = (f_old - f[ia]) / torch.maximum(torch.maximum(f_old.abs(), f[ia].abs()),
                                              torch.ones_like(f_old))
        st = torch.zeros_like(ia)
        st = torch.where(rel <= ftol, torch.full_like(st, 2), st)
        st = torch.where(g[ia].abs().amax(1) <= gtol, torch.full_like(st, 1), st)
        status[ia] = st
    status[status == 0] = 4
    return z, {"iterations": iters, "evaluations": evals, "status": status, "f": f}


def stadv(model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
          tau: float = 0.05, kappa: float = 0.0, neighbourhood: str = "4", eps: float = 1e-8,
          init: str = "zero", max_iter: int = 200, history: int = 10, gtol: float = 1e-5,
          ftol: float = 1e-9, max_ls: int = 20, padding: str = "border", bounds=(0.0, 1.0),
          batch_size: int | None = None, generator: torch.Generator | None = None,
          warm_start: float | None = None, warm_iter: int = 0, return_info: bool = False):
    """stAdv (Xiao et al. 2018; notes above this function): the flow f minimising
    L_adv(warp(x, f)) + tau * L_flow(f) per sample, by per-sample L-BFGS from ``init``.
    Untargeted (``target=None``): L_adv pushes the true label ``y`` below the runner-up;
    targeted: ``target`` (N,) is pushed above every other class.  Returns the
    adversarial images (N, C, H, W); with ``return_info`` also a dict of per-sample
    tensors: ``flow`` (N, 2, H, W), ``success``, ``flow_loss``, ``iterations``,
    ``evaluations``, ``status`` (LBFGS_STATUS) and ``pred``.  ``batch_size`` bounds the
    samples per optimisation (each sample's result does not depend on it).
    ``warm_start`` (a ratio r > 0) adds the second start of the notes above (``warm_iter``
    iterations at r * tau, then ``max_iter`` at tau); info then also has ``objective``
    (the paper's objective at the returned flow), ``second`` (the second run won) and
    counts the iterations and evaluations of both runs."""
    lo, hi = check_inputs(model, x, y, bounds, "stadv")
    if x.dim() != 4:
        raise AttackInputError(f"stadv: x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if target is not None:
        if not isinstance(target, torch.Tensor) or target.shape != y.shape or target.is_floating_point():
            raise AttackInputError(f"stadv: target must be an integer tensor shaped like y {tuple(y.shape)}")
        if target.device != x.device:
            raise AttackInputError(f"stadv: x is on {x.device} but target on {target.device}")
    if neighbourhood not in NEIGHBOURHOODS:
        raise AttackInputError(f"stadv: neighbourhood must be one of {NEIGHBOURHOODS}")
    if init not in FLOW_INITS:
        raise AttackInputError(f"stadv: init must be one of {FLOW_INITS}")
    if padding not in ("border", "zeros"):
        raise AttackInputError("stadv: padding must be 'border' or 'zeros'")
    if not (tau >= 0 and kappa >= 0 and eps >= 0 and max_iter >= 0 and history >= 1):
        raise AttackInputError("stadv: need tau, kappa, eps, max_iter >= 0 and history >= 1")
    if warm_start is not None and not (warm_start > 0 and warm_iter >= 1):
        raise AttackInputError("stadv: warm_start needs a ratio > 0 and warm_iter >= 1")
    if padding == "zeros" and lo > 0:
        raise AttackInputError("stadv: zero padding leaves the box when its lower bound is > 0")
    targeted = target is not None
    goal = (target if targeted else y).long()
    x = x.detach()
    n, _, h, w = x.shape
    if init == "zero":
        flow0 = torch.zeros(n, 2, h, w, dtype=x.dtype, device=x.device)
    else:
        draw = torch.rand if init == "uniform" else torch.randn
        gen_device = generator.device if generator is not None else x.device
        flow0 = draw((n, 2, h, w), generator=generator, dtype=x.dtype, device=gen_device).to(x.device)
    chunk = batch_size or n
    outs = []
    with frozen(model):
        for s in range(0, n, chunk):
            xs, gs, fs = x[s:s + chunk], goal[s:s + chunk], flow0[s:s + chunk]
            common = (targeted, kappa, neighbourhood, eps, padding)
            opt = dict(history=history, gtol=gtol, ftol=ftol, max_ls=max_ls)
            out = _stadv_chunk(model, xs, gs, fs, targeted, tau, kappa, neighbourhood, eps, padding,
                               dict(max_iter=max_iter, **opt))
            if warm_start is not None:
                warm = _stadv_chunk(model, xs, gs, fs, targeted, warm_start * tau, kappa, neighbourhood,
                                    eps, padding, dict(max_iter=warm_iter, **opt))
                second = _stadv_chunk(model, xs, gs, warm["flow"], targeted, tau, kappa, neighbourhood,
                                      eps, padding, dict(max_iter=max_iter, **opt))
                out = _pick_lower(model, xs, gs, tau, common, out, second, warm)
            outs.append(out)
    info = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    adv = info.pop("adv")
    return (adv, info) if return_info else adv


def stadv_objective(model, x, goal, flow, targeted, tau, kappa=0.0, neighbourhood="4", eps=1e-8,
                    padding="border") -> torch.Tensor:
    """The stAdv objective L_adv(warp(x, flow)) + tau * L_flow(flow) per sample (N,)."""
    with torch.no_grad():
        logits = model(flow_warp(x, flow, padding))
        return cw_margin_loss(logits, goal, targeted, kappa) + tau * flow_loss(flow, neighbourhood, eps)


def _pick_lower(model, x, goal, tau, common, first, second, warm):
    """Per sample, the result (of ``first`` and ``second``) of lower paper objective."""
    targeted, kappa, neighbourhood, eps, padding = common
    o1 = stadv_objective(model, x, goal, first["flow"], targeted, tau, kappa, neighbourhood, eps, padding)
    o2 = stadv_objective(model, x, goal, second["flow"], targeted, tau, kappa, neighbourhood, eps, padding)
    use = o2 < o1
    out = {}
    for k, v in first.items():
        if k in ("iterations", "evaluations"):
            out[k] = v + second[k] + warm[k]
        else:
            u = use.view(-1, *([1] * (v.dim() - 1)))
            out[k] = torch.where(u, second[k], v)
    out["objective"] = torch.where(use, o2, o1)
    out["second"] = use
    return out


def _stadv_chunk(model, x, goal, flow0, targeted, tau, kappa, neighbourhood, eps, padding, opt):
    n, _, h, w = x.shape
    checked = [False]

    def fun(z, idx):
        flow = z.view(-1, 2, h, w).detach().requires_grad_(True)
        logits = model(flow_warp(x[idx], flow, padding))
        if not checked[0]:
            _check_logits(logits, goal[idx], len(idx), "stadv")
            checked[0] = True
        lflow = flow_loss(flow, neighbourhood, eps)
        obj = cw_margin_loss(logits, goal[idx], targeted, kappa) + tau * lflow
        (g,) = torch.autograd.grad(obj.sum(), flow)
        pred = logits.detach().argmax(1)
        ok = pred == goal[idx] if targeted else pred != goal[idx]
        return obj.detach(), g.flatten(1), {"success": ok, "flow_loss": lflow.detach()}

    best = flow0.flatten(1).clone()
    best_loss = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)

    def on_accept(idx, z, f, aux):
        better = aux["success"] & (aux["flow_loss"] < best_loss[idx])
        ib = idx[better]
        best[ib] = z[better]
        best_loss[ib] = aux["flow_loss"][better]
        found[ib] = True

    z, info = lbfgs_batched(fun, flow0.flatten(1), on_accept=on_accept, **opt)
    flow = torch.where(found[:, None], best, z).view(n, 2, h, w)
    with torch.no_grad():
        adv = flow_warp(x, flow, padding)
        pred = model(adv).argmax(1)
        lflow = flow_loss(flow, neighbourhood, eps)
    ok = pred == goal if targeted else pred != goal
    return {"adv": adv, "flow": flow, "success": ok, "flow_loss": lflow,
            "iterations": info["iterations"], "evaluations": info["evaluations"],
            "status": info["status"], "pred": pred}
