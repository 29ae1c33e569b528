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

Two PWCCA weightings (``weighting=`` of :func:`cca_layers`; the experiments'
claims use ``"reference"``, what produced the paper's figures):

- ``"reference"`` (default): google/svcca ``pwcca.compute_pwcca``, the paper's
  code.  Its "directions" are the SVD's left vectors ``u`` (computed in the
  symmetric-whitened neuron basis, ``Sigma^-1/2`` from a pseudo-inverse) applied
  to the centred activations *with the neuron means added back*, row i getting
  neuron i's mean: ``D = u^T (X - m) + m``; these are orthonormalised by QR (in
  their order), and alpha_i = sum_j |<p_i, x_j>| over the *uncentred* neurons
  x_j; the coefficients are all singular values (zeros of a rank-deficient
  layer included, so its null directions take weight too).  Because the means
  are added to sign-ambiguous directions, the value depends on the SVD's sign
  convention, so this SVD is numpy's, as in the reference (torch's LAPACK flips
  some vectors); a test fixture made by running the reference on fixed inputs
  checks agreement to 1e-12.  The side is chosen
  as the reference does, by neuron count; where the reference's branch for a
  second layer with fewer neurons indexes the first layer's activations with
  the second's mask (an IndexError, google/svcca PR #9), the second layer is
  used, i.e. the reference applied with its arguments swapped.
- ``"centred"``: the paper's definition (§2.3) read literally: the canonical
  variates of the centred activations (orthonormal without a QR) and the
  centred neurons, the side with fewer retained dimensions; cheaper, and
  invariant to the SVD's signs.  The two differ (0.687 centred vs 0.738
  reference on benchmarks/pwcca.py's ReLU-like layers; moskomule/anatome issue
  #30 discusses the difference).

Also checked against the reference: its SVCCA tutorial thresholds the sum of
unsquared singular values; here the 99% is of variance.
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
    means: torch.Tensor | None = None  # n x 1 neuron means (the reference weighting needs them)
    gram: torch.Tensor | None = None  # n x n centred scatter matrix X X^T

    @property
    def rank(self) -> int:
        return len(self.evals)

    def top(self, keep_variance: float) -> "Layer":
        """The SVCCA step: only the leading directions explaining ``keep_variance``."""
        frac = torch.cumsum(self.evals, 0) / self.evals.sum()
        d = int(torch.searchsorted(frac, torch.tensor(keep_variance, dtype=frac.dtype)).item()) + 1
        d = min(d, self.rank)
        return Layer(self.centred, self.evals[:d], self.evecs[:, :d], self.n_neurons,
                     self.means, self.gram)


def prepare(acts, epsilon: float = EPSILON) -> Layer:
    """Centre ``acts`` (neurons x data points) and eigendecompose its scatter matrix."""
    x = _as_float64(acts)
    n, m = x.shape
    if m < 2:
        raise ValueError("need at least two data points")
    means = x.mean(dim=1, keepdim=True)
    x = x - means
    gram = x @ x.T
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0), evecs.flip(1)  # descending
    top = evals[0].clamp_min(0)
    keep = evals > epsilon * top if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
    return Layer(x, evals[keep], evecs[:, keep], n, means, gram)


@dataclass
class CCAResult:
    rho: torch.Tensor  # canonical correlations, descending (min(rank1, rank2) of them)
    weights: torch.Tensor  # PWCCA weights alpha (sum to 1), aligned with coefs
    weights_from: int  # 1 or 2: the layer whose directions gave the weights
    ranks: tuple[int, int]
    coefs: torch.Tensor | None = None  # the correlations the weights multiply (None: rho)

    @property
    def mean(self) -> float:
        return self.rho.mean().item() if len(self.rho) else 0.0

    @property
    def pwcca(self) -> float:
        coefs = self.rho if self.coefs is None else self.coefs
        return (self.weights * coefs).sum().item() if len(coefs) else 0.0


WEIGHTINGS = ("reference", "centred")


def _pinv_sqrt(gram: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of the pseudo-inverse (numpy's pinv cut-off, 1e-15 x max)."""
    w, v = torch.linalg.eigh(gram)
    inv = torch.where(w > 1e-15 * w.abs().max(), 1.0 / w, torch.zeros_like(w))
    return (v * inv.sqrt()) @ v.T


def reference_weights(a: Layer, b: Layer) -> tuple[torch.Tensor, torch.Tensor, int]:
    """google/svcca ``compute_pwcca``'s weights and coefficients (module docstring):
    ``(alpha, coefs, side)``; ``side`` is the layer whose directions were weighted."""
    x, y, side = (a, b, 1) if a.n_neurons <= b.n_neurons else (b, a, 2)
    n = x.centred.shape[1]
    arr = _pinv_sqrt(x.gram) @ (x.centred @ y.centred.T) @ _pinv_sqrt(y.gram)
    # numpy's SVD, as the reference's: the value depends on the singular vectors' signs,
    # and torch's LAPACK picks other signs for some of them (seen on Gaussian inputs)
    u, coefs, _ = (torch.from_numpy(t) for t in np.linalg.svd(arr.numpy(), full_matrices=False))
    m = x.means
    # Gram form of the QR of D^T, D = u^T Xc + m 1^T: D D^T = u^T G u + n m m^T and
    # D X^T = u^T G + n m m^T, so with D D^T = L L^T the QR projections are L^-1 D X^T
    dd = u.T @ x.gram @ u + n * (m @ m.T)
    dx = u.T @ x.gram + n * (m @ m.T)
    chol, info = torch.linalg.cholesky_ex(dd)
    pivots = chol.diagonal()
    if info == 0 and pivots.min() > 1e-6 * pivots.max():
        proj = torch.linalg.solve_triangular(chol, dx, upper=False)
    else:  # D is rank-deficient: the explicit QR, as the reference
        q, _ = torch.linalg.qr((u.T @ x.centred + m).T)
        proj = q.T @ (x.centred + m).T
    alpha = proj.abs().sum(1)
    return alpha / alpha.sum(), coefs, side


def cca_layers(a: Layer, b: Layer, weighting: str = "reference") -> CCAResult:
    """CCA between two prepared layers (same data points), with PWCCA weights
    (``weighting``: ``"reference"`` or ``"centred"``, see the module docstring)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown PWCCA weighting {weighting!r}: one of {', '.join(WEIGHTINGS)}")
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
    if weighting == "reference":
        alpha, coefs, src = reference_weights(a, b)
        return CCAResult(rho, alpha, src, (a.rank, b.rank), coefs)
    alpha = proj.abs().sum(0)
    alpha = alpha / alpha.sum()
    return CCAResult(rho, alpha, src, (a.rank, b.rank))


def cca(acts1, acts2, epsilon: float = EPSILON, weighting: str = "reference") -> CCAResult:
    """CCA of two activation matrices (neurons x data points)."""
    return cca_layers(prepare(acts1, epsilon), prepare(acts2, epsilon), weighting)


def similarities(a: Layer, b: Layer, keep_variance: float = SVCCA_KEEP,
                 weighting: str = "reference") -> dict:
    """Mean CCA, SVCCA and PWCCA similarity (1 = same up to a linear map) of two layers."""
    full = cca_layers(a, b, weighting)
    sv = cca_layers(a.top(keep_variance), b.top(keep_variance), "centred")  # its rho only
    return {"mean_cca": full.mean, "svcca": sv.mean, "pwcca": full.pwcca}


def pwcca_distance(acts1, acts2, epsilon: float = EPSILON, weighting: str = "reference") -> float:
    return 1.0 - cca(acts1, acts2, epsilon, weighting).pwcca


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
