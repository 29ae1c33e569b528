"""Tests of papers/unrestricted_adversary: the search's loss terms on hand examples,
the batched search against a per-candidate loop, the success-rate bookkeeping, the
oracle, the kNN cross-check, and the interval bounds of the certified target
(soundness by sampling, and against bound-propagation on the equivalent dense net)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import attacks as A
from common import gan as GN
from papers.unrestricted_adversary import method as M

D64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ loss terms


def test_classifier_loss_hand_example():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    z = math.log(math.exp(2) + math.exp(1) + 1)
    z2 = math.log(2 + math.exp(3))
    targeted = M.classifier_loss(logits, torch.tensor([0, 2]), torch.tensor([2, 1]))
    assert torch.allclose(targeted, torch.tensor([z - 0.0, z2 - 0.0]))
    # untargeted: the easiest class other than the source (row 0: class 1; row 1, source 2: class 0 or 1)
    untargeted = M.classifier_loss(logits, torch.tensor([0, 2]))
    assert torch.allclose(untargeted, torch.tensor([z - 1.0, z2 - 0.0]))
    # when the source is not the top class, untargeted L0 is the CE of the top class
    assert torch.allclose(M.classifier_loss(logits[:1], torch.tensor([1])), torch.tensor([z - 2.0]))


def test_box_loss_hand_example():
    z0 = torch.zeros(1, 3)
    z = torch.tensor([[0.05, -0.3, 0.2]])
    assert torch.allclose(M.box_loss(z, z0, 0.1, "abs"), torch.tensor([(0 + 0.2 + 0.1) / 3]))
    assert torch.allclose(M.box_loss(z, z0, 0.1, "squared"), torch.tensor([(0 + 0.08 + 0.03) / 3]))
    assert M.box_loss(z0 + 0.09, z0, 0.1).item() == 0  # inside the box: no penalty
    with pytest.raises(ValueError):
        M.box_loss(z, z0, 0.1, "l2")


def test_source_loss_and_fooling():
    c = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    f = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0], [0.0, 5.0, 0.0]])
    s, t = torch.tensor([1, 1, 1]), torch.tensor([2, 2, 2])
    assert torch.allclose(M.source_loss(c, s), -F.log_softmax(c, 1)[:, 1])
    # row 0: f -> t and c -> s; row 1: c lost the source; row 2: f still on the source
    assert M.fooling(f, c, s, t).tolist() == [True, False, False]
    assert M.fooling(f, c, s, None).tolist() == [True, False, False]
    assert M.fooling(f, c, s, torch.tensor([0, 2, 2])).tolist() == [False, False, False]


def test_search_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    f, aux = nn.Linear(6, 4), nn.Linear(6, 4)
    x, z, z0 = torch.rand(5, 6), torch.randn(5, 3), torch.randn(5, 3)
    s, t = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 0, 2])
    loss, _ = M.search_loss(f, aux, x, z, z0, s, t, lam1=7.0, lam2=3.0, eps=0.2)
    expect = (F.cross_entropy(f(x), t, reduction="none") + 7.0 * M.box_loss(z, z0, 0.2)
              + 3.0 * F.cross_entropy(aux(x), s, reduction="none"))
    assert torch.allclose(loss, expect)


# ------------------------------------------------------------------ the batched search


def tiny_models(seed=0):
    torch.manual_seed(seed)
    G = GN.Generator(z_dim=4, width=2, n_classes=10).double()
    D = GN.Critic(width=2, n_classes=10).double()
    f = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()
    return G, _Head(D), f


class _Head(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.D = D

    def forward(self, x):
        return self.D(x)[1]


@pytest.mark.parametrize("optimizer,noise_eps,targeted", [("adam", 0.0, True), ("sgd", 0.0, False),
                                                          ("adam", 0.1, False), ("sgd", 0.1, True)])
def test_batched_search_equals_per_candidate_loop(optimizer, noise_eps, targeted):
    G, aux, f = tiny_models()
    n = 4
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(n, 4, generator=gen, dtype=D64)
    s = torch.tensor([0, 1, 2, 3])
    t = torch.tensor([1, 2, 3, 4]) if targeted else None
    cfg = M.SearchConfig(steps=5, lr=0.05 if optimizer == "adam" else 0.5, lam1=10.0, lam2=1.0, eps=0.05,
                         optimizer=optimizer, grad_noise=0.0, noise_eps=noise_eps)
    batched = M.latent_search(G, aux, f, z0, s, t, cfg)
    for i in range(n):
        one = M.latent_search(G, aux, f, z0[i:i + 1], s[i:i + 1], None if t is None else t[i:i + 1], cfg)
        assert torch.allclose(one["z"], batched["z"][i:i + 1], atol=1e-10)
        assert torch.allclose(one["x"], batched["x"][i:i + 1], atol=1e-10)
        assert torch.allclose(one["loss"], batched["loss"][i:i + 1], atol=1e-10)
        assert one["fooled"].item() == batched["fooled"][i].item()
    assert not torch.allclose(batched["z"], z0)  # it moved
    if noise_eps:  # the noise stays within its budget around g(z, s)
        gz = G(batched["z"], s).detach()
        assert (batched["x"] - gz).abs().max() <= noise_eps + 1e-12


def test_search_leaves_models_as_it_found_them_and_noise_is_seeded():
    G, aux, f = tiny_models()
    G.train()
    z0 = torch.randn(3, 4, dtype=D64)
    s, t = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3])
    cfg = M.SearchConfig(steps=3, lr=0.5, grad_noise=0.01)
    a = M.latent_search(G, aux, f, z0, s, t, cfg, torch.Generator().manual_seed(5))
    b = M.latent_search(G, aux, f, z0, s, t, cfg, torch.Generator().manual_seed(5))
    c = M.latent_search(G, aux, f, z0, s, t, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a["z"], b["z"]) and not torch.equal(a["z"], c["z"])
    assert G.training and all(p.requires_grad for p in G.parameters())
    assert all(p.grad is None for p in (*G.parameters(), *f.parameters()))


def test_search_reaches_the_target_on_a_linear_problem():
    """Generator = the latent itself (as a 1x2 'image'); f, c linear.  f's target
    region is reachable while c keeps the source: the search must get there, and the
    box term (here a wide box) must not stop it."""

    class Identity(nn.Module):
        def forward(self, z, y):
            return z.view(len(z), 1, 1, 2)

    f = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    aux = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        f[1].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))   # f: class 0 iff z_0 > 0
        f[1].bias.zero_()
        aux[1].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, -1.0]]))  # c: class 0 iff z_1 > 0
        aux[1].bias.zero_()
    z0 = torch.tensor([[1.0, 1.0], [2.0, 0.5]])  # f and c both say 0
    s, t = torch.tensor([0, 0]), torch.tensor([1, 1])
    res = M.latent_search(Identity(), aux, f, z0, s, t,
                          M.SearchConfig(steps=100, lr=0.1, optimizer="adam", lam1=1.0, lam2=1.0, eps=10.0))
    assert res["fooled"].all() and (res["f_pred"] == 1).all() and (res["c_pred"] == 0).all()
    # a tight box with a large weight keeps z near z0: f is not fooled
    res = M.latent_search(Identity(), aux, f, z0, s, t,
                          M.SearchConfig(steps=100, lr=0.1, optimizer="adam", lam1=100.0, lam2=1.0, eps=0.1))
    assert not res["fooled"].any() and (res["z"] - z0).abs().max() < 0.2


def test_pairs():
    s, t = M.pairs(10, 3)
    assert len(s) == 270 and not (s == t).any()
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((s, t), torch.ones_like(s), accumulate=True)
    assert (counts + 3 * torch.eye(10, dtype=torch.long) == 3).all()
    assert (s[:3] == 0).all() and t[:3].tolist() == [1, 1, 1]


# ------------------------------------------------------------------ success-rate bookkeeping


def test_proxy_success_hand_example():
    fooled = torch.tensor([True, True, False, True, False])
    source = torch.tensor([3, 3, 3, 5, 5])
    oracle = torch.tensor([3, 7, 3, 5, 5])  # agrees on candidates 0 and 3 (and 2, 4, which did not fool)
    r = M.proxy_success(fooled, oracle, source)
    assert (r["attempts"], r["fooling"], r["agreed"]) == (5, 3, 2)
    assert r["success_rate"] == pytest.approx(200 / 3)
    assert r["fool_rate"] == pytest.approx(60.0) and r["success_per_attempt"] == pytest.approx(40.0)
    none = M.proxy_success(torch.zeros(4, dtype=torch.bool), oracle[:4], source[:4])
    assert math.isnan(none["success_rate"]) and none["fool_rate"] == 0


def test_oracle_is_the_mean_softmax():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    x = torch.randn(5, 3)
    p = M.Oracle([a, b])(x)
    assert torch.allclose(p, (F.softmax(a(x), 1) + F.softmax(b(x), 1)) / 2)
    assert torch.allclose(p.sum(1), torch.ones(5))


def test_knn_label():
    ref = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]]).view(5, 1, 1, 2)
    ref_y = torch.tensor([2, 2, 1, 7, 7])
    x = torch.tensor([[0.05, 0.0], [4.9, 5.0]]).view(2, 1, 1, 2)
    assert M.knn_label(x, ref, ref_y, k=3).tolist() == [2, 7]
    assert M.knn_label(x, ref, ref_y, k=1, chunk=1).tolist() == [2, 7]


# ------------------------------------------------------------------ the certified target


def dense_equivalent(net: nn.Sequential, shape) -> nn.Sequential:
    """The same function with every convolution written as a dense Linear layer (its
    matrix read off the basis images), for bound-propagation, which has no convolutions."""
    layers, cur = [nn.Flatten()], shape
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            n = math.prod(cur)
            basis = torch.eye(n, dtype=layer.weight.dtype).view(n, *cur)
            with torch.no_grad():
                out = F.conv2d(basis, layer.weight, None, layer.stride, layer.padding)
                bias = layer.bias[:, None, None].expand(out.shape[1:]).flatten()
            lin = nn.Linear(n, out[0].numel()).to(layer.weight.dtype)
            with torch.no_grad():
                lin.weight.copy_(out.flatten(1).T)
                lin.bias.copy_(bias)
            layers.append(lin)
            cur = out.shape[1:]
        elif isinstance(layer, nn.Flatten):
            cur = (math.prod(cur),)
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 16, 6), nn.ReLU(), nn.Linear(6, 5)).double()


def test_interval_bounds_are_sound_and_match_bound_propagation():
    net = small_cnn()
    x = torch.rand(3, 1, 16, 16, dtype=D64)
    eps = 0.05
    lo, hi = M.interval_bounds(net, x - eps, x + eps)
    samples = x + eps * (2 * torch.rand(2000, *x.shape, dtype=D64) - 1)
    outs = net(samples.flatten(0, 1)).view(2000, 3, -1)
    assert (outs >= lo - 1e-12).all() and (outs <= hi + 1e-12).all()
    assert (lo <= net(x)).all() and (net(x) <= hi).all()
    dense = dense_equivalent(net, (1, 16, 16))
    assert torch.allclose(dense(x), net(x), atol=1e-12)
    bp = pytest.importorskip("bound_propagation")
    bnet = bp.BoundModelFactory().build(dense[1:])
    theirs = bnet.ibp(bp.HyperRectangle.from_eps(x.flatten(1), eps)).concretize()
    assert torch.allclose(lo, theirs.lower, atol=1e-10) and torch.allclose(hi, theirs.upper, atol=1e-10)


def test_certified_images_resist_pgd_and_ibp_loss_at_zero_eps_is_ce():
    net = small_cnn(1)
    # a net that is certifiably right on these images: scale up the last layer towards class 0
    x = torch.rand(20, 1, 16, 16, dtype=D64)
    with torch.no_grad():
        net[-1].bias.copy_(torch.tensor([3.0, 0, 0, 0, 0], dtype=D64))
    y = net(x).argmax(1)
    for eps in (0.0, 0.01, 0.05, 0.2):
        cert = M.certified_correct(net, x, y, eps)
        if cert.any():
            xa = A.pgd(net.eval(), x[cert], y[cert], eps, steps=20, step_size=eps / 4 + 1e-3,
                       random_start=eps > 0, generator=torch.Generator().manual_seed(0))
            assert (net(xa).argmax(1) == y[cert]).all()
    assert M.certified_correct(net, x, y, 0.0).all()  # at eps 0: exactly the correct ones
    assert not M.certified_correct(net, x, y, 10.0).any()  # the whole box: nothing certifiable
    ce = F.cross_entropy(net(x), y)
    assert torch.allclose(M.ibp_loss(net, x, y, eps=0.0, kappa=0.3), ce)
    assert M.ibp_loss(net, x, y, eps=0.05, kappa=0.0) >= ce
