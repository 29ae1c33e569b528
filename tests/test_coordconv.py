"""CoordConv and Not-so-Clevr: counts, splits, parameter counts and a known answer."""

from __future__ import annotations

import torch
import torch.nn as nn

from papers.coordconv import experiment as E
from papers.coordconv import method as M


def test_not_so_clevr_positions_and_splits():
    pos = M.positions()
    assert pos.shape == (3136, 2) and pos.min() == 4 and pos.max() == 59
    tr, te = M.split("quadrant")
    assert (len(tr), len(te)) == (2407, 729)
    assert (pos[te] > 32).all() and not ((pos[tr] > 32).all(1)).any()
    tr, te = M.split("uniform", 0.2, torch.Generator().manual_seed(0))
    assert len(te) == 627 and len(set(tr.tolist()) | set(te.tolist())) == 3136
    assert not set(tr.tolist()) & set(te.tolist())


def test_images():
    c = torch.tensor([[4, 59], [30, 31]])
    one = M.onehot_images(c)
    assert one.sum() == 2 and one[0, 0, 4, 59] == 1 and one[1, 0, 30, 31] == 1
    sq = M.square_images(c)
    assert sq[1].sum() == 81 and sq[1, 0, 26:35, 27:36].sum() == 81


def test_add_coords_channels():
    out = M.AddCoords(with_r=True)(torch.zeros(2, 1, 5, 7))
    assert out.shape == (2, 4, 5, 7)
    assert torch.allclose(out[0, 1, :, 0], torch.linspace(-1, 1, 5))  # rows
    assert torch.allclose(out[0, 2, 0, :], torch.linspace(-1, 1, 7))  # cols
    assert torch.allclose(out[0, 3], (out[0, 1] ** 2 + out[0, 2] ** 2).sqrt())


def test_parameter_counts():
    # CoordConv painter, m=1: 1x1 convs 4->32->32->64->64->1 (weights + biases) = 7,553
    assert sum(p.numel() for p in M.CoordConvPainter(1).parameters()) == 7553
    # Deconv painter m=1 fs=3: sum of (cin*cout*9 + cout) + 2*cout (batch norm)
    widths = [2, 64, 64, 64, 32, 32, 1]
    expected = sum(a * b * 9 + b for a, b in zip(widths[:-1], widths[1:])) + 2 * sum(widths[1:-1])
    assert sum(p.numel() for p in M.DeconvPainter(1, 3).parameters()) == expected == 103585


def test_deconv_output_size_for_every_filter_size():
    for fs in (2, 3, 4):
        assert M.DeconvPainter(1, fs)(torch.zeros(3, 2)).shape == (3, 4096)


def test_hand_set_coordconv_regressor_is_exact_everywhere():
    """Known answer: with coordinate channels, max-pooling A*onehot + b*coord + c
    recovers every centre exactly; the evaluation pipeline must report 100%."""
    model = M.CoordConvRegressor()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        b = (M.CANVAS - 1) / (2 * M.CANVAS)  # rows in [-1, 1] -> row / 64
        convs[0].weight[0, :, 0, 0] = torch.tensor([2.0, b, 0.0])   # onehot, rows, cols
        convs[0].weight[1, :, 0, 0] = torch.tensor([2.0, 0.0, b])
        convs[0].bias[:2] = b - 2.0
        for conv in convs[1:3]:
            conv.weight[0, 0, 0, 0] = conv.weight[1, 1, 0, 0] = 1.0
        for conv in convs[3:]:
            conv.weight[0, 0, 1, 1] = conv.weight[1, 1, 1, 1] = 1.0
    inputs, _, _ = E.task_data("regression")
    errors = E.position_errors(model, "regression", inputs, torch.arange(3136))
    assert (errors == 0).all()


def test_position_errors_marks_unevaluated_positions():
    model = M.CoordConvPainter()
    inputs, _, _ = E.task_data("classification")
    err = E.position_errors(model, "classification", inputs, torch.tensor([0, 5]))
    assert (err[torch.tensor([0, 5])] >= 0).all() and (err[1:5] == -1).all()
