"""The shared training loop, as small named functions (no callback framework).

A paper's experiment writes its own visible epoch loop::

    loop = ctx.resumable("cce", {"model": model, "opt": opt}, state)
    for epoch in loop.epochs(cfg.epochs):
        stats = train_epoch(model, batches(x, y, batch_size=128, shuffle=True,
                                           generator=g), opt, cross_entropy_loss)
        state["history"].append({**stats, "test_acc": accuracy(model, xt, yt)})

Data sets here fit in memory, so ``batches`` slices tensors directly instead of
going through a DataLoader (for MNIST-sized data that is several times faster
on a CPU and bit-for-bit reproducible under an explicit generator).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False,
            device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Mini-batches of equally long in-memory tensors, optionally shuffled by ``generator``."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors of different lengths: {[len(t) for t in tensors]}")
    if shuffle:
        order = torch.randperm(n, generator=generator)
        tensors = tuple(t[order] for t in tensors)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = tuple(t[start:start + batch_size] for t in tensors)
        if device is not None:
            batch = tuple(t.to(device, non_blocking=True) for t in batch)
        yield batch


def cross_entropy_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def train_epoch(model: torch.nn.Module, batch_iter: Iterable, optimizer: torch.optim.Optimizer,
                loss_fn: Callable[..., torch.Tensor] = cross_entropy_loss,
                autocast: Callable | None = None) -> dict:
    """One pass over ``batch_iter``; ``loss_fn(model, *batch)`` returns the mean loss.

    Returns the sample-weighted mean training loss."""
    model.train()
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    amp = autocast or contextlib.nullcontext
    for batch in batch_iter:
        optimizer.zero_grad(set_to_none=True)
        with amp():
            loss = loss_fn(model, *batch)
        loss.backward()
        optimizer.step()
        total += loss.detach().double().cpu() * len(batch[0])
        count += len(batch[0])
    return {"train_loss": (total / max(count, 1)).item()}


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Model outputs for all of ``x`` in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out = torch.cat([model(xb.to(device)).float().cpu() for (xb,) in batches(x, batch_size=batch_size)])
    model.train(was_training)
    return out


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (predict(model, x, batch_size).argmax(1) == y).float().mean().item()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
