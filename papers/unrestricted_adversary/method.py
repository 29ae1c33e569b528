"""Unrestricted adversarial examples by a search in the latent space of an AC-GAN
(Song, Shu, Kushman & Ermon, "Constructing Unrestricted Adversarial Examples with
Generative Models", NeurIPS 2018, arXiv 1805.07894, §3), the oracle that stands in
for the paper's human labellers, and a small interval-bound (IBP) certified target.

The AC-GAN is ``common.gan``'s (a class-conditional generator g(z, y) and a critic
with an auxiliary classifier c).  For a source class s (and, targeted, a target t)
the search starts from a random z0 and minimises, per candidate,

    L(z) = L0(z) + lam1 L1(z) + lam2 L2(z)
    L0 = -log f(t | g(z, s))                    targeted: the target classifier f is
                                                pulled towards t
       = min_{t' != s} -log f(t' | g(z, s))     untargeted: towards the easiest other class
    L1 = mean_i max(|z_i - z0_i| - eps, 0)      keep z in a soft box around z0 (the
                                                paper's form; the reference code's:
                                                mean_i max((z_i - z0_i)^2 - eps^2, 0),
                                                ``box="squared"``)
    L2 = -log c(s | g(z, s))                    the AC-GAN's classifier keeps the source

The noise-augmented variant (``noise_eps > 0``) searches, with z, a per-image
perturbation tau: f sees x = clip(g(z, s) + noise_eps tanh(tau), 0, 1), c the clean
g(z, s) (as in the reference code, where the auxiliary logits are taken before the
noise is added).

Optimisers: the reference code's gradient descent (``"sgd"``: lr 1; Gaussian noise of
variance ``grad_noise`` / (1 + t)^0.55 added to z's gradient; tau's gradient
normalised to unit L2 norm per image), or Adam.  The reference averages the loss over
its batch of 64 candidates, which scales each candidate's gradient by 1/64 but not the
added noise; ``loss_scale`` (1/64) reproduces that per candidate, so the batch size
chosen here does not change the search.  Every candidate's loss depends on its own
variables only and both optimisers act elementwise (or per image), so a batch of N
candidates (all sources, targets and restarts at once) is N independent searches
(tests/test_unrestricted_adversary.py checks it against a per-candidate loop).

A candidate *fools* when f predicts t (untargeted: anything but s) and c still
predicts s (the reference code keeps only these).  The paper's success rate is
over the fooling candidates: the share that *humans* label as the source class
(maintainer's answer, ermongroup/generative_adversary issue #6), not the share of
attempts that fool f.  Human labels cannot be collected here, so ``proxy_success``
uses an oracle: an ensemble of classifiers trained independently of f (mean
softmax, argmax), a stand-in named as such in every claim.

The certified target (``certified_net``): the Kolter & Wong (2018) MNIST
architecture the paper attacks (conv 16 4x4 s2, conv 32 4x4 s2, fc 100, fc 10),
trained here with interval bound propagation (Gowal et al. 2018: cross entropy
mixed with the cross entropy of the worst-case logits over the L-inf ball) instead
of their dual-LP training; its certificate is IBP's (``certified_correct``).
``interval_bounds`` is for nn.Sequential nets of Conv2d / Linear / ReLU / Flatten
layers (papers/crown's IBP is on its MLP representation and has no convolutions).

Reference code whose details were followed (read, not copied):
ermongroup/generative_adversary (the attack's losses, its gradient noise, the
candidate filter by f and c).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.adversarial import evaluating
from common.gan import frozen

# ------------------------------------------------------------------ the loss terms


def classifier_loss(logits: torch.Tensor, source: torch.Tensor,
                    target: torch.Tensor | None = None) -> torch.Tensor:
    """L0 per candidate (N,): -log f(t | x) (targeted), else min over t != s of -log f(t | x)."""
    logp = F.log_softmax(logits, 1)
    if target is not None:
        return -logp.gather(1, target[:, None]).squeeze(1)
    others = logp.masked_fill(F.one_hot(source, logits.shape[1]).bool(), -math.inf)
    return -others.max(1).values


def box_loss(z: torch.Tensor, z0: torch.Tensor, eps: float, box: str = "abs") -> torch.Tensor:
    """L1 per candidate (N,): mean_i max(|z_i - z0_i| - eps, 0) (``"abs"``, the paper) or
    mean_i max((z_i - z0_i)^2 - eps^2, 0) (``"squared"``, the reference code)."""
    d = z - z0
    if box == "abs":
        return (d.abs() - eps).clamp(min=0).mean(1)
    if box == "squared":
        return (d.pow(2) - eps ** 2).clamp(min=0).mean(1)
    raise ValueError(f"box must be 'abs' or 'squared', not {box!r}")


def source_loss(aux_logits: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """L2 per candidate (N,): -log c(s | x), the AC-GAN classifier's cross entropy."""
    return F.cross_entropy(aux_logits, source, reduction="none")


def search_loss(f: nn.Module, aux: nn.Module, x: torch.Tensor, z: torch.Tensor, z0: torch.Tensor,
                source: torch.Tensor, target: torch.Tensor | None, *, lam1: float, lam2: float,
                eps: float, box: str = "abs", x_aux: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """L0 + lam1 L1 + lam2 L2 per candidate, and the logits of f on ``x`` and of c on
    ``x_aux`` (default ``x``)."""
    f_logits, c_logits = f(x), aux(x if x_aux is None else x_aux)
    l0 = classifier_loss(f_logits, source, target)
    l1 = box_loss(z, z0, eps, box)
    l2 = source_loss(c_logits, source)
    return l0 + lam1 * l1 + lam2 * l2, {"f_logits": f_logits, "c_logits": c_logits,
                                        "l0": l0, "l1": l1, "l2": l2}


def fooling(f_logits: torch.Tensor, c_logits: torch.Tensor, source: torch.Tensor,
            target: torch.Tensor | None) -> torch.Tensor:
    """Per candidate: f predicts the target (untargeted: not the source) and c the source."""
    fp, cp = f_logits.argmax(1), c_logits.argmax(1)
    hit = (fp == target) if target is not None else (fp != source)
    return hit & (cp == source)


# ------------------------------------------------------------------ the latent search


@dataclass
class SearchConfig:
    """The attack's knobs.  Reference defaults: lam1 = lam2 = 100, eps (z box) 0.1,
    noise_eps 0.1 (noise-augmented variant), 1000 iterations of gradient descent at lr 1
    with gradient noise 0.01 / (1 + t)^0.55."""

    steps: int = 1000
    lr: float = 1.0
    lam1: float = 100.0
    lam2: float = 100.0
    eps: float = 0.1
    box: str = "abs"
    noise_eps: float = 0.0        # > 0: the noise-augmented variant
    optimizer: str = "sgd"        # "sgd" (reference: descent + gradient noise) or "adam"
    grad_noise: float = 0.01      # sgd only: variance of the added gradient noise at t = 0
    loss_scale: float = 1 / 64    # the reference's mean over its batch of 64, per candidate


def latent_search(G: nn.Module, aux: nn.Module, f: nn.Module, z0: torch.Tensor, source: torch.Tensor,
                  target: torch.Tensor | None, cfg: SearchConfig,
                  generator: torch.Generator | None = None) -> dict:
    """Minimise the search loss for N candidates at once (see the module docstring).

    ``G(z, y)`` the conditional generator, ``aux(x)`` the AC-GAN's class logits, ``f(x)``
    the target classifier (all frozen, in eval mode, during the search); ``z0`` (N, d)
    the starting latents, ``source`` (N,), ``target`` (N,) or None (untargeted).
    ``generator`` draws the gradient noise (sgd) on the CPU.  Returns the final
    images ``x``, latents ``z``, ``f_pred``, ``c_pred``, ``fooled`` (N,), the final
    loss terms and ``x0`` = g(z0, s)."""
    with contextlib.ExitStack() as stack:  # all three in eval mode, without weight gradients
        for m in (G, aux, f):
            stack.enter_context(evaluating(m))
            stack.enter_context(frozen(m))
        z0 = z0.detach()
        z = z0.clone().requires_grad_(True)
        params = [z]
        tau = None
        if cfg.noise_eps > 0:
            tau = torch.zeros(len(z0), *_image_shape(G, z0, source), device=z0.device, dtype=z0.dtype,
                              requires_grad=True)
            params.append(tau)
        opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else None
        if cfg.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', not {cfg.optimizer!r}")

        def images(z, tau):
            clean = G(z, source)
            if tau is None:
                return clean, clean
            return (clean + cfg.noise_eps * torch.tanh(tau)).clamp(0, 1), clean

        def loss_of(z, tau):
            x, clean = images(z, tau)
            return search_loss(f, aux, x, z, z0, source, target, lam1=cfg.lam1, lam2=cfg.lam2,
                               eps=cfg.eps, box=cfg.box, x_aux=clean)

        for t in range(cfg.steps):
            loss, _ = loss_of(z, tau)
            # the sum: each candidate gets the gradient of its own (scaled) loss
            grads = torch.autograd.grad(cfg.loss_scale * loss.sum(), params)
            if opt is not None:
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
                continue
            sd = math.sqrt(cfg.grad_noise / (1 + t) ** 0.55)
            with torch.no_grad():
                gz = grads[0]
                if sd:
                    gz = gz + sd * torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
                z.sub_(cfg.lr * gz)
                if tau is not None:  # unit L2 norm per image (the reference's tau update)
                    g = grads[1]
                    tau.sub_(cfg.lr * g / g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1))
        with torch.no_grad():
            loss, parts = loss_of(z, tau)
            x, _ = images(z, tau)
            x0 = G(z0, source)
        return {"x": x, "z": z.detach(), "x0": x0, "loss": loss,
                "l0": parts["l0"], "l1": parts["l1"], "l2": parts["l2"],
                "f_pred": parts["f_logits"].argmax(1), "c_pred": parts["c_logits"].argmax(1),
                "fooled": fooling(parts["f_logits"], parts["c_logits"], source, target)}


def _image_shape(G, z0, source):
    with torch.no_grad():
        return G(z0[:1], source[:1]).shape[1:]


def pairs(n_classes: int, per_pair: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Every (source, target) pair with source != target, ``per_pair`` times each,
    source-major: (source, target) flattened to (N,), N = K (K - 1) per_pair."""
    s = torch.arange(n_classes, device=device).repeat_interleave(n_classes)
    t = torch.arange(n_classes, device=device).repeat(n_classes)
    keep = s != t
    return s[keep].repeat_interleave(per_pair), t[keep].repeat_interleave(per_pair)


# ------------------------------------------------------------------ the oracle (human stand-in)


class Oracle(nn.Module):
    """An ensemble of independently trained classifiers: mean of their softmax."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # probabilities, not logits
        return torch.stack([F.softmax(m(x), 1) for m in self.members]).mean(0)


def proxy_success(fooled: torch.Tensor, oracle_label: torch.Tensor, source: torch.Tensor) -> dict:
    """The paper's success rate with oracle labels in place of human ones: among the
    fooling candidates, the share the oracle labels as the source class (nan if no
    candidate fooled).  Also the share of attempts that fool (``fool_rate``, what issue
    #6's user measured) and the share of attempts that both fool and keep the source."""
    n = len(fooled)
    k = int(fooled.sum())
    agree = fooled & (oracle_label == source)
    return {"attempts": n, "fooling": k, "agreed": int(agree.sum()),
            "fool_rate": 100.0 * k / n if n else math.nan,
            "success_rate": 100.0 * int(agree.sum()) / k if k else math.nan,
            "success_per_attempt": 100.0 * int(agree.sum()) / n if n else math.nan}


def knn_label(x: torch.Tensor, ref_x: torch.Tensor, ref_y: torch.Tensor, k: int = 5,
              chunk: int = 500) -> torch.Tensor:
    """Majority label of the k nearest reference images (pixel L2): a second, gradient-free
    oracle (cross-check; ties go to the smallest label)."""
    rx = ref_x.flatten(1)
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk].flatten(1), rx)
        idx = d.topk(k, largest=False).indices
        votes = F.one_hot(ref_y[idx], int(ref_y.max()) + 1).sum(1)
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# ------------------------------------------------------------------ the certified target (IBP)


def certified_net(width: int = 16, hidden: int = 100) -> nn.Sequential:
    """Kolter & Wong's small MNIST CNN: conv(w, 4, s2) conv(2w, 4, s2) fc(hidden) fc(10)."""
    return nn.Sequential(nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * width * 49, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


def interval_bounds(net: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor):
    """Interval bound propagation through Conv2d / Linear / ReLU / Flatten layers:
    centre and radius through each affine layer (|W| on the radius), ReLU monotone."""
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            mid = layer(mid)
            if isinstance(layer, nn.Conv2d):
                rad = F.conv2d(rad, layer.weight.abs(), None, layer.stride, layer.padding,
                               layer.dilation, layer.groups)
            else:
                rad = F.linear(rad, layer.weight.abs())
            lo, hi = mid - rad, mid + rad
        elif isinstance(layer, nn.ReLU):
            lo, hi = lo.clamp(min=0), hi.clamp(min=0)
        elif isinstance(layer, nn.Flatten):
            lo, hi = layer(lo), layer(hi)
        else:
            raise TypeError(f"interval_bounds: unsupported layer {type(layer).__name__}")
    return lo, hi


def worst_logits(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """IBP's worst case over the L-inf ball (clipped to [0, 1]): the lower bound for the
    true class, the upper bound for every other (Gowal et al. 2018, eq. 6)."""
    lo, hi = interval_bounds(net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    true = F.one_hot(y, lo.shape[1]).bool()
    return torch.where(true, lo, hi)


def ibp_loss(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, *, eps: float,
             kappa: float = 0.5) -> torch.Tensor:
    """kappa CE(f(x), y) + (1 - kappa) CE(worst-case logits, y) (Gowal et al. 2018)."""
    return (kappa * F.cross_entropy(net(x), y)
            + (1 - kappa) * F.cross_entropy(worst_logits(net, x, y, eps), y))


@torch.no_grad()
def certified_correct(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float,
                      batch_size: int = 1000) -> torch.Tensor:
    """Per image: IBP proves that every image in the L-inf ball (in [0, 1]) is classified y."""
    out = []
    for i in range(0, len(x), batch_size):
        yy = y[i:i + batch_size]
        w = worst_logits(net, x[i:i + batch_size], yy, eps)
        true = w.gather(1, yy[:, None]).squeeze(1)
        rival = w.scatter(1, yy[:, None], -math.inf).max(1).values
        out.append(true > rival)  # lower(y) > upper(j) for every j != y
    return torch.cat(out)
