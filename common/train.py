"""The shared training loop, as small named functions (no callback framework).

A paper's experiment writes its own visible epoch loop::

    x, y = to_device(x, y, device=ctx.device)         # MNIST-sized data lives on the device
    loop = ctx.resumable("cce", {"model": model, "opt": opt}, state)
    for epoch in loop.epochs(cfg.epochs):
        stats = train_epoch(model, batches(x, y, batch_size=128, shuffle=True, generator=g),
                            opt, cross_entropy_loss, autocast=ctx.autocast)
        state["history"].append({**stats, "test_acc": accuracy(model, xt, yt)})

or, for training counted in updates rather than epochs, ``train_steps`` (TD-VAE's).

On a GPU:

- Data sets here fit in memory, so ``batches`` indexes tensors directly instead of
  going through a DataLoader; with the tensors on the device (``to_device``) every
  batch is a slice of device memory.  The shuffling permutation is always drawn on
  the CPU from the run's CPU generator and copied to the data's device, so the data
  order, and every CPU result, is the same whatever the device.  Data kept on the
  host can be pinned (``to_device(..., pin=True)``) and copied per batch
  (``batches(..., device=...)``), an opt-in the CPU path does not need.
- Losses are accumulated on the device; the host waits for the device once per epoch
  (or per ``train_steps`` call), in ``to_host``.  Nothing inside the loops calls
  ``.item()`` or ``.cpu()`` (tests/test_devices.py runs them on the ``meta`` device,
  where either would raise).
- ``autocast`` (``ctx.autocast``: bfloat16 on CUDA under ``--amp``, else a no-op)
  wraps the forward pass and the loss; ``clip_grad_norm`` clips before each update.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ data on the device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for an empty model."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def to_device(*tensors: torch.Tensor, device: torch.device | str, pin: bool = False):
    """Tensors moved to ``device`` once (a device-resident data set), or with ``pin``
    (and a CUDA ``device``) kept on the host in pinned memory, for per-batch
    non-blocking copies by ``batches(..., device=device)``.  One tensor in, one out."""
    device = torch.device(device)
    if pin and device.type == "cuda":
        out = tuple(t if t.is_pinned() else t.pin_memory() for t in tensors)
    else:
        out = tuple(t.to(device) for t in tensors)
    return out[0] if len(out) == 1 else out


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False,
            device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Mini-batches of equally long in-memory tensors, optionally shuffled by ``generator``.

    The permutation is drawn where ``generator`` lives (the CPU for ``ctx.generator``)
    and moved to the data's device without a host sync.  ``device``: copy each batch
    there (for data kept on the host; non-blocking from pinned memory)."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors of different lengths: {[len(t) for t in tensors]}")
    orders = None
    if shuffle:  # gathered batch by batch: the first batch comes without a shuffled copy of all
        order = torch.randperm(n, generator=generator,
                               device=generator.device if generator is not None else "cpu")
        orders = [order.to(t.device, non_blocking=True) for t in tensors]
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if orders is None:
            batch = tuple(t[start:start + batch_size] for t in tensors)
        else:
            batch = tuple(t[o[start:start + batch_size]] for t, o in zip(tensors, orders))
        if device is not None:
            batch = tuple(t.to(device, non_blocking=True) for t in batch)
        yield batch


# ------------------------------------------------------------------ the one host sync


def to_host(values: Mapping[str, torch.Tensor | float]) -> dict:
    """Device scalars as Python floats, in one device-to-host copy (the loops' only sync).
    Float64 scalars come back exactly; float32 ones exactly as ``.item()`` would."""
    keys = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    out = {k: v for k, v in values.items() if not isinstance(v, torch.Tensor)}
    if keys:
        flat = torch.stack([values[k].detach().reshape(()).double() for k in keys])
        out.update(zip(keys, flat.cpu().tolist()))
    return {k: out[k] for k in values}


# ------------------------------------------------------------------ training


def cross_entropy_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, *args,
               autocast: Callable | None = None, clip_grad_norm: float | None = None):
    """One update: zero the gradients, ``loss_fn(*args)`` under ``autocast``, backward,
    clip (optionally), step.  Returns what ``loss_fn`` returned (the loss still on the device)."""
    optimizer.zero_grad(set_to_none=True)
    with (autocast or contextlib.nullcontext)():
        out = loss_fn(*args)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return out


def train_epoch(model: torch.nn.Module, batch_iter: Iterable, optimizer: torch.optim.Optimizer,
                loss_fn: Callable[..., torch.Tensor] = cross_entropy_loss,
                autocast: Callable | None = None, clip_grad_norm: float | None = None,
                sync: bool = True) -> dict:
    """One pass over ``batch_iter``; ``loss_fn(model, *batch)`` returns the mean loss.

    Returns the sample-weighted mean training loss, ``{"train_loss": float}``, summed
    in float64 on the device and copied to the host once; ``sync=False`` returns it
    as a device tensor instead (for a caller that adds its own statistics to the one
    ``to_host`` of the epoch)."""
    model.train()
    total, count = None, 0
    for batch in batch_iter:
        loss = train_step(model, optimizer, loss_fn, model, *batch, autocast=autocast,
                          clip_grad_norm=clip_grad_norm)
        weighted = loss.detach().double() * len(batch[0])
        total = weighted if total is None else total + weighted
        count += len(batch[0])
    if total is None:
        total = torch.zeros((), dtype=torch.float64)
    stats = {"train_loss": total / max(count, 1)}
    return to_host(stats) if sync else stats


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step_fn: Callable,
                steps: int, start: int = 0, autocast: Callable | None = None,
                clip_grad_norm: float | None = None, sync: bool = True) -> dict:
    """``steps`` updates, for training counted in updates (TD-VAE's ``fit``):
    ``step_fn(step)`` for step = start, ..., start + steps - 1 draws its own batch and
    returns ``(loss, stats)`` (stats: a dict of detached scalar tensors).  Returns the
    mean over the steps of ``{"loss": ..., **stats}``, summed in float64 on the device
    and copied to the host once (``sync=False``: as device tensors)."""
    model.train()
    sums: dict = {}
    for step in range(start, start + steps):
        loss, stats = train_step(model, optimizer, step_fn, step, autocast=autocast,
                                 clip_grad_norm=clip_grad_norm)
        for k, v in {"loss": loss.detach(), **stats}.items():
            v = v.double()
            sums[k] = v if k not in sums else sums[k] + v
    means = {k: v / max(steps, 1) for k, v in sums.items()}
    return to_host(means) if sync else means


def train_until_memorised(ctx, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                          x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
                          generator: torch.Generator, stop_at: float | None = None,
                          loss_fn: Callable | None = None, clip_grad_norm: float | None = None) -> list:
    """Train on ``(x, y)`` (moved to the model's device once) for at most ``epochs``
    epochs, stopping once the training accuracy reaches ``stop_at`` percent -- the
    "fit every (permuted) label" training of PWCCA's and the sanity checks'
    memorising networks.  Resumable per epoch under ``key`` (``model``, ``optimizer``
    and the order ``generator`` are checkpointed).

    ``loss_fn(model, logits, y)`` (default: cross entropy).  The running accuracy of
    the epoch's batches is counted on the device on the way; only when it comes
    within one point of ``stop_at`` is a full pass over the training set made
    (``train_acc``).  Returns the history: per epoch run, ``epoch``, ``train_loss``,
    ``running_acc`` and, where checked, ``train_acc``."""
    loss_fn = loss_fn or (lambda m, logits, yb: F.cross_entropy(logits, yb))
    state = {"history": [], "done": False}
    loop = ctx.resumable(key, {"model": model, "opt": optimizer, "gen": generator}, state)
    x, y = to_device(x, y, device=model_device(model))
    correct: list = [None]

    def counting_loss(m, xb, yb):  # counts the batch accuracy on the way, for free
        logits = m(xb)
        hits = (logits.argmax(1) == yb).sum()
        correct[0] = hits if correct[0] is None else correct[0] + hits
        return loss_fn(m, logits, yb)

    bar = ctx.progress(total=epochs, desc=key)
    for epoch in loop.epochs(epochs):
        if state["done"]:  # reached the target accuracy in an earlier epoch
            continue
        correct[0] = None
        stats = train_epoch(model, batches(x, y, batch_size=batch_size, shuffle=True, generator=generator),
                            optimizer, counting_loss, autocast=ctx.autocast, clip_grad_norm=clip_grad_norm,
                            sync=False)
        host = to_host({**stats, "correct": correct[0]})  # the epoch's one host sync
        row = {"epoch": epoch + 1, "train_loss": host["train_loss"],
               "running_acc": 100.0 * host["correct"] / len(y)}
        if stop_at is not None and row["running_acc"] >= stop_at - 1.0:
            row["train_acc"] = accuracy(model, x, y)
            state["done"] = row["train_acc"] >= stop_at
        state["history"].append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}")
    bar.close()
    model.eval()
    return state["history"]


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def outputs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Model outputs (float32) for all of ``x`` in eval mode, on the model's device."""
    was_training = model.training
    model.eval()
    device = device or model_device(model)
    out = torch.cat([model(xb.to(device, non_blocking=True)).float()
                     for (xb,) in batches(x, batch_size=batch_size)])
    model.train(was_training)
    return out


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Model outputs for all of ``x`` in eval mode, on the CPU."""
    return outputs(model, x, batch_size, device).cpu()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent, computed on the model's device (one host sync)."""
    out = outputs(model, x, batch_size)
    return 100.0 * (out.argmax(1) == y.to(out.device)).float().mean().item()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
