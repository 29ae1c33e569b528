"""Self-explaining neural networks (SENN) and the local Lipschitz estimate of explanations.

Alvarez-Melis & Jaakkola, "Towards robust interpretability with self-explaining
neural networks", NeurIPS 2018, arXiv:1806.07538.

The model (§3): f(x) = sum_k theta(x)_k h(x)_k per class, i.e. logits = theta(x)^T h(x),
with

- h, the concept encoder: the raw features (h(x) = x, ``IdentityConceptizer``) or a
  learned autoencoder-style conceptizer (``ConvConceptizer``) trained with a
  reconstruction loss and an L1 sparsity penalty on the concepts;
- theta, the parametrizer: any deep net giving a relevance per concept and class
  (k x C), squashed by tanh as in the reference code;
- the sum aggregator.

The robustness (stability) regulariser (§3, eq. 5; the reference's ``grad3``):
L_theta(x) = || J_x f(x) - theta(x)^T J_x h(x) ||_F, zero exactly when f behaves
locally like a linear model in the concepts with coefficients theta(x) (then the
explanation theta is the model's own gradient with respect to h).  The per-sample
Jacobians J_x f (C x D) and J_x h (k x D) come from ``torch.func`` (``jacrev``
inside ``vmap``), one reverse pass per output row, batched over samples; the
reference computes them with a Python loop over outputs.  Our L_theta is the
per-sample Frobenius norm averaged over the batch (the reference takes one norm
of the whole batch's residual tensor).

The stability metric (§5): the local Lipschitz estimate of an explanation g,
L(x) = max_{||x' - x|| <= eps} ||g(x) - g(x')|| / ||x - x'||, here by

- ``lipschitz_pgd``: projected normalised-gradient ascent on the ratio, batched
  over images and random restarts (for differentiable explainers; the reference
  used black-box Bayesian optimisation instead);
- ``lipschitz_random``: the best of random points in the ball (gradient-free:
  for Lime / KernelShap / Occlusion);
- ``lipschitz_discrete``: the best ratio over the other data points within eps
  (the paper's discrete variant).

Reference code read for details: dmelis/SENN (SENN/conceptizers.py
image_cnn_conceptizer, SENN/parametrizers.py image_parametrizer, SENN/trainers.py
GradPenaltyTrainer, SENN/eval_utils.py local_lipschitz_estimate).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import jacrev, vmap

ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh}


# ------------------------------------------------------------------ the model


class IdentityConceptizer(nn.Module):
    """h(x) = x (flattened): the concepts are the input features."""

    learnable = False

    def forward(self, x):
        return x.flatten(1)


class ConvConceptizer(nn.Module):
    """The reference's image_cnn_conceptizer, for 28 x 28 images: conv 5x5 (10) -
    pool - act - conv 5x5 (k) - pool - act - a linear map of each concept's 4 x 4
    map to one number (shared across concepts); the decoder mirrors it with
    transposed convolutions (4 -> 11 -> 15 -> 28), sigmoid output (our images are in
    [0, 1]; the reference's tanh fitted normalised images)."""

    learnable = True

    def __init__(self, concepts: int = 5, act: str = "silu"):
        super().__init__()
        self.k = concepts
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, concepts, 5)
        self.linear = nn.Linear(16, 1)
        self.unlinear = nn.Linear(1, 16)
        self.deconv3 = nn.ConvTranspose2d(concepts, 16, 5, stride=2)
        self.deconv2 = nn.ConvTranspose2d(16, 8, 5)
        self.deconv1 = nn.ConvTranspose2d(8, 1, 2, stride=2, padding=1)
        self.act = ACTIVATIONS[act]()

    def forward(self, x):
        p = self.act(F.max_pool2d(self.conv1(x), 2))
        p = self.act(F.max_pool2d(self.conv2(p), 2))  # B x k x 4 x 4
        return self.linear(p.flatten(2)).squeeze(-1)  # B x k

    def decode(self, h):
        q = self.unlinear(h[..., None]).view(-1, self.k, 4, 4)
        q = self.act(self.deconv3(q))
        q = self.act(self.deconv2(q))
        return torch.sigmoid(self.deconv1(q))


class ConvParametrizer(nn.Module):
    """The reference's image_parametrizer (conv 5x5 10 - pool - conv 5x5 20 - pool)
    with a hidden layer of 50 as the UvA reproduction (AmanDaVinci/SENN), tanh
    output, theta: B x k x C.  No dropout (it would make theta, and so the
    explanation, random; and ``vmap`` would need per-sample randomness)."""

    def __init__(self, concepts: int, classes: int, act: str = "silu", hidden: int = 50):
        super().__init__()
        self.k, self.c = concepts, classes
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.fc1 = nn.Linear(320, hidden)
        self.fc2 = nn.Linear(hidden, concepts * classes)
        self.act = ACTIVATIONS[act]()

    def forward(self, x):
        p = self.act(F.max_pool2d(self.conv1(x), 2))
        p = self.act(F.max_pool2d(self.conv2(p), 2))
        p = self.act(self.fc1(p.flatten(1)))
        return torch.tanh(self.fc2(p)).view(-1, self.k, self.c)


class MLPParametrizer(nn.Module):
    """theta for tabular data: an MLP d -> hidden -> hidden -> k x C, tanh output."""

    def __init__(self, features: int, concepts: int, classes: int, hidden=(64, 64), act: str = "silu"):
        super().__init__()
        self.k, self.c = concepts, classes
        self.net = mlp(features, concepts * classes, hidden, act)

    def forward(self, x):
        return torch.tanh(self.net(x.flatten(1))).view(-1, self.k, self.c)


def mlp(features: int, outputs: int, hidden=(64, 64), act: str = "silu") -> nn.Sequential:
    layers, d = [], features
    for w in hidden:
        layers += [nn.Linear(d, w), ACTIVATIONS[act]()]
        d = w
    return nn.Sequential(*layers, nn.Linear(d, outputs))


class SENN(nn.Module):
    """logits = theta(x)^T h(x) (sum aggregator); ``parts`` also returns h and theta."""

    def __init__(self, conceptizer: nn.Module, parametrizer: nn.Module):
        super().__init__()
        self.conceptizer, self.parametrizer = conceptizer, parametrizer

    def parts(self, x):
        h = self.conceptizer(x)  # B x k
        theta = self.parametrizer(x)  # B x k x C
        return torch.einsum("bk,bkc->bc", h, theta), h, theta

    def forward(self, x):
        return self.parts(x)[0]


class CNN(nn.Module):
    """The unregularised MNIST classifier the post-hoc explainers explain: conv 5x5
    (16) - pool - conv 5x5 (32) - pool - fc 100 - 10 ('same' padding)."""

    def __init__(self, act: str = "silu", c1: int = 16, c2: int = 32, fc: int = 100):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), ACTIVATIONS[act](), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), ACTIVATIONS[act](), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 49, fc), ACTIVATIONS[act](), nn.Linear(fc, 10))

    def forward(self, x):
        return self.net(x)


# ---------------------------------------------------------- the stability term


def jacobians(model: SENN, x: torch.Tensor):
    """Per-sample Jacobians of the logits (B x C x D) and the concepts (B x k x D)
    with respect to the (flattened) input, by ``vmap(jacrev(.))``, plus the forward
    pass's logits, h and theta (as the jacobians' aux output, reused by the loss)."""

    def one(xi):
        logits, h, theta = model.parts(xi.unsqueeze(0))
        return (logits[0], h[0]), (logits[0], h[0], theta[0])

    (jf, jh), (logits, h, theta) = vmap(jacrev(one, has_aux=True))(x)
    return jf.flatten(2), jh.flatten(2), logits, h, theta


def stability_residual(jf, jh, theta):
    """J_x f - theta^T J_x h per sample: B x C x D."""
    return jf - torch.einsum("bkc,bkd->bcd", theta, jh)


def stability_penalty(model: SENN, x: torch.Tensor):
    """Mean over the batch of || J_x f - theta^T J_x h ||_F, with the forward outputs."""
    jf, jh, logits, h, theta = jacobians(model, x)
    pen = stability_residual(jf, jh, theta).flatten(1).norm(dim=1).mean()
    return pen, logits, h, theta


def senn_loss(model: SENN, x, y, lam: float, recon: float = 1.0, sparsity: float = 1e-4):
    """Cross entropy + lam L_theta (+ recon ||x_hat - x||^2 + sparsity |h|_1 for a
    learned conceptizer).  The stability term is skipped (not computed) at lam = 0.
    Returns the loss and its parts (detached)."""
    if lam > 0:
        pen, logits, h, _ = stability_penalty(model, x)
    else:
        logits, h, _ = model.parts(x)
        pen = torch.zeros((), device=x.device)
    ce = F.cross_entropy(logits, y)
    loss = ce + lam * pen
    rec = torch.zeros((), device=x.device)
    if model.conceptizer.learnable:
        rec = F.mse_loss(model.conceptizer.decode(h), x)
        loss = loss + recon * rec + sparsity * h.abs().sum(1).mean()
    return loss, {"ce": ce.detach(), "penalty": pen.detach(), "recon": rec.detach()}


# ------------------------------------------------ local Lipschitz estimates

Explainer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # g(x, target) -> B x ...


def ball_points(x: torch.Tensor, eps: float, n: int, generator: torch.Generator,
                min_frac: float = 0.0) -> torch.Tensor:
    """n points per input uniformly distributed in the L2 ball of radius eps
    around each x (n x B x ...): Gaussian directions, radius eps u^(1/D)
    (u uniform on [min_frac^D, 1], i.e. radius >= min_frac eps)."""
    shape = (n, *x.shape)
    d = torch.randn(shape, generator=generator, dtype=x.dtype).to(x.device)
    d = d / d.flatten(2).norm(dim=2).clamp_min(1e-30).view(n, len(x), *(1,) * (x.dim() - 1))
    dim = x[0].numel()
    lo = min_frac ** dim
    u = lo + (1 - lo) * torch.rand((n, len(x)), generator=generator, dtype=x.dtype).to(x.device)
    r = eps * u ** (1.0 / dim)
    return x[None] + d * r.view(n, len(x), *(1,) * (x.dim() - 1))


def _ratio(gz, gx, z, x):
    num = (gz - gx).flatten(1).norm(dim=1)
    den = (z - x).flatten(1).norm(dim=1)
    return num / den.clamp_min(1e-30)


def lipschitz_pgd(g: Explainer, x: torch.Tensor, target: torch.Tensor, eps: float,
                  steps: int = 20, restarts: int = 4, step_size: float | None = None,
                  generator: torch.Generator | None = None, min_frac: float = 0.01) -> torch.Tensor:
    """max_{min_frac eps <= ||x' - x||_2 <= eps} ||g(x') - g(x)|| / ||x' - x|| per
    input, by projected normalised-gradient ascent on the ratio from ``restarts``
    random starts in the ball, all images and restarts in one batch; the best ratio
    of every evaluated point counts.  The inner radius min_frac eps keeps the
    float32 difference g(x') - g(x) away from cancellation.  ``g`` must be
    differentiable in its input (a gradient map with create_graph)."""
    generator = generator or torch.Generator().manual_seed(0)
    step_size = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    B = len(x)
    with torch.enable_grad():
        gx = g(x, target).detach()
        gx = gx.repeat(restarts, *(1,) * (gx.dim() - 1))
    xr = x.repeat(restarts, *(1,) * (x.dim() - 1))
    tr = target.repeat(restarts)
    z = ball_points(x, eps, restarts, generator, min_frac).flatten(0, 1)
    best = torch.zeros(len(xr), dtype=torch.float64, device=x.device)
    view = (-1, *(1,) * (x.dim() - 1))
    for step in range(steps + 1):
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            r = _ratio(g(z, tr), gx, z, xr)
            best = torch.maximum(best, r.detach().double())
            if step == steps:
                break
            (grad,) = torch.autograd.grad(r.sum(), z)
        gn = grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(view)
        d = (z.detach() + step_size * grad / gn) - xr
        dn = d.flatten(1).norm(dim=1).view(view)
        d = d * (dn.clamp(min_frac * eps, eps) / dn.clamp_min(1e-30))  # back into the shell
        z = xr + d
    return best.view(restarts, B).amax(0)


@torch.no_grad()
def lipschitz_random(g: Explainer, x: torch.Tensor, target: torch.Tensor, eps: float,
                     samples: int = 16, generator: torch.Generator | None = None,
                     min_frac: float = 0.01) -> torch.Tensor:
    """The best ratio over ``samples`` random points of the ball per input (a
    gradient-free lower bound on the local Lipschitz constant), one call of g on
    all images x samples."""
    generator = generator or torch.Generator().manual_seed(0)
    with torch.enable_grad():
        gx = g(x, target).detach()
        z = ball_points(x, eps, samples, generator, min_frac)  # S x B x ...
        gz = g(z.flatten(0, 1), target.repeat(samples)).detach()
    r = _ratio(gz, gx.repeat(samples, *(1,) * (gx.dim() - 1)), z.flatten(0, 1),
               x.repeat(samples, *(1,) * (x.dim() - 1)))
    return r.double().view(samples, len(x)).amax(0)


@torch.no_grad()
def lipschitz_discrete(expl: torch.Tensor, x: torch.Tensor, eps: float):
    """The discrete estimate: for each point i, max over the other points j with
    0 < ||x_i - x_j|| <= eps of ||g_i - g_j|| / ||x_i - x_j||.  Returns the
    estimates (nan where i has no neighbour within eps) and the neighbour counts."""
    xf, gf = x.flatten(1).double(), expl.flatten(1).double()
    dx = torch.cdist(xf, xf)
    dg = torch.cdist(gf, gf)
    near = (dx <= eps) & (dx > 0)
    ratio = torch.where(near, dg / dx.clamp_min(1e-300), torch.full_like(dx, -math.inf)).amax(1)
    count = near.sum(1)
    return torch.where(count > 0, ratio, torch.full_like(ratio, math.nan)), count
