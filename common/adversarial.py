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
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

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
