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
