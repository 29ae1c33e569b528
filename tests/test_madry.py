"""madry_mnist pieces: the network is Madry's, the warm-up and the attack suite."""

from __future__ import annotations

import pytest
import torch

from common.adversarial import MadryCNN, warmup_eps
from papers.madry import method as M


def test_madry_cnn_has_the_released_models_parameter_count():
    # conv 5x5x1x32 + conv 5x5x32x64 + fc 3136x1024 + fc 1024x10, with biases
    expected = (25 * 32 + 32) + (25 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)
    assert sum(p.numel() for p in MadryCNN().parameters()) == expected == 3_274_634
    assert MadryCNN(width=0.5)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_warmup_uses_a_third_of_eps_only_in_the_first_epochs():
    assert [warmup_eps(e, 0.3, 1) for e in range(3)] == pytest.approx([0.1, 0.3, 0.3])
    assert warmup_eps(0, 0.3, 0) == 0.3


def test_leaderboard_attacks_weaken_in_the_expected_order():
    """The suite has the leaderboard's attacks, and on a fixed network 5-step PGD whose
    steps can cross the whole ball (step 2.5 eps / steps) leaves no more accuracy than
    FGSM (with Madry's 0.01 steps at eps 0.05 it cannot reach the corners FGSM uses)."""
    torch.manual_seed(0)
    model = MadryCNN(width=0.25).eval()
    x = torch.rand(64, 1, 28, 28)
    y = model(x).argmax(1)  # start from 100% "accuracy"
    attacks = M.leaderboard_attacks(steps=5, step_size=0.025, extra_steps=(2,))  # 2.5 eps / steps
    assert set(attacks) == {"fgsm", "pgd2", "pgd", "pgd_cw"}
    acc = {k: (model(a(model, x, y, 0.05)).argmax(1) == y).float().mean().item() for k, a in attacks.items()}
    assert acc["pgd"] <= acc["fgsm"] + 1e-9
