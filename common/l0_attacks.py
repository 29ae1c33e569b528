"""L0 attacks (few pixels, any magnitude) on PyTorch classifiers that return logits,
batched over images.  Conventions as in ``common.attacks``: ``(model, x, y, ...)``,
x (N, ...) in the box ``bounds``, the model in eval mode; returns adversarial inputs
shaped like x.

- ``jsma``: the Jacobian-based saliency map attack of Papernot et al. ("The
  limitations of deep learning in adversarial settings", EuroS&P 2016, Algorithms 2-3,
  the pixel-pair saliency map of eq. 10), targeted, increasing pixels (theta > 0) or
  decreasing them (theta < 0).  Per iteration and image: the forward derivatives of
  the logits (torchattacks 3.5's choice; the paper differentiates the softmax
  output) give alpha_pq = dZ_t/dx_p + dZ_t/dx_q and beta_pq = sum_{j != t} of the same;
  among pairs p != q of the search domain with alpha > 0 and beta < 0 (increasing;
  the reverse when decreasing) the pair maximising alpha |beta| gets theta added
  (then clipped to the box) and leaves the domain.  The domain starts as the pixels
  below hi - 0.01 (increasing; above lo + 0.01 when decreasing), as torchattacks.
  An image stops when the target is reached, after ceil(gamma n / 2) iterations
  (gamma: the largest fraction of the n features that may change, torchattacks'
  meaning of gamma), or when no pair qualifies -- there torchattacks picks pixel 0
  twice (the argmax of an all-zero map); we stop instead.  Only two backward passes
  per iteration (target logit, sum of logits), not the full Jacobian.
  ``tests/test_sparse_fourier.py`` checks it against ``torchattacks.JSMA``.
- ``carlini_wagner_l0``: Carlini & Wagner's L0 attack (S&P 2017, §V.B), batched:
  repeatedly solve the L2 problem (tanh box, Adam on ||delta||^2 + c max(Z_y -
  max_{j != y} Z_j, -kappa)) with only the *allowed* pixels free, c multiplied by
  ``const_factor`` until the attack succeeds (at most ``const_tries`` values); after a
  success shrink the allowed set -- drop every allowed pixel whose change is below
  ``tol`` and the ``shrink`` fraction (at least one) of the changed ones with the
  smallest |delta_i| |grad_i| -- and repeat until a round fails.  Returns the last
  successful adversarial, with changes below ``tol`` snapped back when it stays
  adversarial.  With ``max_pixels`` an adversarial that changes more pixels than that
  is replaced by x itself (no attack within the budget).  Each round starts from the
  previous round's adversarial (``warm_start``), as the original
  (carlini/nn_robust_attacks l0_attack.py, read, not copied), which however shrinks
  by about 0.3 sqrt(count) pixels per round; our fixed shrink fraction bounds the
  number of rounds (cost) and is our choice.

``l0_norm(x_adv, x)`` counts changed features per sample (channels counted apart).
"""

from __future__ import annotations

import math

import torch

from common.attacks import _check_logits, check_inputs, frozen, margin, success


def l0_norm(x_adv: torch.Tensor, x: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Number of features of each sample that differ by more than ``tol``."""
    return ((x_adv - x).abs() > tol).flatten(1).sum(1)


# ------------------------------------------------------------------ JSMA


def _forward_derivatives(model, x: torch.Tensor, target: torch.Tensor):
    """(dZ_target/dx, d(sum_{j != target} Z_j)/dx, logits), flattened per sample."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    z_t = logits.gather(1, target[:, None]).sum()
    g_t, g_all = (torch.autograd.grad(v, x, retain_graph=True)[0].flatten(1)
                  for v in (z_t, logits.sum()))
    return g_t, g_all - g_t, logits.detach()


def _best_pairs(g_t: torch.Tensor, g_o: torch.Tensor, domain: torch.Tensor, increasing: bool):
    """Per sample, the pair (p, q), p != q, both in ``domain``, that maximises
    alpha |beta| under the sign conditions; ``found`` is False where none qualifies.
    On ties the first (p, q) in row-major order wins, as in torchattacks."""
    n = g_t.shape[1]
    alpha = g_t[:, :, None] + g_t[:, None, :]
    beta = g_o[:, :, None] + g_o[:, None, :]
    ok = (alpha > 0) & (beta < 0) if increasing else (alpha < 0) & (beta > 0)
    ok &= domain[:, :, None] & domain[:, None, :]
    ok &= ~torch.eye(n, dtype=torch.bool, device=g_t.device)
    score = torch.where(ok, alpha * beta.abs(), torch.zeros((), dtype=alpha.dtype, device=alpha.device))
    best = score.flatten(1).argmax(1)
    found = ok.flatten(1).any(1)
    return best // n, best % n, found


def jsma(model, x: torch.Tensor, target: torch.Tensor, *, theta: float = 1.0, gamma: float = 0.1,
         bounds=(0.0, 1.0), batch_size: int = 32) -> torch.Tensor:
    """Targeted JSMA towards ``target`` (N,); see the module docstring.  ``batch_size``
    images at a time (the pair map has N n^2 entries)."""
    lo, hi = check_inputs(model, x, target, bounds, "jsma")
    x, target = x.detach(), target.long()
    with frozen(model):
        return torch.cat([_jsma_chunk(model, x[s:s + batch_size], target[s:s + batch_size],
                                      theta, gamma, lo, hi)
                          for s in range(0, len(x), batch_size)])


def _jsma_chunk(model, x, target, theta, gamma, lo, hi):
    shape, n = x.shape, x[0].numel()
    increasing = theta > 0
    adv = x.clone().flatten(1)
    domain = adv < hi - 0.01 if increasing else adv > lo + 0.01
    max_iters = int(math.ceil(n * gamma / 2.0))
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    rows = torch.arange(len(x), device=x.device)
    for it in range(max_iters + 1):
        g_t, g_o, logits = _forward_derivatives(model, adv.view(shape), target)
        if it == 0:
            _check_logits(logits, target, len(x), "jsma")
        active &= logits.argmax(1) != target
        active &= domain.any(1)
        if it == max_iters or not active.any():
            break
        idx = rows[active]
        p, q, found = _best_pairs(g_t[idx], g_o[idx], domain[idx], increasing)
        idx, p, q = idx[found], p[found], q[found]
        active[rows[active][~found]] = False
        adv[idx, p] = (adv[idx, p] + theta).clamp(lo, hi)
        adv[idx, q] = (adv[idx, q] + theta).clamp(lo, hi)
        domain[idx, p] = False
        domain[idx, q] = False
    return adv.view(shape)


# ------------------------------------------------------------------ Carlini-Wagner L0


def carlini_wagner_l0(model, x: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
                      confidence: float = 0.0, initial_const: float = 1.0, const_factor: float = 10.0,
                      const_tries: int = 3, steps: int = 100, lr: float = 0.05, rounds: int = 20,
                      shrink: float = 0.2, tol: float = 1e-3, allowed: torch.Tensor | None = None,
                      max_pixels: int | None = None, warm_start: bool = True, bounds=(0.0, 1.0),
                      batch_size: int | None = None) -> torch.Tensor:
    """C&W-L0 (see the module docstring).  ``allowed`` (shaped like x, bool): the pixels
    the attack may change at all (default: every one)."""
    lo, hi = check_inputs(model, x, y, bounds, "carlini_wagner_l0")
    x, y = x.detach(), y.long()
    allowed = torch.ones_like(x, dtype=torch.bool) if allowed is None else allowed.bool()
    chunk = batch_size or len(x)
    out = []
    with frozen(model):
        for s in range(0, len(x), chunk):
            out.append(_cwl0_chunk(model, x[s:s + chunk], y[s:s + chunk], allowed[s:s + chunk], targeted,
                                   confidence, initial_const, const_factor, const_tries, steps, lr,
                                   rounds, shrink, tol, lo, hi, warm_start))
    adv = torch.cat(out)
    if max_pixels is not None:
        over = l0_norm(adv, x) > max_pixels
        adv[over] = x[over]
    return adv


def _cw_objective(model, x, y, mask, w, const, targeted, kappa, lo, hi):
    half = (hi - lo) / 2
    x_new = torch.where(mask, lo + (torch.tanh(w) + 1) * half, x)
    logits = model(x_new)
    m = margin(logits, y)
    f = (-m + kappa).clamp_min(0) if targeted else (m + kappa).clamp_min(0)
    l2sq = (x_new - x).flatten(1).pow(2).sum(1)
    return x_new, logits, (l2sq + const * f)


def _l2_round(model, x, y, mask, const, targeted, kappa, steps, lr, lo, hi, start=None):
    """One L2 solve with only the ``mask`` pixels free, every sample at once, from
    ``start`` (default x); returns the adversarial iterate of smallest L2 distance per
    sample, and which samples got one."""
    half = (hi - lo) / 2
    start = x if start is None else start
    w = torch.atanh(((start - lo) / half - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    n = len(x)
    best = x.clone()
    best_l2 = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    for _ in range(steps):
        x_new, logits, loss = _cw_objective(model, x, y, mask, w, const, targeted, kappa, lo, hi)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            adv = success(logits, y, targeted)
            if kappa > 0:
                m = margin(logits, y)
                adv &= (m >= kappa) if targeted else (m <= -kappa)
            l2 = (x_new - x).flatten(1).norm(dim=1)
            better = adv & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            best[better] = x_new.detach()[better]
    return best, torch.isfinite(best_l2)


def _cwl0_chunk(model, x, y, allowed, targeted, kappa, c0, c_factor, c_tries, steps, lr, rounds,
                shrink, tol, lo, hi, warm_start):
    n = len(x)
    mask = allowed.clone()
    result = x.clone()
    ever = torch.zeros(n, dtype=torch.bool, device=x.device)
    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    warm = x.clone()  # each round starts from the last success (on the pixels still allowed)
    for _ in range(rounds):
        idx = alive.nonzero().flatten()
        if len(idx) == 0:
            break
        const = torch.full((len(idx),), c0, dtype=x.dtype, device=x.device)
        got = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        adv = x[idx].clone()
        for _ in range(c_tries):  # raise c until the round succeeds
            todo = (~got).nonzero().flatten()
            if len(todo) == 0:
                break
            sub = idx[todo]
            a, ok = _l2_round(model, x[sub], y[sub], mask[sub], const[todo], targeted, kappa, steps,
                              lr, lo, hi, start=warm[sub] if warm_start else None)
            adv[todo[ok]] = a[ok]
            got[todo[ok]] = True
            const[todo] *= c_factor
        # a failed round ends the search for that sample (its last success stays)
        alive[idx[~got]] = False
        win = idx[got]
        if len(win) == 0:
            break
        result[win] = adv[got]
        ever[win] = True
        warm[win] = adv[got]
        # shrink the allowed set of the winners
        a = adv[got]
        xa = a.detach().requires_grad_(True)
        logits = model(xa)
        m = margin(logits, y[win])
        (g,) = torch.autograd.grad((-m if targeted else m).sum(), xa)
        delta = (a - x[win]).abs()
        flat_mask = mask[win].flatten(1)
        changed = flat_mask & (delta.flatten(1) > tol)
        sal = torch.where(changed, delta.flatten(1) * g.abs().flatten(1),
                          torch.full_like(delta.flatten(1), float("inf")))
        count = changed.sum(1)
        drop = torch.clamp((shrink * count.to(x.dtype)).ceil().long(), min=1)
        order = sal.argsort(1)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(order.shape[1], device=x.device).expand_as(order).contiguous())
        new_mask = changed & (ranks >= drop[:, None])
        alive[win[new_mask.sum(1) == 0]] = False
        mask[win] = new_mask.view_as(mask[win])
        warm[win] = torch.where(mask[win], warm[win], x[win])
    # snap sub-tolerance changes back where the point stays adversarial
    snapped = torch.where((result - x).abs() > tol, result, x)
    with torch.no_grad():
        keep = success(model(snapped), y, targeted) & ever
    result[keep] = snapped[keep]
    return result
