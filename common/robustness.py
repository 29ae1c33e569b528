"""Robustness evaluation on top of any attack: distances, robust accuracy, minimal
perturbations, best over attacks, median perturbation and accuracy-vs-eps curves.

The central quantity is a per-sample *adversarial distance* (``distances``): the
size of the perturbation an attack returned, *re-checked on the model* -- 0 for
a sample the model already misclassifies, ||x_adv - x|| where x_adv is
adversarial, inf where the attack failed.  Everything else derives from it:

- the best of several attacks per sample is the elementwise minimum
  (``best_over_attacks``), as in Schott et al. (ICLR 2019, §"Attacks": "for each
  sample we take the smallest adversarial found by any attack");
- robust accuracy at eps is the fraction of samples with distance > eps
  (``accuracy_at``; an adversarial of size exactly eps counts as a success);
- the accuracy-vs-eps curve is that fraction over a grid (``accuracy_curve``);
- the median perturbation size is the median distance, misclassified samples
  counting 0 and failures inf (``median``), the number Schott et al.'s Table 1 and
  the ABS paper's curves report.

For fixed-budget attacks (FGSM, PGD) there are two routes: run the attack at each
eps of a grid and count the samples still classified correctly
(``robust_accuracy``, ``robust_accuracy_curve``; several attacks give the per-sample
AND, the "union" or "all attacks" accuracy of Tramer & Boneh), or search, per
sample, the smallest eps at which the attack succeeds (``minimal_eps``, a batched
bisection that moves each sample's own eps) and feed the result to the curve
helpers.  Minimisation attacks (Carlini-Wagner, pointwise, boundary) give
distances directly.

Norms: ``"linf"``, ``"l2"``, ``"l1"`` and ``"l0"`` (the number of changed pixels;
channels of a pixel count once, as in the ABS paper, unless ``channels_together``
is False).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from common.attacks import AttackInputError, check_inputs, per_sample

NORMS = ("linf", "l2", "l1", "l0")
Attack = Callable[..., torch.Tensor]  # attack(model, x, y, eps) -> x_adv (fixed budget)


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels, batched, on x's device (an empty batch gives an empty tensor)."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def norms(delta: torch.Tensor, norm: str, channels_together: bool = True) -> torch.Tensor:
    """Per-sample size of a batch of perturbations (N, ...)."""
    if norm == "linf":
        return delta.flatten(1).abs().amax(1)
    if norm == "l2":
        return delta.flatten(1).norm(dim=1)
    if norm == "l1":
        return delta.flatten(1).abs().sum(1)
    if norm == "l0":
        changed = delta != 0
        if channels_together and delta.dim() == 4:
            changed = changed.any(1)
        return changed.flatten(1).sum(1).to(delta.dtype if delta.is_floating_point() else torch.float32)
    raise AttackInputError(f"unknown norm {norm!r}: one of {', '.join(NORMS)}")


@torch.no_grad()
def distances(model, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, norm: str, *,
              targeted: bool = False, batch_size: int = 1000,
              channels_together: bool = True) -> torch.Tensor:
    """Per-sample adversarial distance of ``x_adv`` (module docstring), re-checked on
    the model: 0 if x is already misclassified (untargeted), ||x_adv - x|| if x_adv
    is adversarial, inf otherwise.  For targeted attacks y is the target and a
    sample already predicted as its target has distance 0."""
    if x_adv.shape != x.shape:
        raise AttackInputError(f"x_adv has shape {tuple(x_adv.shape)}, x has {tuple(x.shape)}")
    pred_clean, pred_adv = predict(model, x, batch_size), predict(model, x_adv, batch_size)
    hit = (lambda p: p == y) if targeted else (lambda p: p != y)
    d = norms((x_adv - x).float(), norm, channels_together)
    d = torch.where(hit(pred_adv), d, torch.full_like(d, math.inf))
    return torch.where(hit(pred_clean), torch.zeros_like(d), d)


def best_over_attacks(*dists: torch.Tensor) -> torch.Tensor:
    """Per sample, the smallest distance any attack found."""
    return torch.stack([torch.as_tensor(d) for d in dists]).amin(0)


def accuracy_at(dists: torch.Tensor, eps: float) -> float:
    """Robust accuracy (%) at budget eps: samples whose adversarial distance exceeds eps."""
    return 100.0 * (dists > eps).float().mean().item()


def accuracy_curve(dists: torch.Tensor, eps_grid) -> list[float]:
    """Robust accuracy (%) at each eps of the grid."""
    return [accuracy_at(dists, float(e)) for e in eps_grid]


def median(dists: torch.Tensor) -> float:
    """Median adversarial distance (misclassified samples count 0, failures inf; the
    mean of the two middle values for an even count, inf if either is inf)."""
    s = dists.flatten().double().sort().values
    n = len(s)
    if n == 0:
        return math.nan
    mid = s[(n - 1) // 2: n // 2 + 1]
    return math.inf if torch.isinf(mid).any() else mid.mean().item()


# ---------------------------------------------------------- fixed-budget attacks


@torch.no_grad()
def correct_under(model, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps, *,
                  batch_size: int = 1000, clean: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample: still classified correctly after ``attack(model, x, y, eps)``
    (and correctly classified before it; ``clean``, if given, is that mask)."""
    with torch.enable_grad():
        x_adv = attack(model, x, y, eps)
    if clean is None:
        clean = predict(model, x, batch_size) == y
    return clean & (predict(model, x_adv, batch_size) == y)


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                    eps: Mapping[str, float] | float, *, batch_size: int = 1000) -> dict:
    """Robust accuracy (%) under each attack at its eps, and ``"union"``: the samples
    that survive *every* attack (per-sample AND; Tramer & Boneh's "all attacks").
    ``eps`` is one number or a dict keyed like ``attacks``.  Returns
    ``{"clean": %, name: %, ..., "union": %, "correct": {name: bool tensor}}``."""
    out, masks = {}, {}
    clean = predict(model, x, batch_size) == y
    out["clean"] = 100.0 * clean.float().mean().item()
    union = clean.clone()
    for name, attack in attacks.items():
        e = eps[name] if isinstance(eps, Mapping) else eps
        masks[name] = correct_under(model, x, y, attack, e, batch_size=batch_size, clean=clean)
        out[name] = 100.0 * masks[name].float().mean().item()
        union &= masks[name]
    out["union"] = 100.0 * union.float().mean().item()
    out["correct"] = {**masks, "union": union}
    return out


def robust_accuracy_curve(model, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps_grid, *,
                          batch_size: int = 1000) -> list[float]:
    """Robust accuracy (%) under ``attack`` run afresh at every eps of the grid."""
    clean = predict(model, x, batch_size) == y
    return [100.0 * correct_under(model, x, y, attack, float(e), batch_size=batch_size, clean=clean)
            .float().mean().item() for e in eps_grid]


def minimal_eps(model, x: torch.Tensor, y: torch.Tensor, attack: Attack, *, eps_max: float,
                search_steps: int = 10, targeted: bool = False, bounds=(0.0, 1.0),
                batch_size: int = 1000, return_adversarials: bool = False):
    """Per sample, the smallest budget at which the fixed-budget ``attack`` succeeds,
    by bisection on [0, eps_max] with every sample moving its own eps (``attack``
    must accept a (N,) eps tensor, as every attack in common.attacks does).

    Returns the upper end of each sample's final bracket: 0 for misclassified
    samples, inf where the attack fails even at eps_max.  The result is an upper
    bound on the minimal perturbation (up to eps_max / 2**search_steps), valid for
    the attack used; a stronger attack can only lower it.  With
    ``return_adversarials``, also the adversarial found at that budget (x itself
    for misclassified samples and where the attack failed): ``(eps, x_adv)``."""
    check_inputs(model, x, y, bounds, "minimal_eps")
    n = len(x)
    hit = (lambda p: p == y) if targeted else (lambda p: p != y)
    with torch.no_grad():
        clean_hit = hit(predict(model, x, batch_size))
    lo = torch.zeros(n, device=x.device, dtype=x.dtype)
    hi = per_sample(eps_max, n, x).clone()
    best = x.detach().clone()

    def works(e):
        x_adv = attack(model, x, y, e)
        with torch.no_grad():
            ok = hit(predict(model, x_adv, batch_size))
        keep = ok & ~clean_hit
        best[keep] = x_adv[keep].detach()
        return ok

    ok_max = works(hi) | clean_hit
    for _ in range(search_steps):
        mid = (lo + hi) / 2
        ok = works(mid)
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    d = torch.where(ok_max, hi, torch.full_like(hi, math.inf))
    d = torch.where(clean_hit, torch.zeros_like(d), d)
    return (d, best) if return_adversarials else d
