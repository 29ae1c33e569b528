"""Gradient-based attribution maps shared by papers/sanity_checks (Adebayo et al.,
NeurIPS 2018) and papers/senn (Alvarez-Melis & Jaakkola, NeurIPS 2018): maps for
one selected logit per image, batched over images.

- Gradient (Simonyan et al.): dS_c/dx.
- Gradient (.) Input.
- Integrated Gradients (Sundararajan et al.): (x - x0) times the average gradient
  on the straight path from the baseline x0 (zero by default), trapezoid rule.

``create_graph=True`` keeps the map differentiable in x (and in the model's
weights), for estimators that differentiate an explanation (SENN's local
Lipschitz estimate by projected gradient).  Cross-checked against captum in
tests/test_sanity_checks.py.
"""

from __future__ import annotations

import torch


def selected_logit_grad(model, x, target, create_graph: bool = False):
    """d model(x)[i, target[i]] / d x[i] for every image i, in one backward pass."""
    if not (create_graph and x.requires_grad):  # else: x is already part of the caller's graph
        x = x.detach().requires_grad_(True)
    out = model(x)
    score = out.gather(1, target[:, None]).sum()
    (g,) = torch.autograd.grad(score, x, create_graph=create_graph)
    return g


def predicted_class(model, x, batch_size: int = 1000) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(xb).argmax(1) for xb in x.split(batch_size)])


def gradient(model, x, target, create_graph: bool = False):
    return selected_logit_grad(model, x, target, create_graph)


def grad_x_input(model, x, target, create_graph: bool = False):
    return gradient(model, x, target, create_graph) * x


def integrated_gradients(model, x, target, steps: int = 50, baseline=None, create_graph: bool = False):
    """Trapezoid rule on ``steps`` equally spaced points of [0, 1], all path points
    of all images in one batch; works for any input shape (B x ...)."""
    baseline = torch.zeros_like(x) if baseline is None else baseline
    alphas = torch.linspace(0, 1, steps, dtype=x.dtype, device=x.device)
    w = torch.full((steps,), 1.0 / (steps - 1), dtype=x.dtype, device=x.device)
    w[0] = w[-1] = 0.5 / (steps - 1)
    view = (-1,) + (1,) * x.dim()
    path = baseline[None] + alphas.view(view) * (x - baseline)[None]  # S x B x ...
    g = selected_logit_grad(model, path.flatten(0, 1), target.repeat(steps), create_graph)
    avg = (g.view(steps, *x.shape) * w.view(view)).sum(0)
    return (x - baseline) * avg
