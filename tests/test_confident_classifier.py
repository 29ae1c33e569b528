"""papers/confident_classifier: the KL(U || P) term against hand computations and
PyTorch's KL-div, the confidence loss, the gradient routing of the joint training
(Algorithm 1), the toy's rejection sampling, the synthetic OOD sets, and the full
profile's clear failure when SVHN is absent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import registry
from common import gan as GN
from common.data import DatasetNotFound
from common.execute import execute
from papers.confident_classifier import method as M

pytestmark = pytest.mark.usefixtures("one_thread")


def test_kl_uniform_by_hand():
    # p = (1/2, 1/4, 1/4): KL(U || p) = 1/3 [log((1/3)/(1/2)) + 2 log((1/3)/(1/4))]
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.7, 0.2, 0.1]], dtype=torch.float64))
    by_hand = [(math.log(2 / 3) + 2 * math.log(4 / 3)) / 3,
               (math.log(1 / 2.1) + math.log(1 / 0.6) + math.log(1 / 0.3)) / 3]
    assert M.kl_uniform(logits).item() == pytest.approx(np.mean(by_hand), abs=1e-12)
    # the same as PyTorch's KL-div (input log P, target U) with the per-sample "batchmean"
    # reduction, i.e. the reference code's element mean times K
    u = torch.full_like(logits, 1 / 3)
    ref = F.kl_div(F.log_softmax(logits, -1), u, reduction="batchmean")
    assert M.kl_uniform(logits).item() == pytest.approx(ref.item(), abs=1e-12)
    assert M.kl_uniform(logits).item() == pytest.approx(3 * F.kl_div(F.log_softmax(logits, -1), u,
                                                                     reduction="mean").item(), abs=1e-12)


def test_kl_uniform_zero_iff_uniform_and_shift_invariant():
    flat = torch.full((4, 10), 3.7, dtype=torch.float64)
    assert M.kl_uniform(flat).item() == pytest.approx(0.0, abs=1e-14)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g, dtype=torch.float64)
    assert (M.kl_uniform(z) > 0).item()
    assert M.kl_uniform(z + 5.0).item() == pytest.approx(M.kl_uniform(z).item(), abs=1e-12)
    # a confident prediction approaches KL = log K - (1/K) * (its large log-prob gaps)
    sharp = torch.tensor([[50.0] + [0.0] * 9], dtype=torch.float64)
    assert M.kl_uniform(sharp).item() == pytest.approx(-math.log(10) + 0.9 * 50 + math.log1p(9 * math.exp(-50)),
                                                       rel=1e-9)
    # its gradient step moves the prediction towards the uniform one
    z.requires_grad_(True)
    M.kl_uniform(z).backward()
    assert M.kl_uniform(z.detach() - 0.5 * z.grad).item() < M.kl_uniform(z.detach()).item()


def test_confidence_loss_is_ce_plus_beta_kl():
    torch.manual_seed(0)
    model = M.MLP(2, (8,), 3)
    x_in, y_in, x_out = torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1]), torch.randn(7, 2)
    loss, stats = M.confidence_loss(model, x_in, y_in, x_out, beta=0.3)
    ce = F.cross_entropy(model(x_in), y_in)
    kl = M.kl_uniform(model(x_out))
    assert loss.item() == pytest.approx((ce + 0.3 * kl).item(), rel=1e-6)
    assert stats["kl"].item() == pytest.approx(kl.item(), rel=1e-6)
    plain, _ = M.confidence_loss(model, x_in, y_in, None, beta=0.3)
    assert plain.item() == pytest.approx(ce.item(), rel=1e-6)


def test_joint_gradients_go_where_algorithm_1_says():
    """The generator's KL term trains G only (the classifier frozen); the classifier's
    update trains the classifier only."""
    torch.manual_seed(0)
    G, clf = M.PointGenerator(4, 16), M.MLP(2, (16,), 2)
    g_extra = M.generator_kl(clf, beta=1.0)
    loss = g_extra(G(torch.randn(32, 4)), None, None)
    loss.backward()
    assert all(p.grad is None for p in clf.parameters())
    assert all(p.requires_grad for p in clf.parameters())  # unfrozen again
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    G.zero_grad()
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    x, y = torch.randn(100, 2), torch.randint(2, (100,))
    before_c = [p.clone() for p in clf.parameters()]
    before_g = [p.clone() for p in G.parameters()]
    hook = M.classifier_hook(clf, opt, G, x, y, 1.0, 16, torch.Generator().manual_seed(1))
    stats = hook(0, None, None, None)
    assert set(stats) == {"c_ce", "c_kl"}
    assert any(not torch.equal(a, b) for a, b in zip(before_c, clf.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before_g, G.parameters()))


def test_proposed_gan_moves_off_the_data():
    """A few hundred steps of the 2-D GAN with the KL term through a classifier that is
    unconfident off the data: its samples lie further from the data than the ordinary GAN's."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = M.toy_data(1000, gen)
    ood = M.box_ood(1000, 20.0, gen, 6.0)
    clf = M.MLP(2, (32, 32), 2)
    opt = torch.optim.Adam(clf.parameters(), 1e-2)
    for _ in range(200):
        i = torch.randint(1000, (128,), generator=gen)
        loss, _ = M.confidence_loss(clf, x[i], y[i], ood[i], 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    class Ctx:  # the parts of RunContext that train_gan uses, without a run folder
        device = torch.device("cpu")

        def resumable(self, key, objects, state):
            return type("L", (), {"epochs": lambda self, n: range(n)})()

        def seed_for(self, key):
            return 0

        def progress(self, total, desc):
            return type("B", (), {"update": lambda s, n: None, "close": lambda s: None})()

        def log(self, msg):
            pass

    dists = {}
    for beta in (0.0, 3.0):
        torch.manual_seed(1)
        G, D = M.PointGenerator(4, 16), M.PointCritic(16)
        g = GN.GAN(G, D, GN.GANConfig(loss="dcgan", n_critic=1, lr=2e-3, betas=(0.5, 0.999), batch_size=64,
                                     z_dim=4))
        GN.train_gan(Ctx(), "g", g, x, epochs=1, steps_per_epoch=250, generator=torch.Generator().manual_seed(2),
                     g_extra=M.generator_kl(clf, beta) if beta else None, grid=False)
        with torch.no_grad():
            dists[beta] = M.distance_to_data(G(torch.randn(1000, 4))).median().item()
    assert dists[3.0] > dists[0.0] + 1.0


def test_box_ood_rejection():
    gen = torch.Generator().manual_seed(0)
    pts = M.box_ood(5000, 20.0, gen, reject_within=6.0)
    assert pts.shape == (5000, 2)
    assert (pts.abs() <= 20.0).all()
    assert (M.distance_to_data(pts) >= 6.0).all()
    # uniform over the accepted region: both halves of the box get about the same share
    assert abs((pts[:, 0] > 0).double().mean().item() - 0.5) < 0.03


def test_unseen_sets():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 28, 28, generator=gen) ** 4
    sets = M.unseen_sets(x, torch.Generator().manual_seed(1))
    for name, s in sets.items():
        assert s.shape == x.shape and s.min() >= 0 and s.max() <= 1, name
    assert torch.equal(sets["inverted"], 1 - x)
    # shuffling permutes each image's pixels: same sorted values, different order
    assert torch.equal(sets["shuffled"].flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert not torch.equal(sets["shuffled"], x)
    assert abs(sets["uniform"].mean().item() - 0.5) < 0.01
    # clipped N(0.5, 1): P(0) = P(1) = Phi(-1/2) = 0.3085
    assert abs((sets["gaussian"] == 0).double().mean().item() - 0.3085) < 0.01


def test_full_profile_nets_shapes():
    G, D, C = M.Generator32(100, 8), M.Critic32(8), M.VGG13(10)
    img = G(torch.randn(2, 100))
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1
    assert D(img)[0].shape == (2,)
    assert C(img).shape == (2, 10)


def test_full_profile_fails_clearly_without_svhn(tmp_path):
    """The full profile reads SVHN / CIFAR-10 from the local root; absent, the run stops
    before any training with DatasetNotFound naming the missing file."""
    exp = registry.get("confident_classifier_mnist")
    with pytest.raises(DatasetNotFound, match=r"SVHN: train_32x32\.mat not found"):
        execute(exp, profile="full", device="cpu", quiet=True, data_dir=str(tmp_path / "empty"),
                runs_dir=tmp_path / "runs", argv=["registry", "run", exp.name, "--profile", "full"])
