"""The L0-robust sparse DCT of Bafna, Murtagh & Vyas, "Thwarting adversarial examples:
an L0-robust sparse Fourier transform" (NeurIPS 2018, arXiv 1812.05013).

An observed image is y = x + e, with x (approximately) k-sparse in an orthonormal 2-D
transform (here the DCT-II) and e t-sparse in the pixel basis with arbitrary
magnitudes (an L0 adversary).  Iterative hard thresholding (Algorithm 1) alternates

    signal step:  x_hat = C^T H_k( C (y - e_hat) C^T ) C     (top-k DCT coefficients)
    noise step:   e_hat = H_t( y - x_hat )                    (top-t pixel residuals)

and returns the top-k DCT coefficients of y - e_hat; the classifier, trained on top-k
projections of clean images, classifies their inverse transform.  Algorithm 2 (the
patch-wise variant, for contiguous corruptions such as an adversarial patch) replaces
the noise step's "t largest pixels" by "the p x p window of largest residual energy".

The exact statements of Algorithms 1 and 2 (initialisation, thresholds, number of
iterations, the block scheme of Algorithm 2) were not found in any reachable source;
what is written here is the alternating projection the summaries describe, and every
detail of it is our choice (README, "Differences on purpose"): e_hat starts at 0, the
counts k and t are fixed (no decreasing thresholds), a fixed number of iterations,
ties broken by torch.topk.  Each step minimises ||y - x - e||_2 over one sparse block
given the other, so the residual never increases.

Everything is batched over images (N, 1, H, W) and runs in the dtype of the input
(float64 in the exactness tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn


# ------------------------------------------------------------------ the orthonormal 2-D DCT


def dct_matrix(n: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix C (n x n): C[f, i] = a_f cos(pi (2 i + 1) f / (2 n)),
    a_0 = sqrt(1 / n), a_f = sqrt(2 / n); C C^T = I, and C x equals
    scipy.fft.dct(x, norm="ortho")."""
    f = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * f / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


def _mats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = x.shape[-2:]
    ch = dct_matrix(h, x.dtype, x.device)
    return ch, (ch if w == h else dct_matrix(w, x.dtype, x.device))


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D orthonormal DCT-II over the last two dims: X = C_h x C_w^T."""
    ch, cw = _mats(x)
    return ch @ x @ cw.T


def idct2(X: torch.Tensor) -> torch.Tensor:
    """Its inverse (the transpose): x = C_h^T X C_w."""
    ch, cw = _mats(X)
    return ch.T @ X @ cw


def hard_threshold(v: torch.Tensor, k: int) -> torch.Tensor:
    """H_k per sample: keep the k largest-magnitude entries of each sample's last two
    dims (all of them, if k >= their count), zero the rest."""
    flat = v.flatten(-2)
    if k >= flat.shape[-1]:
        return v.clone()
    out = torch.zeros_like(flat)
    if k > 0:
        idx = flat.abs().topk(k, dim=-1).indices
        out.scatter_(-1, idx, flat.gather(-1, idx))
    return out.view_as(v)


def project_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """The image made of x's top-k DCT coefficients (what the classifiers are trained on)."""
    return idct2(hard_threshold(dct2(x), k))


# ------------------------------------------------------------------ Algorithm 1: IHT


def iht(y: torch.Tensor, k: int, t: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterative hard thresholding: recover the top-k DCT coefficients of x from
    y = x + e, e t-sparse in pixels.  Returns (X_hat, e_hat): the k-sparse coefficient
    array (N, C, H, W, DCT domain) and the t-sparse pixel noise estimate."""
    e_hat = torch.zeros_like(y)
    for _ in range(iters):
        x_hat = idct2(hard_threshold(dct2(y - e_hat), k))
        e_hat = hard_threshold(y - x_hat, t)
    return hard_threshold(dct2(y - e_hat), k), e_hat


def iht_image(y: torch.Tensor, k: int, t: int, iters: int = 20) -> torch.Tensor:
    """The recovered image (inverse DCT of IHT's top-k coefficients), as classified."""
    return idct2(iht(y, k, t, iters)[0])


# ------------------------------------------------------------------ Algorithm 2: patch-wise


def patch_threshold(r: torch.Tensor, p: int) -> torch.Tensor:
    """Keep, per sample (and channel), the p x p window of r with the largest energy
    sum r^2 (the first such window in row-major order on ties); zero the rest."""
    _, _, h, w = r.shape
    energy = torch.nn.functional.avg_pool2d(r.pow(2), p, stride=1)  # (n, c, h-p+1, w-p+1)
    best = energy.flatten(2).argmax(-1)  # (n, c)
    top, left = best // (w - p + 1), best % (w - p + 1)
    rows = torch.arange(h, device=r.device)
    cols = torch.arange(w, device=r.device)
    in_r = (rows[None, None] >= top[..., None]) & (rows[None, None] < top[..., None] + p)
    in_c = (cols[None, None] >= left[..., None]) & (cols[None, None] < left[..., None] + p)
    return r * (in_r[..., :, None] & in_c[..., None, :]).to(r.dtype)


def patch_iht(y: torch.Tensor, k: int, p: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-wise IHT: as ``iht`` but the noise step keeps the p x p window of largest
    residual energy (a contiguous corruption of unknown location)."""
    e_hat = torch.zeros_like(y)
    for _ in range(iters):
        x_hat = idct2(hard_threshold(dct2(y - e_hat), k))
        e_hat = patch_threshold(y - x_hat, p)
    return hard_threshold(dct2(y - e_hat), k), e_hat


# ------------------------------------------------------------------ BPDA through IHT (extension)


class _BPDA(torch.autograd.Function):
    """Forward: the IHT-recovered image; backward: identity, or the top-k projection's
    linear map on the recovered support (Athalye et al.'s BPDA, ICML 2018)."""

    @staticmethod
    def forward(ctx, y, k, t, iters, backward):
        X, _ = iht(y, k, t, iters)
        ctx.mask = (X != 0).to(y.dtype)
        ctx.backward_mode = backward
        return idct2(X)

    @staticmethod
    def backward(ctx, g):
        if ctx.backward_mode == "projection":
            g = idct2(dct2(g) * ctx.mask)
        return g, None, None, None, None


def iht_bpda(y: torch.Tensor, k: int, t: int, iters: int = 20, backward: str = "identity") -> torch.Tensor:
    if backward not in ("identity", "projection"):
        raise ValueError(f"backward must be 'identity' or 'projection', got {backward!r}")
    return _BPDA.apply(y, k, t, iters, backward)


class Defended(nn.Module):
    """classifier(IHT(x)): the defended pipeline as one module (``bpda`` selects the
    backward pass an adaptive attacker uses; None: no gradient through IHT)."""

    def __init__(self, classifier: nn.Module, k: int, t: int, iters: int = 20, bpda: str | None = "identity"):
        super().__init__()
        self.classifier, self.k, self.t, self.iters, self.bpda = classifier, k, t, iters, bpda

    def forward(self, x):
        if self.bpda is None:
            with torch.no_grad():
                return self.classifier(iht_image(x, self.k, self.t, self.iters))
        return self.classifier(iht_bpda(x, self.k, self.t, self.iters, self.bpda))


# ------------------------------------------------------------------ the classifier


class SmallCNN(nn.Module):
    """conv 5x5 (c1) - max-pool 2 - conv 5x5 (c2) - max-pool 2 - FC h - 10, ReLU (the
    same architecture for the full-image and every top-k model)."""

    def __init__(self, c1: int = 16, c2: int = 32, hidden: int = 100, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 49, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


# ------------------------------------------------------------------ synthetic recovery


def sparse_signals(n: int, side: int, k: int, t: int, generator: torch.Generator,
                   spike: float = 10.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic images (n, 1, side, side): x exactly k-sparse in the DCT (random
    support, N(0, 1) coefficients) and e t-sparse in pixels with random signs and
    magnitudes uniform in [spike, 2 spike] times x's largest pixel (arbitrary, large)."""
    d = side * side
    coef = torch.zeros(n, d, dtype=dtype)
    sup = torch.rand(n, d, generator=generator).argsort(1)[:, :k]
    coef.scatter_(1, sup, torch.randn(n, k, generator=generator, dtype=dtype))
    x = idct2(coef.view(n, 1, side, side))
    scale = x.flatten(1).abs().amax(1).view(n, 1)
    e = torch.zeros(n, d, dtype=dtype)
    pos = torch.rand(n, d, generator=generator).argsort(1)[:, :t]
    mag = spike * (1 + torch.rand(n, t, generator=generator, dtype=dtype)) * scale
    sign = torch.randint(0, 2, (n, t), generator=generator).to(dtype) * 2 - 1
    e.scatter_(1, pos, mag * sign)
    return x, e.view(n, 1, side, side)


def recovery_error(x: torch.Tensor, e: torch.Tensor, k: int, t: int, iters: int) -> torch.Tensor:
    """Per-sample relative error ||X_hat - DCT(x)||_2 / ||DCT(x)||_2 of IHT on x + e."""
    X, _ = iht(x + e, k, t, iters)
    X0 = dct2(x)
    return (X - X0).flatten(1).norm(dim=1) / X0.flatten(1).norm(dim=1)
