"""Zhao, Dua & Singh, "Generating Natural Adversarial Examples" (ICLR 2018): search the
latent space of a GAN for the nearest z~ to the inverted code z = I(x) whose image G(z~)
a black-box classifier labels differently; the natural adversary is G(z~), its
distance Delta z = ||z~ - z||.

The two searches (paper Algorithms 1 and 2), batched over images and the N random
directions of a round: every round is one generator call and one classifier call on
a (images x N) batch.  They follow zhengliz/natural-adversary, image/search.py
(``iterative_search`` and ``recursive_search``; our code is written anew):

- iterative stochastic search (Alg. 1): N perturbations with direction uniform on the
  sphere and length uniform in [r, r + dr); r grows by dr from 0 until some
  perturbation flips the prediction; the shortest flipping one is kept.
- hybrid shrinking search (Alg. 2): lengths in [l, h) = [0, 10) first.  A flip at d
  below the best so far: [l, h) = [d/2, d); a flip that does not improve: h halves
  towards l; no flip: l moves half-way up to h.  The phase ends after ``stop``
  rounds without improvement or when h - l < dr.  Then a fine iterative phase walks
  down from the best d in annuli of width dr, resampling an annulus until ``stop``
  consecutive failures.

The classifier is a black box: ``predict(images) -> labels`` (no gradients, no
scores).  The target classifiers: LeNet (``LeNet``) and a scikit-learn random forest
(``forest_predictor``), as in the paper's MNIST experiment.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn

Predict = Callable[[torch.Tensor], torch.Tensor]


class LeNet(nn.Module):
    """LeNet-5 (conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, fc 10; ReLU), every
    layer's width times ``width`` (the Fig.-4 analogue varies it)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c1, c2, f1, f2 = (max(1, round(v * width)) for v in (6, 16, 120, 84))
        self.net = nn.Sequential(nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(c2 * 25, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU(),
                                 nn.Linear(f2, 10))

    def forward(self, x):
        return self.net(x)


def torch_predictor(model: nn.Module, batch_size: int = 4096) -> Predict:
    """Black-box labels of a torch classifier (eval mode, no gradients), on the CPU."""
    @torch.no_grad()
    def predict(x):
        model.eval()
        dev = next(model.parameters()).device
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([model(x[i:i + batch_size].to(dev)).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)])
    return predict


def forest_predictor(forest) -> Predict:
    """Black-box labels of a fitted scikit-learn classifier on flattened images."""
    def predict(x):
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.long)
        flat = x.detach().flatten(1).cpu().numpy().astype(np.float32)
        return torch.from_numpy(np.asarray(forest.predict(flat), dtype=np.int64))
    return predict


@torch.no_grad()
def decode(G: nn.Module, z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """G(z) in eval mode and in chunks, on the CPU."""
    G.eval()
    dev = next(G.parameters()).device
    if len(z) == 0:
        return torch.zeros(0, 1, 28, 28)
    return torch.cat([G(z[i:i + batch_size].to(dev)).cpu() for i in range(0, len(z), batch_size)])


def perturb(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of B codes, ``n`` candidates z + d u, u uniform on the unit sphere (a
    normalised Gaussian), d ~ U[lo_b, hi_b).  Returns candidates (B, n, dim), lengths (B, n)."""
    b, dim = z.shape
    u = torch.randn(b, n, dim, generator=generator, dtype=z.dtype)
    u = u / u.norm(dim=2, keepdim=True)
    d = lo[:, None] + torch.rand(b, n, generator=generator, dtype=z.dtype) * (hi - lo)[:, None]
    return z[:, None, :] + d[..., None] * u, d


def _round(G, predict, z, y, lo, hi, n, generator):
    """One search round for B images: the shortest flipping length per image (inf if
    none), its candidate code, and the flipped label."""
    cand, d = perturb(z, lo, hi, n, generator)
    labels = predict(decode(G, cand.flatten(0, 1))).view(len(z), n)
    flip = labels != y[:, None]
    dd = torch.where(flip, d, torch.full_like(d, float("inf")))
    best, idx = dd.min(1)
    rows = torch.arange(len(z))
    return best, cand[rows, idx], labels[rows, idx]


def iterative_search(G, predict: Predict, z: torch.Tensor, y: torch.Tensor, *, n: int = 5000,
                     step: float = 0.01, max_r: float = 10.0,
                     generator: torch.Generator | None = None) -> dict:
    """Algorithm 1 for every image at once: annuli [r, r + step) from r = 0, until a flip
    (or r >= max_r: not found, d = inf).  Returns d (B,), z_adv (B, dim), y_adv (B,),
    queries (B,: classifier queries spent per image) and rounds."""
    z, y = z.detach().cpu().double(), y.cpu()
    b = len(z)
    r = torch.zeros(b, dtype=z.dtype)
    d_adv = torch.full((b,), float("inf"), dtype=z.dtype)
    z_adv, y_adv = z.clone(), y.clone()
    queries = torch.zeros(b, dtype=torch.long)
    active = torch.ones(b, dtype=torch.bool)
    rounds = 0
    while active.any():
        a = active.nonzero().squeeze(1)
        best, zc, yc = _round(G, predict, z[a].float(), y[a], r[a].float(), (r[a] + step).float(), n, generator)
        best, zc = best.double(), zc.double()
        queries[a] += n
        rounds += 1
        found = torch.isfinite(best)
        d_adv[a[found]], z_adv[a[found]], y_adv[a[found]] = best[found], zc[found], yc[found]
        r[a] += step
        active[a[found]] = False
        active &= r < max_r
    return {"d": d_adv, "z_adv": z_adv, "y_adv": y_adv, "queries": queries, "rounds": rounds}


def hybrid_search(G, predict: Predict, z: torch.Tensor, y: torch.Tensor, *, n: int = 5000,
                  step: float = 0.01, l0: float = 0.0, h0: float = 10.0, stop: int = 5,
                  generator: torch.Generator | None = None, max_rounds: int = 1000) -> dict:
    """Algorithm 2 (hybrid shrinking search) for every image at once; see the module
    docstring.  Returns d (B,; inf if never found), z_adv, y_adv, queries (B,), rounds."""
    z, y = z.detach().cpu().double(), y.cpu()
    b = len(z)
    lo = torch.full((b,), l0, dtype=z.dtype)
    hi = torch.full((b,), h0, dtype=z.dtype)
    d_adv = torch.full((b,), float("inf"), dtype=z.dtype)
    z_adv, y_adv = z.clone(), y.clone()
    counter = torch.ones(b, dtype=torch.long)
    queries = torch.zeros(b, dtype=torch.long)
    active = torch.ones(b, dtype=torch.bool)
    rounds = 0

    def run_round(a):
        best, zc, yc = _round(G, predict, z[a].float(), y[a], lo[a].float(), hi[a].float(), n, generator)
        queries[a] += n
        best = best.double()
        better = best < d_adv[a]
        d_adv[a[better]], z_adv[a[better]], y_adv[a[better]] = best[better], zc[better].double(), yc[better]
        return torch.isfinite(best), better, best

    # phase 1: shrinking (bisection-like) on [l, h)
    while active.any() and rounds < max_rounds:
        a = active.nonzero().squeeze(1)
        found, better, best = run_round(a)
        rounds += 1
        l_, h_, c_ = lo[a], hi[a], counter[a]
        none = ~found
        end_none = none & (h_ - l_ < step)          # nothing flips in a bracket below dr: done
        l_new = torch.where(none, l_ + 0.5 * (h_ - l_), l_)
        h_new = h_.clone()
        c_new = torch.where(none, torch.ones_like(c_), c_)
        # a flip that improves the best: [d/2, d); one that does not: halve towards l
        l_new = torch.where(better, 0.5 * best, l_new)
        h_new = torch.where(better, best, h_new)
        c_new = torch.where(better, torch.ones_like(c_), c_new)
        worse = found & ~better
        h_new = torch.where(worse, l_ + 0.5 * (h_ - l_), h_new)
        c_new = torch.where(worse, c_ + 1, c_new)
        end_found = found & ((c_new > stop) | (h_new - l_new < step))
        lo[a], hi[a], counter[a] = l_new, h_new, c_new
        active[a[end_none | end_found]] = False
    # phase 2: walk down from the best d in annuli [h - dr, h)
    hi = torch.where(torch.isfinite(d_adv), d_adv, hi)
    lo = (hi - step).clamp(min=0)
    counter = torch.ones(b, dtype=torch.long)
    active = hi > 1e-4
    while active.any() and rounds < max_rounds:
        a = active.nonzero().squeeze(1)
        found, _, _ = run_round(a)
        rounds += 1
        h_new = torch.where(found, lo[a], hi[a])
        lo[a] = torch.where(found, (h_new - step).clamp(min=0), lo[a])
        hi[a] = h_new
        counter[a] = torch.where(found, torch.ones_like(counter[a]), counter[a] + 1)
        active[a] = (counter[a] <= stop) & (hi[a] > 1e-4)
    return {"d": d_adv, "z_adv": z_adv, "y_adv": y_adv, "queries": queries, "rounds": rounds}
