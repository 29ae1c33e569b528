"""AmI on synthetic faces (papers/ami): the generator's landmark boxes contain the glyphs
and the probes change only what they claim to; witnesses planted by construction are
recovered; the steered model with alpha = 1 and no weakening is the original; the gain
formula on a hand example; the joint (adaptive) classifier; detection/FPR bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from papers.ami import faces as F
from papers.ami import method as M

pytestmark = pytest.mark.usefixtures("one_thread")


def faces(n=200, seed=0, **nuisance):
    g = torch.Generator().manual_seed(seed)
    table = F.identity_table(10, g)
    x, y, p = F.dataset(n, table, g, **nuisance)
    return x, y, p, table, g


def inside(boxes, rows, cols):
    """(N, P, H, W) whether each pixel centre lies in each part's box."""
    r0, c0, r1, c1 = (boxes[..., i, None, None] for i in range(4))
    return (rows[:, None] >= r0) & (rows[:, None] <= r1) & (cols[None, :] >= c0) & (cols[None, :] <= c1)


def test_identity_table_is_separated():
    g = torch.Generator().manual_seed(1)
    t = F.identity_table(12, g, min_distance=2)
    d = (t[:, None] != t[None]).sum(-1)
    assert t.shape == (12, len(F.PARTS)) and int(d[~torch.eye(12, dtype=torch.bool)].min()) >= 2


def test_boxes_contain_the_glyphs():
    x, y, p, table, _ = faces(300)
    masks = F.part_masks(p)                                      # (N, P, H, W)
    ar = torch.arange(F.SIZE, dtype=torch.float32)
    box = inside(F.boxes(p), ar, ar)
    assert (masks.sum((2, 3)) > 3).all(), "every part has a visible glyph"
    assert not (masks.bool() & ~box).any(), "a glyph pixel outside its landmark box"
    assert (p["glyph"] == table[y]).all()
    # the boxes of one face do not overlap (parts are separately substitutable)
    b = box.float()
    assert float((b.sum(1) > 1).float().sum()) == 0
    assert x.min() >= 0 and x.max() <= 1 and x.shape == (300, 1, 32, 32)


def test_substitution_changes_only_the_part_box():
    x, _, p, _, g = faces(100)
    ar = torch.arange(F.SIZE, dtype=torch.float32)
    box = inside(F.boxes(p), ar, ar)
    for k in range(len(F.PARTS)):
        ps = F.substitute(p, k, g)
        assert (ps["glyph"][:, k] != p["glyph"][:, k]).all()
        assert (ps["glyph"][:, [j for j in range(4) if j != k]] == p["glyph"][:, [j for j in range(4) if j != k]]).all()
        diff = (F.render(ps) - x)[:, 0].abs() > 0
        assert diff.any() and not (diff & ~box[:, k]).any()
        pp = F.preserve(p, k, g)
        assert (pp["glyph"][:, k] == p["glyph"][:, k]).all()
        assert (pp["glyph"][:, [j for j in range(4) if j != k]] != p["glyph"][:, [j for j in range(4) if j != k]]).all()


class Planted(nn.Module):
    """Unit k (k < 4) reads only the region of part k (ink above 0.7); units 4.. read the
    whole image with random positive weights."""

    def __init__(self, n_global=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        ar = torch.arange(F.SIZE, dtype=torch.float32)
        w = []
        for k in range(len(F.PARTS)):
            (r, c), (hr, hc) = F.CENTRES[k].tolist(), F.HALF[k].tolist()
            reach_r, reach_c = hr * 1.15 + 1.0, hc * 1.15 + 1.0   # covers scale and jitter below
            m = ((ar[:, None] - r).abs() <= reach_r) & ((ar[None, :] - c).abs() <= reach_c)
            w.append(m.float().flatten())
        w += [torch.rand(F.SIZE * F.SIZE, generator=g) for _ in range(n_global)]
        self.register_buffer("w", torch.stack(w))

    def forward(self, x):
        return (x.flatten(1) - 0.7).clamp_min(0) @ self.w.T


def test_planted_witnesses_are_recovered():
    x, _, p, _, g = faces(400, seed=3, jitter=0.4, shift=0.4, noise=0.0)
    net = Planted()
    for k, part in enumerate(F.PARTS):
        d_sub, d_pres = M.witness_scores(net, x, F.render(F.substitute(p, k, g)), F.render(F.preserve(p, k, g)))
        wit = M.select_witnesses(d_sub, d_pres, top_frac=0.25, ratio=1.0)
        assert wit.nonzero().flatten().tolist() == [k], (part, d_sub, d_pres)
        assert float(d_pres[k]) < 1e-6 < float(d_sub[k])   # the part's own unit ignores the rest


class PlantedConv(nn.Module):
    """A conv 'layer' (N, 3, 32, 32): channel 0 reads only glyph ink at each pixel,
    channel 1 is the whole image's mean at every pixel, channel 2 is dead."""

    def forward(self, x):
        ink = (x - 0.7).clamp_min(0)
        glob = x.mean((2, 3), keepdim=True).expand_as(x)
        return torch.cat([ink, glob, torch.zeros_like(x)], dim=1)


def test_region_witnesses_are_recovered_on_a_conv_layer():
    """Measured at the attribute's cells, the local ink channel is every attribute's only
    witness (preservation keeps the part's pixels, so it does not move at all); the
    global channel moves under preservation and fails; the dead channel never counts."""
    x, _, p, _, g = faces(300, seed=4, noise=0.0)
    net, boxes = PlantedConv(), F.boxes(p)
    for k, part in enumerate(F.PARTS):
        region = M.region_cells(boxes[:, k], F.SIZE, F.SIZE)
        d_sub, d_pres = M.witness_scores(net, x, F.render(F.substitute(p, k, g)),
                                         F.render(F.preserve(p, k, g)), region)
        wit = M.select_witnesses(d_sub, d_pres, top_frac=1.0, ratio=0.5)
        assert wit.nonzero().flatten().tolist() == [0], (part, d_sub, d_pres)
        assert float(d_pres[0]) < 1e-6 < float(d_sub[0]) and float(d_sub[2]) == 0.0


def test_region_cells_and_region_values_hand_example():
    # 8x8 image, 4x4 map (stride 2): box rows 1..2, cols 4..6 overlaps map rows 0-1, cols 2-3
    cells = M.region_cells(torch.tensor([[1.0, 4.0, 2.0, 6.0]]), 8, 4)
    expect = torch.zeros(1, 4, 4, dtype=torch.bool)
    expect[0, 0:2, 2:4] = True
    assert torch.equal(cells, expect)
    # a box on one pixel column 3 (the last pixel of map column 1) touches map column 1 only
    one = M.region_cells(torch.tensor([[0.0, 3.0, 0.0, 3.0]]), 8, 4)
    assert one.nonzero().tolist() == [[0, 0, 1]]
    a = torch.arange(32.0).view(1, 2, 4, 4)
    v = M.neuron_values(a, cells)
    assert v.tolist() == [[(2 + 3 + 6 + 7) / 4, (18 + 19 + 22 + 23) / 4]]
    with pytest.raises(ValueError):
        M.neuron_values(a.flatten(1), cells)


def test_conv_values_are_channel_sums():
    a = torch.arange(24.0).view(1, 2, 3, 4)
    assert M.neuron_values(a).tolist() == [[66.0, 210.0]]
    assert M.neuron_values(a.flatten(1)).shape == (1, 24)


@pytest.mark.parametrize("layer", list(M.LAYERS))
def test_identity_steering_is_the_original(layer):
    torch.manual_seed(0)
    model = M.FaceNet(10).eval()
    x, *_ = faces(20)
    front, _ = model.split(layer)
    k = M.neuron_values(front(x[:1])).shape[1]
    wit = torch.rand(k) < 0.3
    same = M.Steered(model, layer, wit, alpha=1.0, s=1.0, w=math.inf).eval()
    with torch.no_grad():
        assert torch.allclose(same(x), model(x), atol=1e-6)
        strong = M.Steered(model, layer, wit, alpha=5.0, s=1.0, w=1.0).eval()
        assert not torch.allclose(strong(x), model(x), atol=1e-3)


def test_steering_gains_hand_example():
    # one image, neurons [1, 2, 3 | 10, 0]: the first three are witnesses
    v = torch.tensor([[1.0, 2.0, 3.0, 10.0, 0.0]])
    wit = torch.tensor([True, True, True, False, False])
    g = M.steering_gains(v, wit, alpha=4.0, s=2.0, w=0.5)
    mu, sigma, low = 2.0, math.sqrt(2 / 3), 1.0
    expect = [4 - 3 * math.exp(-abs(vi - low) / (sigma * 2)) for vi in (1, 2, 3)]
    expect += [math.exp(-((10 - mu) / sigma) / 0.5), 1.0]   # above the witness mean / below it
    assert torch.allclose(g[0], torch.tensor(expect), atol=1e-6)
    assert torch.equal(M.steering_gains(v, torch.zeros(5, dtype=torch.bool), 4.0, 2.0, 0.5), torch.ones_like(v))


def test_bpda_keeps_the_forward_pass():
    torch.manual_seed(1)
    model = M.FaceNet(10).eval()
    x, *_ = faces(8)
    wit = torch.rand(128) < 0.3
    a, b = (M.Steered(model, "fc1", wit, 3.0, 1.0, 2.0, bpda=f).eval() for f in (False, True))
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = a(xa), b(xb)
    assert torch.allclose(ya, yb)
    ya[:, 0].sum().backward()
    yb[:, 0].sum().backward()
    assert torch.isfinite(xb.grad).all() and xb.grad.abs().sum() > 0


def test_both_agree_wins_only_when_both_models_agree():
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(500, 5, generator=g), torch.randn(500, 5, generator=g)
    joint = M.BothAgree(nn.Identity(), nn.Identity())
    joint.models = nn.ModuleList([_Const(za), _Const(zb)])
    h = joint(torch.zeros(500, 1))
    pred = h.argmax(1)
    both = za.argmax(1) == zb.argmax(1)
    assert torch.equal(pred == 5, ~both)                     # the null class when they disagree
    assert torch.equal(pred[both], za.argmax(1)[both])
    m = M.class_margins(za)
    assert (m > 0).sum(1).eq(1).all() and torch.equal(m.argmax(1), za.argmax(1))


class _Const(nn.Module):
    def __init__(self, z):
        super().__init__()
        self.z = z

    def forward(self, x):
        return self.z


def test_detection_bookkeeping_hand_example():
    orig = torch.tensor([3, 3, 1, 0, 2, 2])
    steered = torch.tensor([3, 4, 1, 1, 0, 2])
    fooled = torch.tensor([1, 1, 0, 1, 1, 0])         # 4 successful adversarials
    clean_o = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    clean_s = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 0, 9])   # one clean disagreement
    s = M.detection_stats(orig, steered, fooled, clean_o, clean_s)
    # flagged among the successful: indices 1, 3, 4 (index 0 agrees; 2 and 5 not successful)
    assert s["successful"] == 4 and s["detected"] == 3 and s["detection"] == 75.0
    assert s["false_positives"] == 1 and s["clean"] == 10 and s["fpr"] == pytest.approx(10.0)
    empty = M.detection_stats(orig, steered, torch.zeros(6), clean_o, clean_s)
    assert math.isnan(empty["detection"])
