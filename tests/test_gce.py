"""GCE: Lq interpolates CCE and MAE, its gradient identity, truncation, label noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from papers.gce import method as M


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (64,), generator=g)


def test_lq_limits(batch):
    logits, y = batch
    assert M.lq(logits, y, q=1e-6).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)
    assert M.lq(logits, y, q=1.0).item() == pytest.approx(M.mae(logits, y).item() / 2, rel=1e-12)


def test_lq_gradient_is_cce_gradient_times_py_to_q(batch):
    logits, y = batch
    q = 0.7
    a = logits.clone().requires_grad_()
    torch.autograd.grad(M.lq_per_sample(a, y, q).sum(), a)
    g_lq, = torch.autograd.grad(M.lq_per_sample(a, y, q).sum(), a)
    g_ce, = torch.autograd.grad(F.cross_entropy(a, y, reduction="sum"), a)
    p_y = F.softmax(logits, 1).gather(1, y[:, None])
    assert torch.allclose(g_lq, g_ce * p_y ** q, atol=1e-12)


def test_truncated_lq(batch):
    logits, y = batch
    q, k = 0.7, 0.5
    w = (torch.arange(64) % 2).double()
    a = logits.clone().requires_grad_()
    loss = M.truncated_lq(a, y, w, q=q, k=k)
    expected = (w * M.lq_per_sample(logits, y, q) + (1 - w) * (1 - k ** q) / q).mean()
    assert loss.item() == pytest.approx(expected.item())
    g, = torch.autograd.grad(loss, a)
    assert (g[w == 0] == 0).all() and (g[w == 1].abs().sum(1) > 0).all()
    assert M.truncated_lq(logits, y, torch.ones(64, dtype=torch.float64)).item() == \
        pytest.approx(M.lq(logits, y).item())
    assert M.prune_weights(torch.tensor([0.49, 0.5, 0.9]), 0.5).tolist() == [0, 1, 1]


def test_uniform_noise_rate_and_never_same_class():
    y = torch.arange(100000) % 10
    noisy = M.corrupt(y, "uniform", 0.4, 10, "cifar10", torch.Generator().manual_seed(0))
    flipped = noisy != y
    assert flipped.float().mean().item() == pytest.approx(0.4, abs=0.01)
    # the corrupted labels are spread evenly over the 9 other classes
    shift = (noisy[flipped] - y[flipped]) % 10
    counts = torch.bincount(shift, minlength=10).float()
    assert counts[0] == 0 and (counts[1:] / counts[1:].mean() - 1).abs().max() < 0.05


def test_class_dependent_noise_follows_the_mapping():
    y = torch.arange(100000) % 10
    noisy = M.corrupt(y, "class", 0.3, 10, "fashion_mnist", torch.Generator().manual_seed(0))
    flips = M.CLASS_FLIPS["fashion_mnist"]
    for c in range(10):
        moved = noisy[(y == c) & (noisy != y)]
        if c in flips:
            assert (moved == flips[c]).all()
            assert len(moved) / (y == c).sum().item() == pytest.approx(0.3, abs=0.02)
        else:
            assert len(moved) == 0


def test_augment_crop_and_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    out = M.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):  # every output is a (possibly flipped) 32x32 window of the padded input
        padded = F.pad(x[i], (4, 4, 4, 4))
        windows = [padded[:, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def test_small_cnn_and_resnet34_shapes():
    assert M.SmallCNN()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    net = M.ResNet34()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert 21.0e6 < sum(p.numel() for p in net.parameters()) < 21.5e6  # ResNet-34: 21.3M
