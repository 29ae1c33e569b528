"""Tramer & Boneh, "Adversarial training and robustness for multiple perturbations",
NeurIPS 2019 (arXiv:1904.13000): adversarial training against L-inf, L1 and L2 at once.

- Threat models on MNIST (their config.json): L-inf eps 0.3, L1 eps 10, L2 eps 2, in
  [0, 1]^784.  The L1 attack is their sparse L1 descent (SLIDE): steps move only the
  coordinates whose |gradient| is in the top 1% (``common.attacks.pgd(norm="l1")``).
- Training attacks (config.json): 10 steps each -- L-inf steps of 0.01, L2 of 0.1, L1
  of 1.0 (percentile 99) -- from a random start, ascending the margin loss
  max_{j != y} Z_j - Z_y (their ``compute_grad``).  Strategies
  (``common.adversarial.multi_perturbation_loss``): "avg" trains on all three attacks'
  examples, "max" on the worst one per example.  Adam, batch 100, 6,000 steps (10
  epochs), learning rate 1e-3 then 1e-4 after half; the first epoch uses eps / 3
  ("start_small").  Madry's MNIST CNN.
- Evaluation (scripts/eval_mnist_lps.py): PGD L-inf (100 steps of 2.5 eps / 100),
  SLIDE L1 (100 steps of 0.5) and PGD L2 (100 steps of 2.5 eps / 100), 40 restarts
  each, plus Foolbox/EAD/C&W/decision-based attacks; a sample counts as robust
  under a norm (or "all attacks", the union) only if every attack of that norm
  (of any norm) fails on it.
- Reported (abstract): training against all three perturbation types on MNIST
  "achieves merely 50%" accuracy against their union; single-perturbation training
  gives little robustness to the other types (the perturbations are "mutually
  exclusive" in their theory), and the multi-perturbation models lose robustness to
  each single type compared with the specialist.
"""

from __future__ import annotations

import functools

import torch

from common import attacks as A

NORMS = ("linf", "l1", "l2")
#: model name -> the norms its training attacks cover and the strategy
MODELS = {"natural": ((), None), "adv_linf": (("linf",), None), "adv_l1": (("l1",), None),
          "adv_l2": (("l2",), None), "adv_avg": (NORMS, "avg"), "adv_max": (NORMS, "max")}


def attack(norm: str, eps: float, steps: int, step_size: float, restarts: int = 1,
           generator: torch.Generator | None = None, l1_sparsity: float = 0.99):
    """Their PGD/SLIDE attack on the margin loss, as ``attack(model, x, y, eps=eps)``."""
    return functools.partial(A.pgd, eps=eps, norm=norm, steps=steps, step_size=step_size,
                             restarts=restarts, loss="margin", l1_sparsity=l1_sparsity,
                             generator=generator, batch_size=max(1, 1000 // restarts))


def training_attacks(norms, cfg: dict, scale: float, generator) -> list:
    """One training attack per norm; ``scale`` < 1 shrinks every eps (start_small)."""
    return [attack(n, cfg["eps"][n] * scale, cfg["train_steps"], cfg["train_step_size"][n],
                   generator=generator) for n in norms]


def evaluation_attacks(cfg: dict, generator) -> dict:
    """norm -> ``attack(model, x, y, eps)`` with the evaluation budget (eps given at call)."""
    def make(norm):
        def run(model, x, y, eps):
            step = cfg["eval_l1_step"] if norm == "l1" else 2.5 * eps / cfg["eval_steps"]
            return A.pgd(model, x, y, eps, norm=norm, steps=cfg["eval_steps"], step_size=step,
                         restarts=cfg["eval_restarts"], loss="margin", generator=generator,
                         batch_size=max(1, 1000 // cfg["eval_restarts"]))
        return run
    return {n: make(n) for n in NORMS}
