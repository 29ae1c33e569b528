"""stAdv's MNIST models and the attack bookkeeping (Xiao et al., ICLR 2018).

The attack itself (flow warp, flow loss, C&W margin loss, per-sample L-BFGS) lives in
``common.attacks.stadv`` so that other papers can use it; this file holds what is
specific to the paper's experiments:

- ``make_model``: the three MNIST networks of the paper's Table 4 (A, B, C), seen as an
  image through a reproduction repository (research notes §5).  Strides and padding
  are not shown there: A and C use unpadded stride-1 convolutions; B follows Tramèr
  et al.'s model B (8x8 stride 2 'same', 6x6 stride 2 and 5x5 stride 1 unpadded),
  whose layer list it matches.  Dropout as in the table.
- ``all_pairs``: every (image, target != label) pair, the denominator of Table 1's
  success rate as we define it (notes, pitfalls: rakutentech issue #4).
- ``per_class_images``: the first k correctly classified test images of each digit
  (the Table 1 images; their first image per digit gives the Fig. 2 grid).
"""

from __future__ import annotations

import torch
import torch.nn as nn

MODELS = ("A", "B", "C")


def make_model(name: str) -> nn.Module:
    """Table 4's model ``name`` in {"A", "B", "C"} (``"A_pgd"`` etc. use the same net)."""
    base = name.split("_")[0]
    if base == "A":
        return nn.Sequential(
            nn.Conv2d(1, 64, 5), nn.ReLU(), nn.Conv2d(64, 64, 5), nn.ReLU(), nn.Dropout(0.25),
            nn.Flatten(), nn.Linear(64 * 20 * 20, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    if base == "B":
        return nn.Sequential(
            nn.Conv2d(1, 64, 8, stride=2, padding=3), nn.ReLU(), nn.Dropout(0.2),
            nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(), nn.Conv2d(128, 128, 5), nn.ReLU(),
            nn.Dropout(0.5), nn.Flatten(), nn.Linear(128, 10))
    if base == "C":
        return nn.Sequential(
            nn.Conv2d(1, 128, 3), nn.ReLU(), nn.Conv2d(128, 64, 3), nn.ReLU(), nn.Dropout(0.25),
            nn.Flatten(), nn.Linear(64 * 24 * 24, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    raise ValueError(f"unknown model {name!r}: one of {MODELS}")


def per_class_images(pred: torch.Tensor, y: torch.Tensor, k: int, classes: int = 10) -> torch.Tensor:
    """Indices of the first ``k`` correctly classified samples of each class, ordered
    class by class (digit 0's first, then digit 1's, ...).  Fewer where a class has
    fewer correct samples."""
    ok = pred == y
    picks = [((y == c) & ok).nonzero().flatten()[:k] for c in range(classes)]
    return torch.cat(picks)


def all_pairs(y: torch.Tensor, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, target) for every target != label, image-major: image i's
    targets in increasing order, skipping y_i."""
    t = torch.arange(classes, device=y.device).repeat(len(y), 1)
    keep = t != y[:, None]
    idx = torch.arange(len(y), device=y.device)[:, None].expand_as(t)
    return idx[keep], t[keep]


def success_summary(success: torch.Tensor, image: torch.Tensor, n_images: int) -> dict:
    """Targeted success over all pairs (%) and the share of images with at least one
    successful target (%)."""
    per_image = torch.zeros(n_images, dtype=torch.long).index_add_(0, image.cpu(), success.long().cpu())
    return {"success_rate": 100.0 * success.float().mean().item(),
            "image_any_success": 100.0 * (per_image > 0).float().mean().item(),
            "image_all_success": 100.0 * (per_image == 9).float().mean().item()}
