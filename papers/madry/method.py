"""Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models resistant
to adversarial attacks", ICLR 2018 (arXiv:1706.06083): the MNIST recipe.

- The saddle-point problem (eq. 2.1): min_theta E_(x,y) [max_{||delta||_inf <= eps}
  L(theta, x + delta, y)].  The inner maximum is approximated by PGD (§3: projected
  sign-gradient ascent from a uniformly random point of the eps-box), the outer by
  SGD on the adversarial examples alone (``common.adversarial.madry_loss``,
  trained by ``common.adversarial.madry_train``).
- MNIST (MadryLab/mnist_challenge config.json and model.py): eps = 0.3, 40 steps of
  0.01, random start, cross-entropy loss; the network conv 5x5 32 - pool - conv 5x5
  64 - pool - fc 1024 (``common.adversarial.MadryCNN``); Adam 1e-4, batch 50,
  100,000 steps (83 epochs).
- Evaluation (the mnist_challenge white-box leaderboard, on the released "secret"
  model, eps = 0.3): FGSM 96.36%, 100-step PGD 92.52%, 100-step PGD on the CW
  (margin) loss 93.04%, 100-step PGD with 50 random restarts 89.62%.

What the cpu profile changes (configs/cpu.gin says why): a network of half the
width, PGD with fewer steps (step size 2.5 eps / steps, Tramer & Boneh's default)
and a few epochs with a higher learning rate, an eps warm-up in the first epoch
(Tramer & Boneh's "start small" trick for MNIST), and fewer test images and
restarts.  The attacks are the shared ones in ``common.attacks``.
"""

from __future__ import annotations

import functools

import torch

from common import attacks as A


# The training recipe (eq. 2.1 with L-inf PGD, the eps warm-up) is
# ``common.adversarial.madry_train``, shared with abs_mnist's Madry baseline.


def leaderboard_attacks(steps: int, step_size: float, extra_steps=(40,),
                        generator: torch.Generator | None = None) -> dict:
    """The single-run white-box attacks of the mnist_challenge leaderboard, as
    ``attack(model, x, y, eps)``: ``fgsm``; ``pgd``, PGD-``steps`` on the cross entropy
    (the leaderboard's 100 steps of 0.01); ``pgd_cw``, the same on the margin ("CW")
    loss; and ``pgd<k>`` for each k in ``extra_steps`` (Madry's training attack, 40)."""
    attacks = {"fgsm": lambda m, x, y, e: A.fgsm(m, x, y, e)}
    for k in extra_steps:
        attacks[f"pgd{k}"] = functools.partial(A.pgd, steps=k, step_size=step_size,
                                               generator=generator, batch_size=500)
    attacks["pgd"] = functools.partial(A.pgd, steps=steps, step_size=step_size,
                                       generator=generator, batch_size=500)
    attacks["pgd_cw"] = functools.partial(A.pgd, steps=steps, step_size=step_size, loss="margin",
                                          generator=generator, batch_size=500)
    return attacks


def restarts_attack(steps: int, step_size: float, restarts: int,
                    generator: torch.Generator | None = None):
    """PGD-``steps`` keeping the best of ``restarts`` random starts per sample."""
    return functools.partial(A.pgd, steps=steps, step_size=step_size, restarts=restarts,
                             generator=generator, batch_size=max(1, 2000 // restarts))


def curve_attack(norm: str, steps: int, generator: torch.Generator | None = None):
    """PGD for accuracy-vs-eps curves: step 2.5 eps / steps, so every eps of the grid
    gets the same relative budget."""
    def attack(model, x, y, eps):
        return A.pgd(model, x, y, eps, norm=norm, steps=steps, step_size=2.5 * float(eps) / steps,
                     generator=generator, batch_size=500)
    return attack
