"""VCL: the penalty against an independent numpy computation, its zero, the hook's
invisibility at eval time, beta's positivity, and the two-Gaussian known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from papers.vcl import method as M


def _numpy_penalty(x: np.ndarray, beta: np.ndarray, n: int) -> float:
    s1, s2 = x[:n], x[n:2 * n]
    v1 = ((s1 - s1.mean(0)) ** 2).sum(0) / (n - 1)
    v2 = ((s2 - s2.mean(0)) ** 2).sum(0) / (n - 1)
    return float(np.mean((1.0 - v1 / (v2 + beta)) ** 2))


@pytest.mark.parametrize("shape,n", [((16, 7), 5), ((12, 3, 4, 4), 5), ((9, 5), 3)])
def test_penalty_matches_hand_computation(shape, n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) * rng.uniform(0.2, 3.0, size=shape[1:])
    beta = rng.uniform(0.0, 2.0, size=shape[1:])
    ours = M.vcl_penalty(torch.tensor(x), torch.tensor(beta), n).item()
    assert ours == pytest.approx(_numpy_penalty(x, beta, n), rel=1e-12)
    # only the first 2n samples count
    x2 = x.copy()
    x2[2 * n:] = 1e6
    assert M.vcl_penalty(torch.tensor(x2), torch.tensor(beta), n).item() == pytest.approx(ours, rel=1e-12)


def test_penalty_is_zero_for_equal_variances_and_zero_beta():
    s1 = torch.randn(5, 4, 3, dtype=torch.float64)
    s2 = 7.0 - s1.flip(0)  # another sample with exactly the same variance per unit
    x = torch.cat([s1, s2, torch.randn(6, 4, 3, dtype=torch.float64)])
    assert M.vcl_penalty(x, 0.0, 5).item() == pytest.approx(0.0, abs=1e-20)
    assert M.vcl_penalty(x, 0.5, 5).item() > 1e-3  # beta > 0 breaks the equality
    with pytest.raises(ValueError):
        M.vcl_penalty(x[:9], 0.0, 5)


def _net(norm="none"):
    torch.manual_seed(0)
    return M.ELUNet(in_channels=1, classes=10, divisor=32, norm=norm, dropout=(0,) * 6)


def test_hook_is_invisible_at_eval_and_adds_no_loss():
    x = torch.randn(12, 1, 28, 28)
    plain, hooked = _net(), _net()
    vcl = M.VCL(hooked, x[:2])
    assert len(vcl.names) == 10 and len(vcl.betas) == 10
    assert not any(k.startswith("betas") for k in hooked.state_dict())  # the model is not edited
    plain.eval(), hooked.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), hooked(x))
    assert vcl.collect().item() == 0.0  # nothing recorded in eval mode
    # training mode: the forward pass is still unchanged, and the term is the sum of
    # the per-layer penalties on the ELU inputs with each layer's betas
    plain.train(), hooked.train()
    out = hooked(x)
    assert torch.equal(out, plain(x))
    term = vcl.collect()
    pre = M.pre_activations(plain, x)  # eval mode = train mode here (no dropout or BN)
    expected = sum(M.vcl_penalty(p, b(), 5) for p, b in zip(pre, vcl.betas))
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    assert vcl.collect().item() == 0.0  # collect clears
    hooked(x[:9])  # a batch smaller than 2n records nothing
    assert vcl.collect().item() == 0.0
    vcl.remove()
    hooked(x)
    assert vcl.collect().item() == 0.0


def test_betas_are_per_position_and_get_gradients():
    x = torch.randn(20, 1, 28, 28)
    model = _net()
    vcl = M.VCL(model, x[:2])
    assert tuple(vcl.betas[0].raw.shape) == (192 // 32, 28, 28)  # C x H x W of the first conv
    for b in vcl.betas:
        assert torch.allclose(b(), torch.ones(()))  # initialised at 1
    model.train()
    loss = F.cross_entropy(model(x), torch.zeros(20, dtype=torch.long)) + vcl.gamma * vcl.collect()
    loss.backward()
    assert all(b.raw.grad is not None and b.raw.grad.abs().sum() > 0 for b in vcl.betas)


def test_beta_stays_positive():
    beta = M.Beta((3,), 1.0)
    opt = torch.optim.SGD(beta.parameters(), lr=100.0)
    for _ in range(50):  # push beta down as hard as possible
        opt.zero_grad()
        beta().sum().backward()
        opt.step()
    assert (beta() > 0).all()
    with torch.no_grad():
        beta.raw.fill_(-1e4)
    assert (beta() > 0).all() and torch.isfinite(M.vcl_penalty(torch.zeros(10, 3), beta(), 5))


def test_kurtosis_known_answers():
    two_point = torch.tensor([-1.0, 1.0] * 500)
    assert M.kurtosis(two_point).item() == pytest.approx(1.0)
    gauss = torch.randn(200000, generator=torch.Generator().manual_seed(0))
    assert M.kurtosis(gauss).item() == pytest.approx(3.0, abs=0.05)
    assert M.bimodality_coefficient(two_point) == pytest.approx(1.0)


def test_mixture_known_answer():
    """§3: with equal priors VCL alone turns a linear unit to the LDA direction; with a
    0.1 prior (excess kurtosis > 0 at any separation) it merges the two components."""
    eq = M.train_mixture_unit(0.5, steps=400, pairs=64, lr=0.02, n=5, gen=torch.Generator().manual_seed(1))
    assert eq["snapshots"][-1]["cos_lda"] > 0.95
    assert eq["snapshots"][-1]["separation_fraction"] > 0.95
    uneq = M.train_mixture_unit(0.1, steps=400, pairs=64, lr=0.02, n=5, gen=torch.Generator().manual_seed(1))
    assert uneq["snapshots"][-1]["separation_fraction"] < 0.3
