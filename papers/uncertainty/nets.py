"""Small pieces the toy topics share: an MLP and a full-batch Adam fit.

The toy problems (aleatoric, mdn, flows) have a few hundred to a few thousand
points, so every step sees the whole training set: no minibatch noise, and a
fit is a pure function of its seed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def mlp(n_in: int, n_out: int, hidden: int = 50, depth: int = 2, act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def fit(params, loss_fn: Callable[[], torch.Tensor], steps: int, lr: float,
        progress=None, log_every: int = 0) -> list[float]:
    """Full-batch Adam on ``loss_fn()`` for ``steps`` steps; returns the loss
    every ``log_every`` steps (and the last one)."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()
        if (log_every and step % log_every == 0) or step == steps - 1:
            curve.append(loss.item())
        if progress is not None:
            progress.update(1)
    return curve


def scalar_metrics(results: dict[str, dict]) -> dict[str, float]:
    """``{"<key>/<name>": value}`` for every float of every sub-result (what
    metrics.json holds; lists and curves stay in the saved results)."""
    return {f"{key}/{name}": v for key, r in results.items() for name, v in r.items() if isinstance(v, float)}
