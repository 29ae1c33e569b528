"""Adversarial training: the losses of Madry et al., Kurakin et al. and Tramer & Boneh,
as ``loss_fn(model, x, y)`` functions for ``common.train.train_epoch``, and the MNIST
network of Madry et al. that all three (and the ABS baselines) use.

Each loss takes an ``attack(model, x, y) -> x_adv`` (for example
``functools.partial(common.attacks.pgd, eps=0.3, steps=40, step_size=0.01)``); the
adversarial examples are computed with the model in eval mode (the attacks refuse
a model in training mode) and the parameters frozen, then the model is put back
in training mode for the update -- so BatchNorm statistics never see the attack's
intermediate iterates.

- ``madry_loss``: min_theta E[max_{delta in S} L(theta, x + delta, y)] (Madry et al.,
  ICLR 2018, eq. 2.1): the inner max by the attack, the outer by training on the
  adversarial batch alone.
- ``mixed_batch_loss``: Kurakin, Goodfellow & Bengio ("Adversarial machine learning
  at scale", ICLR 2017, Algorithm 1): k of the m examples of a batch are
  replaced by adversarial versions and
  L = (sum_clean L(x_i, y_i) + lambda sum_adv L(x_i^adv, y_i)) / ((m - k) + lambda k).
  ``label="true"`` attacks with the true labels (what leaks the label: their "label leaking" section);
  ``"predicted"`` with the model's own predictions (the fix they propose).
- ``multi_perturbation_loss``: Tramer & Boneh (NeurIPS 2019, multi-perturbation adversarial training; their train.py):
  with several attacks (e.g. L-inf, L1, L2 PGD), ``"avg"`` trains on the union of
  all attacks' examples (the batch grows by the number of attacks), ``"max"`` on,
  per example, the attack whose example has the highest loss.

And the training loop the four papers share (``adversarial_train``: Adam on Madry's
network, one of the losses above per epoch, a per-epoch monitor, resumable per
epoch), with Madry et al.'s recipe on top of it (``madry_train``: L-inf PGD with an
optional eps warm-up), which madry_mnist trains and abs_mnist uses as a baseline.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import attacks as A
from common import robustness as R
from common.train import accuracy, batches, cross_entropy_loss, to_device, train_epoch

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def mnist_arrays(ctx, train_subset: int = 0) -> dict:
    """MNIST as tensors for the adversarial-training experiments: ``x_train``,
    ``y_train`` (optionally a fixed random subset of ``train_subset`` images, the same
    for every seed), ``x_test``, ``y_test``."""
    train_set, test_set = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    x, y = train_set.images, train_set.labels
    if train_subset:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:train_subset]
        x, y = x[keep], y[keep]
    return {"x_train": x, "y_train": y, "x_test": test_set.images, "y_test": test_set.labels}


class MadryCNN(nn.Module):
    """Madry et al.'s MNIST network (MadryLab/mnist_challenge model.py): conv 5x5
    (32) - max-pool 2 - conv 5x5 (64) - max-pool 2 - fully connected 1024 - 10,
    ReLU, 'same' padding, no BatchNorm (3.27M parameters).  ``width`` scales the
    channels and hidden units (width 0.5: 16/32 channels, 512 units) for CPU
    budgets; the layout stays the same."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        c1, c2, h = (max(1, round(v * width)) for v in (32, 64, 1024))
        side = image_size // 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, h), nn.ReLU(),
                                        nn.Linear(h, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode inside, back in its previous mode after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def adversarial_examples(model: nn.Module, attack: Attack, x: torch.Tensor,
                         y: torch.Tensor) -> torch.Tensor:
    """``attack(model, x, y)`` with the model in eval mode, detached."""
    with evaluating(model):
        return attack(model, x, y).detach()


def madry_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: Attack) -> torch.Tensor:
    """Cross entropy on the attack's adversarial version of the whole batch."""
    x_adv = adversarial_examples(model, attack, x, y)
    return F.cross_entropy(model(x_adv), y)


def mixed_batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: Attack,
                     k: int | None = None, lam: float = 0.3, label: str = "true",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Kurakin et al.'s loss (module docstring): ``k`` (default m/2) randomly chosen
    examples of the batch replaced by adversarial ones, weighted by ``lam``."""
    m = len(x)
    k = m // 2 if k is None else min(k, m)
    order = torch.randperm(m, generator=generator).to(x.device)
    adv_idx, clean_idx = order[:k], order[k:]
    if label == "true":
        y_attack = y[adv_idx]
    elif label == "predicted":
        with evaluating(model), torch.no_grad():
            y_attack = model(x[adv_idx]).argmax(1)
    else:
        raise ValueError(f"label must be 'true' or 'predicted', not {label!r}")
    x_adv = adversarial_examples(model, attack, x[adv_idx], y_attack)
    logits = model(torch.cat([x[clean_idx], x_adv]))
    per = F.cross_entropy(logits, torch.cat([y[clean_idx], y[adv_idx]]), reduction="none")
    weights = torch.cat([torch.ones(m - k, device=x.device), torch.full((k,), lam, device=x.device)])
    return (per * weights).sum() / ((m - k) + lam * k)


def multi_perturbation_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                            attacks: Sequence[Attack], strategy: str = "max") -> torch.Tensor:
    """Tramer & Boneh's "avg" or "max" multi-perturbation training loss."""
    advs = [adversarial_examples(model, a, x, y) for a in attacks]
    if strategy == "avg":
        return F.cross_entropy(model(torch.cat(advs)), y.repeat(len(advs)))
    if strategy != "max":
        raise ValueError(f"strategy must be 'max' or 'avg', not {strategy!r}")
    with evaluating(model), torch.no_grad():  # which attack is worst, per example
        losses = torch.stack([F.cross_entropy(model(a), y, reduction="none") for a in advs])
    worst = losses.argmax(0)
    x_worst = torch.stack(advs)[worst, torch.arange(len(x), device=x.device)]
    return F.cross_entropy(model(x_worst), y)


# ------------------------------------------------------------------ the shared training loop


def adversarial_train(ctx, key: str, model: nn.Module, data: dict, *, epochs: int, batch_size: int,
                      lr: float, epoch_loss: Callable[[int], tuple], monitor: Callable[[nn.Module], dict],
                      generators: dict, describe: Callable[[dict], str] | None = None,
                      lr_milestones: Sequence[int] = (), clip_grad_norm: float | None = None
                      ) -> tuple[nn.Module, list]:
    """Train ``model`` (already on ``ctx.device``) with Adam(``lr``) on ``data["x_train"]``,
    ``data["y_train"]`` (moved to the device once), shuffled per epoch by
    ``generators["order"]``; resumable per epoch under ``key`` (a finished training only
    reloads).  ``epoch_loss(epoch)`` returns ``(loss_fn, info)``: the epoch's
    ``loss_fn(model, x, y)`` (e.g. ``madry_loss`` with its attack) and a dict logged in
    the epoch's row; ``monitor(model)`` (in eval mode, after the epoch) adds its own
    entries.  ``lr_milestones``: the learning rate drops tenfold after these epochs.
    ``generators`` (order, attack noise, ...) are checkpointed with the weights.
    Returns the model in eval mode and the history, one row per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    objects = {"model": model, "opt": opt}
    sched = None
    if lr_milestones:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(lr_milestones), gamma=0.1)
        objects["sched"] = sched
    state = {"history": []}
    loop = ctx.resumable(key, {**objects, **generators}, state)
    x, y = to_device(data["x_train"], data["y_train"], device=ctx.device)
    bar = ctx.progress(total=epochs, desc=key)
    for epoch in loop.epochs(epochs):
        loss_fn, info = epoch_loss(epoch)
        stats = train_epoch(model, batches(x, y, batch_size=batch_size, shuffle=True,
                                           generator=generators["order"]),
                            opt, loss_fn, autocast=ctx.autocast, clip_grad_norm=clip_grad_norm)
        if sched is not None:
            sched.step()
        model.eval()
        row = {"epoch": epoch + 1, **info, **stats, **monitor(model)}
        state["history"].append(row)
        ctx.log(f"[{key}] epoch {epoch + 1}/{epochs}: loss {stats['train_loss']:.3f}"
                + (f", {describe(row)}" if describe else ""))
        bar.update(1)
    bar.close()
    model.eval()
    return model, state["history"]


def linf_pgd(eps: float, steps: int, step_size: float, random_start: bool = True,
             generator: torch.Generator | None = None) -> Attack:
    """Madry et al.'s inner maximisation: L-inf PGD on the cross entropy, as
    ``attack(model, x, y)``."""
    return functools.partial(A.pgd, eps=eps, norm="linf", steps=steps, step_size=step_size,
                             random_start=random_start, generator=generator)


def warmup_eps(epoch: int, eps: float, warmup_epochs: int) -> float:
    """The training eps: eps / 3 during the first ``warmup_epochs`` epochs (Tramer &
    Boneh's "start_small" for MNIST), eps after (Madry: eps throughout)."""
    return eps / 3 if epoch < warmup_epochs else eps


def madry_train(ctx, key: str, data: dict, monitor: tuple, *, adversarial: bool = True,
                epochs: int, width: float = 1.0, batch_size: int = 50, lr: float = 1e-4,
                eps: float = 0.3, steps: int = 40, step_size: float = 0.01, random_start: bool = True,
                warmup_epochs: int = 0) -> tuple[nn.Module, list]:
    """Madry et al.'s MNIST recipe (defaults: theirs; ``adversarial=False``: the same
    network and schedule on clean images): ``MadryCNN(width)``, Adam, ``madry_loss``
    with L-inf PGD (eps warmed up over ``warmup_epochs``).  After each epoch the
    monitor images ``(x, y)`` give clean and full-eps PGD accuracy (``monitor_clean``,
    ``monitor_pgd``).  Generators: ``{key}/order``, ``{key}/attack``, ``{key}/monitor``."""
    model = MadryCNN(width=width).to(ctx.device)
    gens = {"order": ctx.generator(f"{key}/order"), "attack": ctx.generator(f"{key}/attack")}
    x_mon, y_mon = to_device(*monitor, device=ctx.device)
    full_attack = linf_pgd(eps, steps, step_size, random_start, ctx.generator(f"{key}/monitor"))

    def epoch_loss(epoch):
        e = warmup_eps(epoch, eps, warmup_epochs)
        if not adversarial:
            return cross_entropy_loss, {"train_eps": e}
        attack = linf_pgd(e, steps, step_size, random_start, gens["attack"])
        return functools.partial(madry_loss, attack=attack), {"train_eps": e}

    def watch(model):
        pgd_ok = R.correct_under(model, x_mon, y_mon, lambda m, x, y, e: full_attack(m, x, y), eps)
        return {"monitor_clean": accuracy(model, x_mon, y_mon),
                "monitor_pgd": 100.0 * pgd_ok.float().mean().item()}

    return adversarial_train(
        ctx, key, model, data, epochs=epochs, batch_size=batch_size, lr=lr, epoch_loss=epoch_loss,
        monitor=watch, generators=gens,
        describe=lambda r: f"monitor clean {r['monitor_clean']:.1f}%, PGD-{steps} {r['monitor_pgd']:.1f}%")
