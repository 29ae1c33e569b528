"""natural_adversary: the latent searches against a known answer (a linear decision
boundary in a 2-D latent space, where the minimal Delta z is the distance to the
hyperplane), their black-box use of the classifier, and the exclusion of images whose
reconstruction is already misclassified."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from papers.natural_adversary import experiment as E
from papers.natural_adversary import method as M

pytestmark = pytest.mark.usefixtures("one_thread")


class Embed(nn.Module):
    """A 'generator' writing z (dim 2) into the first two pixels of a 28x28 image."""

    def __init__(self):
        super().__init__()
        self.z_dim = 2
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z):
        x = torch.zeros(len(z), 1, 28, 28)
        x[:, 0, 0, :2] = z
        return x


W, C = torch.tensor([0.6, 0.8]), 1.0  # boundary w.z = c, ||w|| = 1


def linear_predict(x):
    """A black box: label 1 where w.z > c, else 0; it only sees images."""
    assert not x.requires_grad
    return (x[:, 0, 0, :2] @ W > C).long()


Z0 = torch.tensor([[0.0, 0.0], [-1.0, 0.5], [0.3, -0.2], [0.5, 0.4]])
TRUE = (C - Z0 @ W) / W.norm()  # distances to the hyperplane: 1.0, 1.2, 0.98, 0.3


def test_perturb_lengths_and_directions():
    z = torch.randn(3, 5)
    lo, hi = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.5, 1.5, 2.01])
    cand, d = M.perturb(z, lo, hi, 400, torch.Generator().manual_seed(0))
    assert cand.shape == (3, 400, 5) and d.shape == (3, 400)
    assert ((d >= lo[:, None]) & (d < hi[:, None])).all()
    assert torch.allclose((cand - z[:, None]).norm(dim=2), d, atol=1e-5)


def test_iterative_search_finds_the_hyperplane_distance():
    """Every flip lies beyond the boundary, so Delta z >= the true distance (soundness),
    and annuli of width 0.05 with 500 directions in 2-D find it within two steps."""
    y = linear_predict(Embed()(Z0))
    res = M.iterative_search(Embed(), linear_predict, Z0, y, n=500, step=0.05,
                             generator=torch.Generator().manual_seed(1))
    assert (res["d"] >= TRUE.double() - 1e-9).all()
    assert (res["d"] <= TRUE.double() + 0.1).all(), (res["d"], TRUE)
    assert (res["y_adv"] != y).all()
    assert torch.equal(linear_predict(Embed()(res["z_adv"].float())), res["y_adv"])
    # each image spent one round of n queries per annulus it visited
    assert torch.equal(res["queries"], 500 * (torch.floor(res["d"] / 0.05 + 1e-9).long() + 1))


def test_hybrid_search_finds_the_hyperplane_distance_with_fewer_queries():
    y = linear_predict(Embed()(Z0))
    g = torch.Generator().manual_seed(2)
    hyb = M.hybrid_search(Embed(), linear_predict, Z0, y, n=500, step=0.05, generator=g)
    assert (hyb["d"] >= TRUE.double() - 1e-9).all()
    assert (hyb["d"] <= TRUE.double() + 0.1).all(), (hyb["d"], TRUE)
    assert torch.equal(linear_predict(Embed()(hyb["z_adv"].float())), hyb["y_adv"])
    # at a fine step (0.01, the paper's), the iterative search walks ~100 annuli per image
    # to reach distance ~1; the hybrid search brackets it first
    fine = dict(n=100, step=0.01, generator=g)
    hyb_q = M.hybrid_search(Embed(), linear_predict, Z0[:3], y[:3], **fine)["queries"]
    it_q = M.iterative_search(Embed(), linear_predict, Z0[:3], y[:3], **fine)["queries"]
    assert (hyb_q < it_q).all(), (hyb_q, it_q)


def test_search_reports_not_found_beyond_range():
    """An image 20 away from the boundary: not found within [0, 10) (d = inf)."""
    z = torch.tensor([[-16.0, -12.0]])  # w.z = -19.2 -> distance 20.2
    y = linear_predict(Embed()(z))
    for fn in (M.hybrid_search, M.iterative_search):
        kw = {"max_r": 10.0} if fn is M.iterative_search else {}
        res = fn(Embed(), linear_predict, z, y, n=200, step=0.5, generator=torch.Generator().manual_seed(3), **kw)
        assert math.isinf(res["d"].item())


def test_valid_images_excludes_misclassified_reconstructions():
    x = Embed()(torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]))
    x_rec = Embed()(torch.tensor([[0.1, 0.0], [2.0, 2.0], [2.0, 2.0]]))
    y = torch.tensor([0, 0, 0])  # image 1 is misclassified; image 2's reconstruction is
    ok, correct = E.valid_images(linear_predict, x, x_rec, y)
    assert ok.tolist() == [True, False, False] and correct.tolist() == [True, False, True]


def test_lenet_and_forest_predictors_are_label_only():
    from sklearn.ensemble import RandomForestClassifier

    x = torch.rand(20, 1, 28, 28)
    lenet = M.LeNet(0.5)
    assert lenet(x).shape == (20, 10)
    labels = M.torch_predictor(lenet)(x)
    assert labels.dtype == torch.long and labels.shape == (20,)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x.flatten(1).numpy(), torch.arange(20) % 3)
    out = M.forest_predictor(forest)(x)
    assert out.dtype == torch.long and torch.equal(out, torch.as_tensor(forest.predict(x.flatten(1).numpy())))


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    a, b = [90.0, 95.0, 97.0, 98.5], [1.0, 1.3, 1.2, 2.0]
    assert E.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
