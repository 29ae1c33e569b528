"""Kurakin, Goodfellow & Bengio, "Adversarial machine learning at scale", ICLR 2017
(arXiv:1611.01236): one-step adversarial training with mixed batches, and label leaking.

- Adversarial training (Algorithm 1): each batch of m examples has k of them replaced
  by adversarial versions made from the current model; the loss is
  (sum_clean L + lambda sum_adv L) / ((m - k) + lambda k), with m = 32, k = 16,
  lambda = 0.3 (``common.adversarial.mixed_batch_loss``).  Each adversarial example
  gets its own eps, drawn from a normal N(0, sigma) truncated to [0, eps_max]
  (eps_max = 16 grey levels, sigma = 8 on ImageNet; we scale both to MNIST's usual
  eps_max = 0.3, sigma = 0.15).
- One-step attacks: "FGSM" ascends the loss of the true label, x + eps sign(grad
  J(x, y_true)); "step l.l." descends that of the least-likely class,
  x - eps sign(grad J(x, y_LL)); iterative: "basic iter." (BIM) and "iter. l.l.",
  steps of one grey level, min(eps + 4, 1.25 eps) of them (eps in grey levels).
- Label leaking: a network adversarially trained on one-step examples made from the
  *true* label classifies those examples *better* than clean ones -- the perturbation,
  a function of the label, gives the label away.  It does not happen for methods
  that do not use the true label (step l.l.), nor when the model's predicted label
  replaces the true one in the attack (the fix the paper proposes).
- Iterative attacks still fool one-step adversarially trained networks (their
  robustness to iterative methods is small).

The networks here are Madry et al.'s MNIST CNN (``common.adversarial.MadryCNN``), as
the ImageNet/Inception setting is not available offline; the training methods are
``TRAINING`` below.
"""

from __future__ import annotations

import torch

from common import attacks as A

#: training method -> (one-step attack, which labels it uses); None = natural training
TRAINING = {
    "natural": None,
    "fgsm": ("fgsm", "true"),  # FGSM on the true label: leaks it
    "fgsm_pred": ("fgsm", "predicted"),  # FGSM on the model's prediction: the fix
    "step_ll": ("step_ll", None),  # step l.l.: never sees the true label
}


def truncated_normal_eps(n: int, eps_max: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Per-example eps: |N(0, sigma)| conditioned on <= eps_max (the normal truncated to
    [0, eps_max]), by inverting the CDF of the half-normal restricted to that interval."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    top = torch.erf(torch.tensor(eps_max / (sigma * 2 ** 0.5), dtype=torch.float64))
    return (sigma * 2 ** 0.5 * torch.erfinv(u * top)).float()


def step_ll(model, x, y, eps):
    """One step towards the least-likely class (``y`` is ignored, as in the paper)."""
    return A.fgsm(model, x, A.least_likely(model, x), eps, targeted=True)


def one_step_attack(method: str, eps_max: float, sigma: float, generator: torch.Generator):
    """The training attack ``attack(model, x, y)``, with per-example random eps."""
    def attack(model, x, y):
        eps = truncated_normal_eps(len(x), eps_max, sigma, generator).to(x.device)
        if method == "fgsm":
            return A.fgsm(model, x, y, eps)
        return step_ll(model, x, y, eps)
    return attack


def evaluation_attacks(iterative_steps: int | None = None,
                       generator: torch.Generator | None = None) -> dict:
    """Test attacks as ``attack(model, x, y, eps)``: one-step with the true label
    (``fgsm``), with the model's prediction (``fgsm_pred``), ``step_ll``, the iterative
    ``bim`` (Kurakin's step rule, or ``iterative_steps`` steps of 2.5 eps / steps) and
    Madry's ``pgd`` (random start, 40 steps of eps / 10)."""
    def fgsm(model, x, y, eps):
        return A.fgsm(model, x, y, eps)

    def fgsm_pred(model, x, y, eps):
        with torch.no_grad():
            pred = model(x).argmax(1)
        return A.fgsm(model, x, pred, eps)

    def bim(model, x, y, eps):
        if iterative_steps is None:
            return A.bim(model, x, y, eps, batch_size=500)
        return A.bim(model, x, y, eps, steps=iterative_steps,
                     step_size=2.5 * eps / iterative_steps, batch_size=500)

    def pgd(model, x, y, eps):
        return A.pgd(model, x, y, eps, steps=40, step_size=eps / 10, batch_size=500,
                     generator=generator)

    return {"fgsm": fgsm, "fgsm_pred": fgsm_pred, "step_ll": step_ll, "bim": bim, "pgd": pgd}
