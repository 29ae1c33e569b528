"""AmI -- Tao, Ma, Liu & Zhang, "Attacks meet interpretability: attribute-steered
detection of adversarial samples" (NeurIPS 2018, arXiv 1810.11580) -- and the adaptive
attack of Carlini, "Is AmI (attacks meet interpretability) robust to adversarial
examples?" (arXiv 1902.02322).

1. Attribute -> neuron inference (§3.1).  For each face attribute a (left eye, right eye,
   nose, mouth) and each neuron i of an internal layer (a conv channel's value is its
   activation summed over space, as the reference code does), compare the neuron's value
   on an image x with its value on two probes of x:
     substitution  x_sub^a:  only attribute a is replaced  -> a witness must change;
     preservation  x_pres^a: a is kept, the rest replaced  -> a witness must stay.
   d_sub(i) = mean_x |v_i(x_sub) - v_i(x)| / std_x v_i(x), d_pres likewise.  Neuron i is
   a witness of a when d_sub(i) is among the top ``top_frac`` of the layer and
   d_pres(i) <= ``ratio`` * d_sub(i) (both directions of the paper's bi-directional
   inference; the paper's exact thresholds were not found, these are ours).  On a conv
   layer the default measures a channel at the attribute only: its mean over the
   feature-map cells that overlap the attribute's landmark box (``region_cells``).  A
   channel summed over the whole map mixes the attribute with the parts that
   preservation replaces, so almost no channel passes the preservation test that way;
   measured at the attribute, part-selective channels are found in every attribute.
   The steering (item 2) acts on whole channels (their spatial sums), as before.
2. Attribute-steered model (§3.2), in the form of the reference code (Gwinhen/AmI,
   src/pytorch/ami_model.py, read not copied): per image, with mu, sigma, m the mean,
   (population) standard deviation and minimum of the witness values,
     non-witness i:  gain = exp(-max(0, (v_i - mu) / sigma) / w)       (weakening)
     witness i:      gain = alpha - (alpha - 1) exp(-|v_i - m| / (sigma s))  (strengthening)
   and the layer's activation of neuron i is multiplied by its gain.  The reference
   writes the witness gain as s0 - exp(-|v - m| / (sigma s1)); ours is the same curve
   re-offset so that alpha = 1 is the identity (alpha is the asymptotic factor that the
   sweep varies).  w = inf means no weakening.
3. Detection (§3.3): an input is flagged adversarial when the steered model's label
   differs from the original model's.
4. Carlini's adaptive attack: one perturbation that makes the original *and* the steered
   model output the same target label.  ``BothAgree`` turns the pair into one
   classifier whose class t wins only when both models predict t (a margin per class,
   the minimum over the two models, beside a constant null logit 0), so the shared
   PGD and C&W-L2 of ``common.attacks`` attack the joint objective unchanged.  The
   steering is differentiable almost everywhere (max, abs, exp), so gradients go
   through it exactly; ``Steered(bpda=True)`` treats the gains as constants in the
   backward pass instead (BPDA, for a hard-thresholded steering).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# split points of FaceNet.net: the internal layer whose (post-ReLU) output is steered
LAYERS = {"conv2": 5, "conv3": 8, "fc1": 12}


class FaceNet(nn.Module):
    """A small CNN for the 32x32 synthetic faces (three conv blocks, one hidden FC layer)."""

    def __init__(self, classes: int = 10, widths=(16, 32, 64), hidden: int = 128):
        super().__init__()
        c1, c2, c3 = widths
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 16x16
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 8x8
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 4x4
            nn.Flatten(), nn.Linear(c3 * 16, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)

    def split(self, layer: str) -> tuple[nn.Module, nn.Module]:
        k = LAYERS[layer]
        return self.net[:k], self.net[k:]


def neuron_values(acts: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) one value per neuron: a conv channel summed over space, an FC unit itself.
    With ``region`` (N, H, W), a conv channel's mean over the region's cells instead."""
    if region is None:
        return acts.flatten(2).sum(-1) if acts.dim() > 2 else acts
    if acts.dim() != 4 or region.shape != (acts.shape[0], *acts.shape[2:]):
        raise ValueError(f"a region (N, H, W) applies to conv activations (N, C, H, W); got "
                         f"{tuple(region.shape)} for {tuple(acts.shape)}")
    r = region.to(acts.dtype)
    return torch.einsum("nchw,nhw->nc", acts, r) / r.sum((1, 2)).clamp_min(1.0)[:, None]


def region_cells(boxes: torch.Tensor, image_size: int, map_size: int) -> torch.Tensor:
    """(N, H, W) bool: the feature-map cells (stride image_size / map_size) whose pixel
    footprint overlaps each box (N, 4) = (row0, col0, row1, col1) in pixel coordinates."""
    s = image_size / map_size
    first = torch.arange(map_size, dtype=boxes.dtype, device=boxes.device) * s  # first pixel
    last = first + s - 1                                                      # last pixel

    def overlap(lo, hi):  # (N, map_size)
        return (last[None] >= lo[:, None]) & (first[None] <= hi[:, None])

    rows, cols = overlap(boxes[:, 0], boxes[:, 2]), overlap(boxes[:, 1], boxes[:, 3])
    return rows[:, :, None] & cols[:, None, :]


@torch.no_grad()
def witness_scores(front: nn.Module, x: torch.Tensor, x_sub: torch.Tensor,
                   x_pres: torch.Tensor, region: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_sub, d_pres), each (K,): the mean absolute change of every neuron's value under
    substitution and under preservation, in units of the neuron's std over ``x``.  With
    ``region`` (N, H, W) (conv layers), a channel's value is its mean over the
    attribute's cells (``region_cells``), so a witness is a channel whose response *at
    the attribute* follows the attribute and ignores the rest of the face."""
    v, vs, vp = (neuron_values(front(z), region) for z in (x, x_sub, x_pres))
    std = v.std(0)
    live = std > 1e-6 * std.max().clamp_min(1e-30)   # dead (constant) neurons score 0
    scale = torch.where(live, std, torch.ones_like(std))
    d_sub = torch.where(live, (vs - v).abs().mean(0) / scale, torch.zeros_like(std))
    d_pres = torch.where(live, (vp - v).abs().mean(0) / scale, torch.zeros_like(std))
    return d_sub, d_pres


def select_witnesses(d_sub: torch.Tensor, d_pres: torch.Tensor, top_frac: float = 0.2,
                     ratio: float = 0.5) -> torch.Tensor:
    """Boolean (K,): d_sub in the top ``top_frac`` of the layer's live neurons (dead,
    constant ones score 0 and never count) and d_pres <= ratio * d_sub."""
    k = max(1, math.ceil(top_frac * int((d_sub > 0).sum())))
    kth = d_sub.topk(k).values[-1]
    return (d_sub >= kth) & (d_sub > 0) & (d_pres <= ratio * d_sub)


def steering_gains(values: torch.Tensor, witness: torch.Tensor, alpha: float, s: float,
                   w: float) -> torch.Tensor:
    """(N, K) multiplicative gains for neuron values (N, K) (module docstring, item 2);
    all ones when there is no witness (nothing to steer by)."""
    if not bool(witness.any()):
        return torch.ones_like(values)
    wv = values[:, witness]
    mu = wv.mean(1, keepdim=True)
    sigma = wv.std(1, unbiased=False, keepdim=True)
    low = wv.min(1, keepdim=True).values
    ok = sigma > 0
    safe = torch.where(ok, sigma, torch.ones_like(sigma))
    dev_hi = torch.where(ok, ((values - mu) / safe).clamp_min(0), torch.zeros_like(values))
    dev_lo = torch.where(ok, (values - low).abs() / safe, torch.zeros_like(values))
    weaken = torch.exp(-dev_hi / w) if math.isfinite(w) else torch.ones_like(values)
    strengthen = alpha - (alpha - 1) * torch.exp(-dev_lo / s)
    return torch.where(witness[None], strengthen, weaken)


class Steered(nn.Module):
    """The attribute-steered model: ``back(front(x) * gains)``."""

    def __init__(self, model: FaceNet, layer: str, witness: torch.Tensor, alpha: float = 3.0,
                 s: float = 1.0, w: float = 1.0, bpda: bool = False):
        super().__init__()
        self.front, self.back = model.split(layer)
        self.register_buffer("witness", witness.bool().clone())
        self.alpha, self.s, self.w, self.bpda = alpha, s, w, bpda

    def forward(self, x):
        a = self.front(x)
        g = steering_gains(neuron_values(a), self.witness, self.alpha, self.s, self.w)
        if self.bpda:
            g = g.detach()
        return self.back(a * g.view(*g.shape, *([1] * (a.dim() - 2))))


def class_margins(z: torch.Tensor) -> torch.Tensor:
    """m_j = Z_j - max_{k != j} Z_k for every class j (N, C): > 0 only for the argmax."""
    top = z.topk(2, dim=1)
    other = torch.where(torch.arange(z.shape[1], device=z.device)[None] == top.indices[:, :1],
                        top.values[:, 1:2], top.values[:, :1])
    return z - other


class BothAgree(nn.Module):
    """One classifier from a pair: logit j = min over the models of class j's margin,
    plus a null logit 0; class t wins iff both models predict t."""

    def __init__(self, *models: nn.Module):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x):
        m = torch.stack([class_margins(f(x)) for f in self.models]).min(0).values
        return torch.cat([m, torch.zeros_like(m[:, :1])], dim=1)


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def detection_stats(pred_orig: torch.Tensor, pred_steered: torch.Tensor, attacked: torch.Tensor,
                    clean_orig: torch.Tensor, clean_steered: torch.Tensor) -> dict:
    """AmI's bookkeeping.  Over the successful adversarial examples (``attacked``: the
    original model was fooled), the detection rate is the % where the steered model
    disagrees with the original; over the clean inputs, the false-positive rate is the %
    where they disagree.  Both in percent, with the counts."""
    succ = attacked.bool()
    flagged = (pred_orig != pred_steered) & succ
    n_succ = int(succ.sum())
    fp = clean_orig != clean_steered
    return {"successful": n_succ, "detected": int(flagged.sum()),
            "detection": 100.0 * int(flagged.sum()) / n_succ if n_succ else math.nan,
            "clean": len(fp), "false_positives": int(fp.sum()), "fpr": 100.0 * float(fp.float().mean())}
