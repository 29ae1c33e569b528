"""kurakin_mnist pieces: the truncated-normal eps, step l.l., mixed batches on predicted labels."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from common.adversarial import mixed_batch_loss
from papers.kurakin import method as M


def test_truncated_normal_eps_matches_its_closed_form_mean():
    eps = M.truncated_normal_eps(200_000, 0.3, 0.15, torch.Generator().manual_seed(0))
    assert eps.min() >= 0 and eps.max() <= 0.3
    a = 0.3 / 0.15  # mean of N(0, s) truncated to [0, b]: s sqrt(2/pi) (1 - e^{-a^2/2}) / erf(a/sqrt2)
    mean = 0.15 * math.sqrt(2 / math.pi) * (1 - math.exp(-a * a / 2)) / math.erf(a / math.sqrt(2))
    assert abs(eps.double().mean().item() - mean) < 1e-3


def test_step_ll_moves_towards_the_least_likely_class():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 4)).eval()
    x = 0.5 + 0.05 * torch.rand(16, 1, 4, 5)
    ll = model(x).argmin(1)
    before = torch.log_softmax(model(x), 1).gather(1, ll[:, None])
    after = torch.log_softmax(model(M.step_ll(model, x, None, 0.1)), 1).gather(1, ll[:, None])
    assert (after > before).all()


def test_predicted_label_training_never_shows_the_attack_the_true_label():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 3)).train()
    x, y = torch.rand(12, 1, 4, 5), torch.randint(0, 3, (12,))
    seen = []

    def spy(m, xx, yy):
        seen.append((xx.clone(), yy.clone()))
        return xx

    mixed_batch_loss(model, x, y, attack=spy, k=6, label="predicted")
    xa, ya = seen[0]
    model.eval()
    assert torch.equal(ya, model(xa).argmax(1))
