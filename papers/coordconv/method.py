"""CoordConv and the Not-so-Clevr coordinate tasks.

Liu, Lehman, Molino, Petroski Such, Frank, Sergeev, Yosinski. "An intriguing
failing of convolutional neural networks and the CoordConv solution".
NeurIPS 2018, arXiv:1807.03247.

- CoordConv (§3): a convolution whose input is concatenated with two extra
  channels holding the row and column index of each pixel, scaled to [-1, 1]
  (optionally a radius channel).
- Not-so-Clevr (§4): a 9x9 square on a 64x64 canvas; its centre takes all
  56 x 56 = 3,136 positions (each coordinate 4..59).  Uniform split: a random
  80/20 split of the positions; quadrant split: positions with both
  coordinates > 32 (the bottom-right quadrant, 729) are held out.
- Supervised coordinate classification: (x, y) -> a softmax over the 64x64
  pixels, cross entropy with the one-hot centre; accuracy = argmax is exact.
- Supervised coordinate regression: the one-hot image -> (x, y) / 64, MSE;
  accuracy = both rounded coordinates exact.

Architectures follow the reference code (uber-research/CoordConv,
model_builders.py): ``DeconvPainter`` (six stride-2 transposed convolutions
with batch norm, widths 64m, 64m, 64m, 32m, 32m, 1), ``CoordConvPainter``
(tile the coordinates over the canvas, add coordinate channels, 1x1 convs
32m, 32m, 64m, 64m, 1), and for regression the CoordConv model (coordinate
channels, three linear 1x1 convs of width 8, two 3x3 convs, global max-pool)
against the two conv baselines (``big_conv`` for the uniform split,
``big_conv2`` for the quadrant split).  One deliberate difference: the input
coordinates are scaled to [-1, 1] like the coordinate channels (the reference
feeds raw pixel indices).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CANVAS = 64
SQUARE = 9
LO, HI = 4, 59  # centre coordinates 4..59 keep the 9x9 square on the canvas


# ------------------------------------------------------------------- data


def positions() -> torch.Tensor:
    """All 3,136 square centres as (row, col) int64 pairs, row-major."""
    r = torch.arange(LO, HI + 1)
    return torch.cartesian_prod(r, r)


def split(kind: str, test_fraction: float = 0.2, generator: torch.Generator | None = None):
    """(train_idx, test_idx) into ``positions()`` for the uniform or quadrant split."""
    pos = positions()
    if kind == "uniform":
        order = torch.randperm(len(pos), generator=generator)
        n_test = round(test_fraction * len(pos))
        return order[n_test:].sort().values, order[:n_test].sort().values
    if kind == "quadrant":
        held_out = (pos[:, 0] > CANVAS // 2) & (pos[:, 1] > CANVAS // 2)
        return (~held_out).nonzero().squeeze(1), held_out.nonzero().squeeze(1)
    raise ValueError(f"unknown split {kind!r}: uniform or quadrant")


def scale(coords: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates 0..63 -> [-1, 1], the range of the coordinate channels."""
    return coords.float() / (CANVAS - 1) * 2 - 1


def onehot_images(coords: torch.Tensor) -> torch.Tensor:
    """B x 1 x 64 x 64 images with a single 1 at each centre."""
    img = torch.zeros(len(coords), 1, CANVAS * CANVAS)
    img[torch.arange(len(coords)), 0, coords[:, 0] * CANVAS + coords[:, 1]] = 1.0
    return img.view(-1, 1, CANVAS, CANVAS)


def square_images(coords: torch.Tensor) -> torch.Tensor:
    """B x 1 x 64 x 64 renderings of the 9x9 squares (for the data figure)."""
    ij = torch.arange(CANVAS)
    half = SQUARE // 2
    rows = (ij[None, :] - coords[:, :1]).abs() <= half
    cols = (ij[None, :] - coords[:, 1:]).abs() <= half
    return (rows[:, :, None] & cols[:, None, :]).float().unsqueeze(1)


# ---------------------------------------------------------------- CoordConv


class AddCoords(nn.Module):
    """Concatenate row and column index channels in [-1, 1] (and r if asked)."""

    def __init__(self, with_r: bool = False):
        super().__init__()
        self.with_r = with_r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        cols = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        extra = [rows, cols]
        if self.with_r:
            extra.append(torch.sqrt(rows ** 2 + cols ** 2))
        return torch.cat([x, *extra], dim=1)


class CoordConv2d(nn.Module):
    """A drop-in ``nn.Conv2d`` that sees its own input coordinates."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, with_r=False, **kwargs):
        super().__init__()
        self.add_coords = AddCoords(with_r)
        self.conv = nn.Conv2d(in_channels + 2 + int(with_r), out_channels, kernel_size, **kwargs)

    def forward(self, x):
        return self.conv(self.add_coords(x))


# ------------------------------------------------- classification (painters)


class CoordConvPainter(nn.Module):
    """(x, y) -> 64x64 logits: tile the coordinates, add coordinate channels,
    1x1 convolutions.  m = 1 has 7,553 parameters."""

    def __init__(self, m: int = 1):
        super().__init__()
        widths = [4, 32 * m, 32 * m, 64 * m, 64 * m]
        layers = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 1), nn.ReLU()]
        self.net = nn.Sequential(AddCoords(), *layers, nn.Conv2d(widths[-1], 1, 1))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        tiled = coords[:, :, None, None].expand(-1, -1, CANVAS, CANVAS)
        return self.net(tiled).flatten(1)


class DeconvPainter(nn.Module):
    """(x, y) -> 64x64 logits through six stride-2 transposed convolutions
    (1 -> 2 -> ... -> 64) with batch norm and ReLU, filter size ``fs``."""

    def __init__(self, m: int = 1, fs: int = 3):
        super().__init__()
        pad, out_pad = {2: (0, 0), 3: (1, 1), 4: (1, 0)}[fs]
        widths = [2, 64 * m, 64 * m, 64 * m, 32 * m, 32 * m]
        layers = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, fs, 2, pad, out_pad),
                       nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], 1, fs, 2, pad, out_pad))
        self.net = nn.Sequential(*layers)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords[:, :, None, None]).flatten(1)


def classification_loss(model, coords, target_index):
    return F.cross_entropy(model(coords), target_index)


# --------------------------------------------------------------- regression


class CoordConvRegressor(nn.Module):
    """One-hot image -> (x, y) / 64: coordinate channels, three linear 1x1
    convolutions of width 8, two unpadded 3x3 convolutions, global max-pool
    (as the reference; global *average* pooling collapses to the mean).

    The max-pool passes gradient only through the arg-max pixel, so an
    initialisation whose arg-max is not at (or next to) the one-hot pixel
    never learns and predicts the mean coordinate: in our runs about one
    initialisation in four succeeds.  The experiment therefore trains several
    restarts and reports how many succeed."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(AddCoords(), nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1),
                                 nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 2, 3))

    def forward(self, x):
        return self.net(x).amax(dim=(2, 3))


class ConvRegressorUniform(nn.Module):
    """The reference's ``big_conv``: conv-pool x3, conv, dense 64, dense 2."""

    def __init__(self, m: int = 1):
        super().__init__()
        c = 16 * m
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        return self.net(x)


class ConvRegressorQuadrant(nn.Module):
    """The reference's ``big_conv2``: strided all-convolutional net, global average pool."""

    def __init__(self, m: int = 1):
        super().__init__()
        c = 16 * m
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(c, c, 1), nn.ReLU(), nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 1), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))


def regression_loss(model, images, target):
    return F.mse_loss(model(images), target)


def build(task: str, arch: str, split_kind: str, m: int = 1, fs: int = 3) -> nn.Module:
    if task == "classification":
        return CoordConvPainter(m) if arch == "coordconv" else DeconvPainter(m, fs)
    if arch == "coordconv":
        return CoordConvRegressor()
    return ConvRegressorUniform(m) if split_kind == "uniform" else ConvRegressorQuadrant(m)
