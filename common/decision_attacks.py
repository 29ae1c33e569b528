"""Decision-based attacks: they query only the model's predicted class, so they work
on models without useful gradients (binarised inputs, optimisation-based classifiers
such as ABS).  Same conventions as ``common.attacks``: ``(model, x, y, ...)`` with
x in the box ``bounds``, y the true labels (or targets with ``targeted=True``),
batched over samples (each step queries the model once for every sample still
being attacked); each returns adversarial inputs shaped like x.  Where no
adversarial was found the sample is returned unchanged (x itself), which
``common.robustness.distances`` scores as "not adversarial" (distance inf).

- ``salt_and_pepper``: add salt-and-pepper noise of growing density p until the
  input is misclassified, keep the adversarial with the fewest changed entries;
  the search over p narrows around the best p found (foolbox 3's
  SaltAndPepperNoiseAttack schedule, with L0 as the criterion), ``repeats`` times.
- ``pointwise``: the L0 attack of Schott, Rauber, Bethge & Brendel (ICLR 2019,
  §"Attacks"; foolbox's PointwiseAttack): start from a salt-and-pepper adversarial,
  visit the perturbed entries in random order and reset each to its clean value
  whenever the input stays adversarial; repeat passes until a full pass resets
  nothing, so no single entry can be reset (a local L0 minimum).  Optionally
  (``l2_search_steps > 0``, the attack's L2 variant) binary-search every entry that
  cannot be reset between its clean and adversarial values, in passes until no
  entry moves by more than the search's resolution (box width / 2**steps).
- ``boundary_attack``: Brendel, Rauber & Bethge (ICLR 2018), the decision-based L2
  attack: from an adversarial starting point, propose a random orthogonal
  ("spherical") step on the sphere around x followed by a step towards x, accept
  it when still adversarial; the two step sizes adapt to the success rates of
  the spherical and the full proposals (x1.5 above 50% / below 20%), as in
  foolbox's BoundaryAttack.  Start: uniform noise that is adversarial, then a
  binary search along the line from x (``blended_noise_start``, through
  ``line_search``), unless ``starting_points`` are given (for example from another
  attack).
- ``line_search``: the smallest blend x + a (target - x) that stays adversarial, by
  bisection on a (also used to shorten adversarials found by other attacks).

Reference code (read, not copied): bethgelab/foolbox attacks/pointwise.py,
saltandpepper.py, boundary_attack.py (1.x and 3.x).
"""

from __future__ import annotations

import torch

from common.attacks import AttackInputError, _view, check_inputs, check_model


@torch.no_grad()
def is_adversarial(model, x: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Per sample: the model's prediction differs from y (equals y if targeted)."""
    pred = model(x).argmax(1)
    return pred == y if targeted else pred != y


def _changed(a: torch.Tensor, b: torch.Tensor, channels_together: bool) -> torch.Tensor:
    """Entries (pixels) where a and b differ, (N, H*W) if channels are counted together."""
    d = a != b
    if channels_together and a.dim() == 4:
        d = d.any(1)
    return d.flatten(1)


def _rand(shape, like, generator):
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


# ------------------------------------------------------------- salt and pepper


@torch.no_grad()
def salt_and_pepper(model, x: torch.Tensor, y: torch.Tensor, *, steps: int = 1000,
                    repeats: int = 1, targeted: bool = False, channels_together: bool = True,
                    bounds=(0.0, 1.0), generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper noise of increasing density; the adversarial with the fewest
    changed pixels over ``repeats`` x ``steps`` tries.  ``channels_together``: the
    same noise on every channel of a pixel (an image's pixel counts once in L0)."""
    lo, hi = check_inputs(model, x, y, bounds, "salt_and_pepper")
    x, y = x.detach(), y.long()
    n = len(x)
    check_model(model, x, y, "salt_and_pepper")
    noise_shape = list(x.shape)
    if channels_together and x.dim() == 4:
        noise_shape[1] = 1
    best = x.clone()
    best_l0 = torch.where(is_adversarial(model, x, y, targeted),
                          torch.zeros(n, device=x.device), torch.full((n,), float("inf"), device=x.device))
    for _ in range(repeats):
        p_min = torch.zeros(n, device=x.device, dtype=x.dtype)
        p_max = torch.ones(n, device=x.device, dtype=x.dtype)
        stepsize = p_max / steps
        p = stepsize.clone()
        for step in range(steps):
            u = _rand(noise_shape, x, generator)
            pv = _view(p, x)
            cand = torch.where(u < pv / 2, lo, torch.where(u >= 1 - pv / 2, hi, x))
            l0 = _changed(cand, x, channels_together).sum(1).to(x.dtype)
            better = is_adversarial(model, cand, y, targeted) & (l0 < best_l0)
            best[better] = cand[better]
            best_l0 = torch.where(better, l0, best_l0)
            # narrow the density search around the best p (foolbox 3's schedule)
            p_min = torch.where(better, 0.5 * p, p_min)
            p_max = torch.where(better, (1.2 * p).clamp(max=1.0), p_max)
            stepsize = torch.where(better, (p_max - p_min) / (steps - step), stepsize)
            reset = better | (p >= p_max)
            p = torch.minimum(torch.where(reset, p_min, p) + stepsize, p_max)
    return best


# -------------------------------------------------------------------- pointwise


@torch.no_grad()
def pointwise(model, x: torch.Tensor, y: torch.Tensor, *, starting_points: torch.Tensor | None = None,
              targeted: bool = False, l2_search_steps: int = 0, max_passes: int = 100,
              init_steps: int = 1000, init_repeats: int = 1, channels_together: bool = True,
              bounds=(0.0, 1.0), generator: torch.Generator | None = None) -> torch.Tensor:
    """Schott et al.'s pointwise attack (module docstring).  ``starting_points``:
    adversarial inputs to start from (default: ``salt_and_pepper``); samples whose
    start is not adversarial are returned unchanged."""
    lo, hi = check_inputs(model, x, y, bounds, "pointwise")
    check_model(model, x, y, "pointwise")
    x, y = x.detach(), y.long()
    if starting_points is None:
        starting_points = salt_and_pepper(model, x, y, steps=init_steps, repeats=init_repeats,
                                          targeted=targeted, channels_together=channels_together,
                                          bounds=bounds, generator=generator)
    elif starting_points.shape != x.shape:
        raise AttackInputError(f"pointwise: starting_points has shape {tuple(starting_points.shape)}, "
                               f"x has {tuple(x.shape)}")
    else:
        check_inputs(model, starting_points, y, bounds, "pointwise (starting_points)")
    adv = starting_points.detach().clone()
    ok = is_adversarial(model, adv, y, targeted)
    adv[~ok] = x[~ok]
    together = channels_together and x.dim() == 4
    # work on "entries": pixels (all channels at once) or single coordinates
    shape = (len(x), x.shape[1], -1) if together else (len(x), 1, -1)
    xe, ae = x.reshape(shape), adv.reshape(shape)  # (N, C, P) views

    def passes(try_entry):
        """Visit the changed entries of every active sample in random order; stop
        when a full pass improves nothing (or after max_passes)."""
        active = ok.clone()
        for _ in range(max_passes):
            if not active.any():
                break
            diff = (ae != xe).any(1) & active[:, None]  # (N, P)
            keys = _rand(diff.shape, x, generator) + (~diff).to(x.dtype) * 2  # changed first
            order = keys.argsort(1)
            counts = diff.sum(1)
            improved = torch.zeros_like(active)
            for k in range(int(counts.max())):
                rows = (counts > k).nonzero().flatten()
                improved[rows] |= try_entry(rows, order[rows, k])
            active &= improved

    def reset(rows, idx):
        cand = ae[rows].clone()
        cand[torch.arange(len(rows)), :, idx] = xe[rows, :, idx]
        good = is_adversarial(model, cand.view(len(rows), *x.shape[1:]), y[rows], targeted)
        r = rows[good]
        ae[r, :, idx[good]] = xe[r, :, idx[good]]
        return good

    passes(reset)
    if l2_search_steps > 0:
        resolution = (hi - lo) / 2 ** l2_search_steps

        def search(rows, idx):
            adv_v = ae[rows, :, idx].clone()  # (R, C): adversarial values
            clean_v = xe[rows, :, idx]
            start = adv_v.clone()
            for _ in range(l2_search_steps):
                mid = (adv_v + clean_v) / 2
                cand = ae[rows].clone()
                cand[torch.arange(len(rows)), :, idx] = mid
                good = is_adversarial(model, cand.view(len(rows), *x.shape[1:]), y[rows], targeted)
                adv_v = torch.where(good[:, None], mid, adv_v)
                clean_v = torch.where(good[:, None], clean_v, mid)
            ae[rows, :, idx] = adv_v
            # a move below the search's resolution is not an improvement (ends the passes)
            return ((adv_v - start).abs() > resolution).any(1)

        passes(search)
    return ae.reshape(x.shape).clamp_(lo, hi)


# --------------------------------------------------------------------- boundary


@torch.no_grad()
def blended_noise_start(model, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
                        tries: int = 100, search_steps: int = 20, bounds=(0.0, 1.0),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial starting points: uniform noise in the box that the model
    misclassifies (up to ``tries`` draws per sample), then a binary search for the
    smallest blend (1 - a) x + a noise that stays adversarial.  Samples for which no
    noise was adversarial are returned unchanged."""
    lo, hi = check_inputs(model, x, y, bounds, "blended_noise_start")
    check_model(model, x, y, "blended_noise_start")
    x, y = x.detach(), y.long()
    noise = x.clone()
    found = is_adversarial(model, x, y, targeted)
    for _ in range(tries):
        if found.all():
            break
        rows = (~found).nonzero().flatten()
        cand = lo + (hi - lo) * _rand((len(rows), *x.shape[1:]), x, generator)
        good = is_adversarial(model, cand, y[rows], targeted)
        noise[rows[good]] = cand[good]
        found[rows[good]] = True
    return line_search(model, x, y, noise, steps=search_steps, targeted=targeted)  # noise = x where none


@torch.no_grad()
def line_search(model, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, *, steps: int = 20,
                targeted: bool = False) -> torch.Tensor:
    """Per sample, a binary search for the smallest blend x + a (target - x), a in
    (0, 1], that the model still misclassifies; ``target`` must be adversarial (a = 1
    is taken as such, unchecked).  Only samples with target != x query the model;
    the others are returned as x.  Every returned blend with a < 1 was checked."""
    out = x.detach().clone()
    rows = (target != x).flatten(1).any(1).nonzero().flatten()
    if len(rows) == 0:
        return out
    xr, dr, yr = x[rows], target[rows] - x[rows], y[rows]
    a_lo = torch.zeros(len(rows), device=x.device, dtype=x.dtype)  # not adversarial (x itself)
    a_hi = torch.ones_like(a_lo)  # adversarial (the target)
    for _ in range(steps):
        mid = (a_lo + a_hi) / 2
        good = is_adversarial(model, xr + _view(mid, xr) * dr, yr, targeted)
        a_hi = torch.where(good, mid, a_hi)
        a_lo = torch.where(good, a_lo, mid)
    out[rows] = xr + _view(a_hi, xr) * dr
    return out


@torch.no_grad()
def boundary_attack(model, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5000,
                    spherical_step: float = 1e-2, source_step: float = 1e-2,
                    step_adaptation: float = 1.5, adapt_every: int = 10,
                    starting_points: torch.Tensor | None = None, targeted: bool = False,
                    min_source_step: float = 1e-7, bounds=(0.0, 1.0),
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Brendel et al.'s boundary attack (module docstring), one proposal per sample
    per step (two model queries: the spherical candidate and the full one).  A
    sample stops when its source step falls below ``min_source_step``."""
    lo, hi = check_inputs(model, x, y, bounds, "boundary_attack")
    check_model(model, x, y, "boundary_attack")
    x, y = x.detach(), y.long()
    if starting_points is None:
        starting_points = blended_noise_start(model, x, y, targeted=targeted, bounds=bounds,
                                              generator=generator)
    elif starting_points.shape != x.shape:
        raise AttackInputError(f"boundary_attack: starting_points has shape "
                               f"{tuple(starting_points.shape)}, x has {tuple(x.shape)}")
    else:
        check_inputs(model, starting_points, y, bounds, "boundary_attack (starting_points)")
    n = len(x)
    adv = starting_points.detach().clone()
    ok = is_adversarial(model, adv, y, targeted) & (adv != x).flatten(1).any(1)
    adv[~ok] = x[~ok]
    sph = torch.full((n,), spherical_step, device=x.device, dtype=x.dtype)
    src = torch.full((n,), source_step, device=x.device, dtype=x.dtype)
    sph_ok = torch.zeros(n, device=x.device)
    step_ok = torch.zeros(n, device=x.device)
    tried = torch.zeros(n, device=x.device)
    active = ok.clone()
    gen_device = generator.device if generator is not None else x.device
    for t in range(steps):
        rows = active.nonzero().flatten()
        if len(rows) == 0:
            break
        xo, xa = x[rows], adv[rows]
        to_x = (xo - xa).flatten(1)
        dist = to_x.norm(dim=1)
        unit = to_x / dist[:, None].clamp_min(1e-12)
        eta = torch.randn(to_x.shape, generator=generator, device=gen_device,
                          dtype=x.dtype).to(x.device)
        eta -= (eta * unit).sum(1, keepdim=True) * unit  # orthogonal to the source direction
        eta *= (sph[rows] * dist / eta.norm(dim=1).clamp_min(1e-12))[:, None]
        # the orthogonal step, pulled back onto the sphere of radius dist around x
        d_sph = 1.0 / torch.sqrt(sph[rows] ** 2 + 1)
        spherical = xo.flatten(1) + d_sph[:, None] * (eta - to_x)
        spherical = spherical.clamp_(lo, hi)
        # then a step towards x, correcting for the box clipping's deviation from the sphere
        back = xo.flatten(1) - spherical
        back_norm = back.norm(dim=1).clamp_min(1e-12)
        length = (src[rows] * dist + back_norm - dist).clamp_min(0) / back_norm
        candidate = (spherical + length[:, None] * back).clamp_(lo, hi)
        shp = (len(rows), *x.shape[1:])
        s_adv = is_adversarial(model, spherical.view(shp), y[rows], targeted)
        c_adv = is_adversarial(model, candidate.view(shp), y[rows], targeted)
        closer = (xo.flatten(1) - candidate).norm(dim=1) < dist
        accept = c_adv & closer
        adv[rows[accept]] = candidate[accept].view(-1, *x.shape[1:])
        sph_ok[rows] += s_adv.float()
        step_ok[rows] += c_adv.float()
        tried[rows] += 1
        if (t + 1) % adapt_every == 0:  # adapt the step sizes to the success rates
            rate_s, rate_c = sph_ok / tried.clamp_min(1), step_ok / tried.clamp_min(1)
            up_s, down_s = rate_s > 0.5, rate_s < 0.2
            sph = torch.where(up_s, sph * step_adaptation, torch.where(down_s, sph / step_adaptation, sph))
            src = torch.where(up_s, src * step_adaptation, torch.where(down_s, src / step_adaptation, src))
            up_c, down_c = rate_c > 0.5, rate_c < 0.2
            src = torch.where(up_c, src * step_adaptation, torch.where(down_c, src / step_adaptation, src))
            sph_ok.zero_(), step_ok.zero_(), tried.zero_()
            active &= src >= min_source_step
    return adv
