"""multi_perturbation_mnist pieces: the training attacks and the paper's eps."""

from __future__ import annotations

import torch

from common import robustness as R
from papers.tramer_boneh import experiment as E
from papers.tramer_boneh import method as M


def test_training_attacks_respect_their_norm_and_start_small():
    cfg = E.train()
    assert cfg["eps"] == {"linf": 0.3, "l1": 10.0, "l2": 2.0}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for scale in (1 / 3, 1.0):
        for norm, attack in zip(M.NORMS, M.training_attacks(M.NORMS, cfg, scale, torch.Generator())):
            delta = attack(model, x, y) - x
            assert (R.norms(delta, norm) <= cfg["eps"][norm] * scale * (1 + 1e-5)).all()


def test_every_model_is_named_with_its_norms():
    assert M.MODELS["adv_max"] == (("linf", "l1", "l2"), "max")
    assert M.MODELS["natural"][0] == ()
