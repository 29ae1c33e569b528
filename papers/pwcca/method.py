"""SVCCA and projection-weighted CCA (PWCCA) for comparing representations.

Morcos, Raghu & Bengio. "Insights on representational similarity in neural
networks with canonical correlation". NeurIPS 2018, arXiv:1806.05759, and
Raghu, Gilmer, Yosinski & Sohl-Dickstein. "SVCCA". NeurIPS 2017, arXiv:1706.05806.

A layer's representation is a matrix of activations, neurons x data points
(``acts[i, j]`` = neuron i on data point j).  Conv layers either pool over
space or treat every spatial position of every image as a data point
(:func:`conv_acts`).

- **CCA** (Hotelling; SVCCA paper §2): centre each neuron, whiten each layer
  (directions of variance below ``epsilon`` x the layer's largest variance
  are dropped), and the canonical correlations rho_1 >= rho_2 >= ... are the
  singular values of the whitened cross-covariance.  Mean CCA = mean rho.
- **SVCCA** (SVCCA paper §2, step 1): first keep, per layer, the top singular
  directions that explain ``keep_variance`` (99%) of its variance (sum of
  squared singular values), then CCA; similarity = mean rho.
- **PWCCA** (PWCCA paper §2.3, eq. 2-3): with h_i the canonical variates of
  one layer (the data-point vectors of its CCA directions, unit norm and
  mutually orthogonal after centring), alpha_i = sum_j |<h_i, z_j>| over the
  layer's centred neurons z_j, normalised to sum 1; similarity =
  sum_i alpha_i rho_i and distance = 1 - similarity.  The weights come from
  the layer with fewer retained dimensions (as google/svcca pwcca.py), so
  every weighted direction has a partner.

Implementation: everything is reduced to the (n1 + n2)^2 Gram matrices of the
centred activations, so the only pass over the data points is one matrix
product; the rest is one symmetric eigendecomposition per layer and one SVD
per pair, in float64, with no Python loop over neurons.  Writing
C_xx = V diag(lam) V^T, the whitening is W = V_r diag(lam_r)^(-1/2); with
W_x^T C_xy W_y = A diag(rho) B^T the canonical variates are H = X^T W_x A
(orthonormal), and the projections <h_i, z_j> = (C_xx W_x A)_ji =
(V_r diag(lam_r)^(1/2) A)_ji need no data-point-sized product at all.
:func:`prepare` does the per-layer half once, so an N x N distance matrix
costs N eigendecompositions and N^2 / 2 cross products.

Details checked against the reference google/svcca (cca_core.py, pwcca.py)
and the issues reported on it, which this implementation avoids: its PWCCA
branch for a second layer with fewer neurons indexes the first layer's
activations with the second layer's mask (IndexError, google/svcca PR #9);
it orthonormalises the CCA weight vectors applied to *uncentred*
activations rather than projecting onto the canonical variates (see
moskomule/anatome issue #30); its SVCCA tutorial thresholds the sum of
unsquared singular values.  Here everything is centred, the weights use the
canonical variates as the paper defines them, and the 99% is of variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

EPSILON = 1e-10  # directions with variance < EPSILON x the largest variance are dropped
SVCCA_KEEP = 0.99  # fraction of variance kept by SVCCA's SVD step


def _as_float64(acts) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(acts) if not isinstance(acts, torch.Tensor) else acts)
    if t.ndim != 2:
        raise ValueError(f"activations must be neurons x data points, got shape {tuple(t.shape)}")
    return t.detach().to("cpu", torch.float64)


@dataclass
class Layer:
    """One layer's centred activations and its whitening, ready for many comparisons."""

    centred: torch.Tensor  # n x m, float64
    evals: torch.Tensor  # r retained eigenvalues of the scatter matrix X X^T, descending
    evecs: torch.Tensor  # n x r matching eigenvectors
    n_neurons: int

    @property
    def rank(self) -> int:
        return len(self.evals)

    def top(self, keep_variance: float) -> "Layer":
        """The SVCCA step: only the leading directions explaining ``keep_variance``."""
        frac = torch.cumsum(self.evals, 0) / self.evals.sum()
        d = int(torch.searchsorted(frac, torch.tensor(keep_variance, dtype=frac.dtype)).item()) + 1
        d = min(d, self.rank)
        return Layer(self.centred, self.evals[:d], self.evecs[:, :d], self.n_neurons)


def prepare(acts, epsilon: float = EPSILON) -> Layer:
    """Centre ``acts`` (neurons x data points) and eigendecompose its scatter matrix."""
    x = _as_float64(acts)
    n, m = x.shape
    if m < 2:
        raise ValueError("need at least two data points")
    x = x - x.mean(dim=1, keepdim=True)
    gram = x @ x.T
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0), evecs.flip(1)  # descending
    top = evals[0].clamp_min(0)
    keep = evals > epsilon * top if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
    return Layer(x, evals[keep], evecs[:, keep], n)


@dataclass
class CCAResult:
    rho: torch.Tensor  # canonical correlations, descending (min(rank1, rank2) of them)
    weights: torch.Tensor  # PWCCA weights alpha (sum to 1), aligned with rho
    weights_from: int  # 1 or 2: the layer whose canonical variates gave the weights
    ranks: tuple[int, int]

    @property
    def mean(self) -> float:
        return self.rho.mean().item() if len(self.rho) else 0.0

    @property
    def pwcca(self) -> float:
        return (self.weights * self.rho).sum().item() if len(self.rho) else 0.0


def cca_layers(a: Layer, b: Layer) -> CCAResult:
    """CCA between two prepared layers (same data points), with PWCCA weights."""
    if a.centred.shape[1] != b.centred.shape[1]:
        raise ValueError(f"layers see different numbers of data points: "
                         f"{a.centred.shape[1]} vs {b.centred.shape[1]}")
    if a.rank == 0 or b.rank == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return CCAResult(empty, empty, 1, (a.rank, b.rank))
    cross = a.centred @ b.centred.T  # n1 x n2: the one data-point-sized product
    wa = a.evecs / a.evals.sqrt()  # n1 x r1 whitening
    wb = b.evecs / b.evals.sqrt()
    u, rho, vh = torch.linalg.svd(wa.T @ cross @ wb, full_matrices=False)
    rho = rho.clamp(0.0, 1.0)
    if a.rank <= b.rank:  # the layer with fewer retained dimensions supplies the weights
        proj = (a.evecs * a.evals.sqrt()) @ u  # <h_i, z_j> for neurons j of layer a
        src = 1
    else:
        proj = (b.evecs * b.evals.sqrt()) @ vh.T
        src = 2
    alpha = proj.abs().sum(0)
    alpha = alpha / alpha.sum()
    return CCAResult(rho, alpha, src, (a.rank, b.rank))


def cca(acts1, acts2, epsilon: float = EPSILON) -> CCAResult:
    """CCA of two activation matrices (neurons x data points)."""
    return cca_layers(prepare(acts1, epsilon), prepare(acts2, epsilon))


def similarities(a: Layer, b: Layer, keep_variance: float = SVCCA_KEEP) -> dict:
    """Mean CCA, SVCCA and PWCCA similarity (1 = same up to a linear map) of two layers."""
    full = cca_layers(a, b)
    sv = cca_layers(a.top(keep_variance), b.top(keep_variance))
    return {"mean_cca": full.mean, "svcca": sv.mean, "pwcca": full.pwcca}


def pwcca_distance(acts1, acts2, epsilon: float = EPSILON) -> float:
    return 1.0 - cca(acts1, acts2, epsilon).pwcca


def distance_matrix(layers: list[Layer], measure: str = "pwcca",
                    keep_variance: float = SVCCA_KEEP) -> np.ndarray:
    """Symmetric matrix of 1 - similarity between prepared layers.  PWCCA is not
    symmetric in general (the weights come from one layer); the entry (i, j) and
    (j, i) both hold the value computed with the weights from the layer with
    fewer retained dimensions, which makes it symmetric."""
    n = len(layers)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = 1.0 - similarities(layers[i], layers[j], keep_variance)[measure]
    return out


def conv_acts(fmap: torch.Tensor, mode: str = "positions", max_points: int = 0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A conv feature map (images x channels x H x W) as channels x data points.

    ``positions``: every spatial position of every image is a data point
    (optionally a random subset of ``max_points`` of them, the same subset for
    every network when the generator is seeded alike); ``pool``: spatial mean."""
    if fmap.ndim == 2:
        return fmap.T
    if mode == "pool":
        return fmap.mean(dim=(2, 3)).T
    if mode != "positions":
        raise ValueError(f"unknown conv mode {mode!r}: positions or pool")
    flat = fmap.permute(1, 0, 2, 3).reshape(fmap.shape[1], -1)
    if max_points and flat.shape[1] > max_points:
        idx = torch.randperm(flat.shape[1], generator=generator)[:max_points]
        flat = flat[:, idx]
    return flat


def random_baseline(n1: int, n2: int, m: int, generator: torch.Generator) -> dict:
    """Similarities of independent Gaussian activations of the same shapes: the
    value CCA reports for unrelated layers at this number of data points."""
    a = torch.randn(n1, m, generator=generator, dtype=torch.float64)
    b = torch.randn(n2, m, generator=generator, dtype=torch.float64)
    return similarities(prepare(a), prepare(b))


# ------------------------------------------------------------- synthetic test


def synthetic_pair(n_neurons: int, n_points: int, noise_fraction: float, noise_scale: float,
                   generator: torch.Generator, shared: bool = True):
    """Two layers that share a signal subspace and differ in noise.

    Each layer mixes (random orthogonal matrix) d_s signal latents of unit
    variance, shared by both layers when ``shared``, with d_n = round(f n)
    noise latents of standard deviation ``noise_scale``, drawn independently
    for each layer.  The ideal similarity ignores the noise dimensions."""
    d_n = int(round(noise_fraction * n_neurons))
    d_s = n_neurons - d_n
    signal = torch.randn(d_s, n_points, generator=generator, dtype=torch.float64)

    def layer(sig):
        noise = noise_scale * torch.randn(d_n, n_points, generator=generator, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(n_neurons, n_neurons, generator=generator,
                                           dtype=torch.float64))
        return q @ torch.cat([sig, noise])

    other = signal if shared else torch.randn(d_s, n_points, generator=generator,
                                              dtype=torch.float64)
    return layer(signal), layer(other)


# -------------------------------------------------------------------- models


class ConvNet(nn.Module):
    """A small CNN with width multiplier ``w`` (the paper's CIFAR architectures
    were not found): conv3x3(w) conv3x3(w, stride 2) conv3x3(2w) conv3x3(2w,
    stride 2) fc(fc_mult x w) fc(classes), ReLU after each hidden layer (a wide fc
    layer lets the small nets memorise permuted labels in affordable time).
    ``forward(x, return_acts=True)`` also returns every hidden layer's
    post-ReLU activations and the logits."""

    LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc", "logits")

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28, fc_mult: int = 16):
        super().__init__()
        w = width
        self.convs = nn.ModuleList([
            nn.Conv2d(in_channels, w, 3, 1, 1), nn.Conv2d(w, w, 3, 2, 1),
            nn.Conv2d(w, 2 * w, 3, 1, 1), nn.Conv2d(2 * w, 2 * w, 3, 2, 1)])
        side = (image_size + 3) // 4  # two stride-2 convs with padding 1
        self.fc = nn.Linear(2 * w * side * side, fc_mult * w)
        self.out = nn.Linear(fc_mult * w, num_classes)

    def forward(self, x, return_acts: bool = False):
        acts = {}
        for name, conv in zip(self.LAYERS[:4], self.convs):
            x = torch.relu(conv(x))
            acts[name] = x
        x = torch.relu(self.fc(x.flatten(1)))
        acts["fc"] = x
        logits = self.out(x)
        acts["logits"] = logits
        return (logits, acts) if return_acts else logits


class RowLSTM(nn.Module):
    """A stacked LSTM reading a 28x28 image row by row (28 steps of 28 pixels),
    classifying from the last step of the top layer.  ``forward(x, return_acts=True)``
    also returns each layer's hidden states, images x steps x hidden."""

    def __init__(self, hidden: int = 64, layers: int = 3, num_classes: int = 10, row: int = 28):
        super().__init__()
        self.cells = nn.ModuleList([nn.LSTM(row if i == 0 else hidden, hidden, batch_first=True)
                                    for i in range(layers)])
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x, return_acts: bool = False):
        seq = x.flatten(1, 2) if x.ndim == 4 else x  # B x 1 x 28 x 28 -> B x 28 x 28
        acts = {}
        for i, lstm in enumerate(self.cells):
            seq, _ = lstm(seq)
            acts[f"lstm{i + 1}"] = seq
        logits = self.out(seq[:, -1])
        return (logits, acts) if return_acts else logits
