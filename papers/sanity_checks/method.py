"""Sanity checks for saliency maps: attribution methods, randomisation tests, similarity metrics.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim. "Sanity checks for saliency
maps". NeurIPS 2018, arXiv:1810.03292.

Attribution methods (§2; maps for the logit of the predicted class, batched
over images, any classifier whose ReLUs are ``nn.ReLU`` modules; Gradient,
Gradient (.) Input and Integrated Gradients live in common/saliency.py, shared
with papers/senn):

- Gradient (Simonyan et al.): dS_c/dx.
- Gradient (.) Input.
- Integrated Gradients (Sundararajan et al.): (x - x0) times the average
  gradient on the straight path from the zero baseline x0, 50 steps, trapezoid
  rule (the PAIR ``saliency`` package used by the paper averages 50 equally
  weighted points including both ends; the trapezoid differs by O(1/steps)).
- Guided Backprop (Springenberg et al.): ReLUs pass back only positive
  gradients where their input was positive.
- GradCAM (Selvaraju et al.): ReLU(sum_k a_k A_k) on the last conv layer's
  post-ReLU activations A, a_k the spatial mean of dS_c/dA_k, upsampled
  bilinearly to the input size.
- Guided GradCAM: Guided Backprop (.) GradCAM.
- SmoothGrad (Smilkov et al.): mean gradient over 50 noisy copies, noise
  std 0.15 x (max - min) of each input.
- VarGrad: variance of the gradient over the same noisy copies (the paper's
  helper draws 25 separate copies; we reuse SmoothGrad's 50).

Randomisation tests (§3-4): cascading (re-initialise blocks from the logits
down, cumulatively), independent (one block at a time), and data
randomisation (a model trained on permuted labels).  Similarity between the
original and the new map, per image (§4, and the reference notebooks):
Spearman rank correlation of the absolute-value maps and of the signed
maps, SSIM (Gaussian window sigma 1.5, 11x11) and the Spearman correlation
of HOG features, the last two on maps scaled to [0, 1] by their min and max.
Spearman ties get average ranks (as scipy); a constant map has no defined
rank correlation and is counted as 0 (``nan_count`` records how often).

Reference code followed for details: adebayoj/sanity_checks_saliency
(src/train_cnn_models.py for the CNN, its initialisation and training;
notebooks/*cascading* for the block order, normalisations and metrics).
Differences: SSIM uses data_range = 1 for [0, 1] maps (the reference's old
scikit-image inferred 2 from the float dtype); HOG cells are 4x4 pixels
with 2x2-cell blocks on 28x28 maps (the reference's 16x16 cells were for
299x299 Inception inputs and do not fit a 28x28 map).
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.saliency import (grad_x_input, gradient, integrated_gradients,  # noqa: F401  (re-exported)
                             predicted_class, selected_logit_grad)

METHODS = ("gradient", "grad_x_input", "integrated_gradients", "guided_backprop", "gradcam",
           "guided_gradcam", "smoothgrad", "vargrad")
METHOD_NAMES = {"gradient": "Gradient", "grad_x_input": "Gradient⊙Input",
                "integrated_gradients": "Integrated Gradients", "guided_backprop": "Guided Backprop",
                "gradcam": "GradCAM", "guided_gradcam": "Guided GradCAM",
                "smoothgrad": "SmoothGrad", "vargrad": "VarGrad"}

# ------------------------------------------------------------------- model


class CNN(nn.Module):
    """The reference MNIST CNN (src/train_cnn_models.py): conv 5x5 (c1) - maxpool -
    conv 5x5 (c2) - maxpool - fc (f) - fc 10, ReLU after each hidden layer;
    c1, c2, f = 32, 64, 1024 in the paper.  ``conv2_act`` (post-ReLU, pre-pool,
    the reference's "hidden2_hconv_act") is the GradCAM layer."""

    BLOCKS = ("logits", "fc1", "conv2", "conv1")  # cascading order, top down

    def __init__(self, c1: int = 32, c2: int = 64, fc: int = 1024, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.conv2_act = nn.ReLU()
        self.fc1 = nn.Linear(c2 * 7 * 7, fc)
        self.relu3 = nn.ReLU()
        self.logits = nn.Linear(fc, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.relu1(self.conv1(x)), 2)
        x = F.max_pool2d(self.conv2_act(self.conv2(x)), 2)
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.logits(x)

    def block_parameters(self, block: str) -> dict[str, nn.Parameter]:
        """The parameters one block re-initialises (its weight and bias)."""
        module = getattr(self, block)
        return {f"{block}.{n}": p for n, p in module.named_parameters()}


@torch.no_grad()
def init_block(module: nn.Module, generator: torch.Generator, std: float = 0.1,
               bias: float = 0.1) -> None:
    """The reference's initialiser: weights ~ normal(0, std) truncated at 2 std
    (TensorFlow's truncated_normal), biases = ``bias``."""
    w = module.weight
    sample = torch.empty(w.shape).normal_(0.0, 1.0, generator=generator)
    bad = sample.abs() > 2
    while bad.any():  # redraw outside +-2 std, as truncated_normal does
        sample[bad] = torch.empty(int(bad.sum())).normal_(0.0, 1.0, generator=generator)
        bad = sample.abs() > 2
    w.copy_(sample * std)
    module.bias.fill_(bias)


def init_model(model: CNN, generator: torch.Generator) -> CNN:
    for block in model.BLOCKS:
        init_block(getattr(model, block), generator)
    return model


def randomised(model: CNN, blocks, generator: torch.Generator) -> CNN:
    """A copy of ``model`` with ``blocks`` re-initialised (the rest keeps its weights)."""
    new = copy.deepcopy(model)
    for block in blocks:
        init_block(getattr(new, block), generator)
    return new.eval()


# ------------------------------------------------------------ attributions


@contextlib.contextmanager
def guided_relus(model: nn.Module):
    """Within the block, every nn.ReLU passes back only positive gradients
    (Guided Backprop's rule; ReLU's own backward already zeroes where its
    input was negative)."""
    hooks = [m.register_full_backward_hook(lambda mod, gin, gout: (gin[0].clamp(min=0),))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def guided_backprop(model, x, target):
    with guided_relus(model):
        return selected_logit_grad(model, x, target)


def gradcam(model, x, target, layer: nn.Module | None = None, size=None):
    """GradCAM on ``layer``'s output (default: the CNN's ``conv2_act``), upsampled
    bilinearly to the input's spatial size; one channel per image."""
    layer = layer if layer is not None else model.conv2_act
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        x = x.detach().requires_grad_(True)
        out = model(x)
    finally:
        handle.remove()
    act = store["a"]
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), act)
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
    return F.interpolate(cam.detach(), size=size or x.shape[-2:], mode="bilinear",
                         align_corners=False)


def guided_gradcam(model, x, target, layer=None):
    return guided_backprop(model, x, target) * gradcam(model, x, target, layer)


def noisy_gradients(model, x, target, samples: int = 50, noise: float = 0.15,
                    generator: torch.Generator | None = None):
    """Gradients at ``samples`` noisy copies of each image (noise std = ``noise`` x
    the image's max - min), samples x B x C x H x W, in one batch."""
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(1, -1, 1, 1, 1)
    eps = torch.randn((samples, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
    noisy = x[None] + noise * span * eps
    g = selected_logit_grad(model, noisy.flatten(0, 1), target.repeat(samples))
    return g.view(samples, *x.shape)


def smoothgrad(model, x, target, samples=50, noise=0.15, generator=None):
    return noisy_gradients(model, x, target, samples, noise, generator).mean(0)


def vargrad(model, x, target, samples=50, noise=0.15, generator=None):
    return noisy_gradients(model, x, target, samples, noise, generator).var(0, unbiased=False)


def all_maps(model, x, target=None, ig_steps: int = 50, noise_samples: int = 50,
             noise: float = 0.15, generator: torch.Generator | None = None,
             batch_size: int = 50) -> dict[str, torch.Tensor]:
    """Every method's map for ``x`` (B x 1 x H x W), for the predicted class
    unless ``target`` is given; returns method -> B x H x W (channels summed)."""
    model.eval()
    target = predicted_class(model, x) if target is None else target
    out = {m: [] for m in METHODS}
    for xb, tb in zip(x.split(batch_size), target.split(batch_size)):
        g = gradient(model, xb, tb)
        gbp = guided_backprop(model, xb, tb)
        cam = gradcam(model, xb, tb)
        noisy = noisy_gradients(model, xb, tb, noise_samples, noise, generator)
        maps = {"gradient": g, "grad_x_input": g * xb,
                "integrated_gradients": integrated_gradients(model, xb, tb, ig_steps),
                "guided_backprop": gbp, "gradcam": cam.expand_as(xb), "guided_gradcam": gbp * cam,
                "smoothgrad": noisy.mean(0), "vargrad": noisy.var(0, unbiased=False)}
        for m, v in maps.items():
            out[m].append(v.detach().sum(1))
    return {m: torch.cat(v) for m, v in out.items()}


# ----------------------------------------------------------------- metrics


def _avg_ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank, as scipy.stats.rankdata) per row."""
    s, _ = v.sort(dim=1)
    lo = torch.searchsorted(s, v.contiguous(), right=False)
    hi = torch.searchsorted(s, v.contiguous(), right=True)
    return (lo + hi - 1).to(torch.float64) / 2 + 1


def spearman(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Row-wise Spearman correlation of a, b (B x ...); a constant row gives 0.
    Returns the B correlations and how many were undefined."""
    ra, rb = _avg_ranks(a.flatten(1).double()), _avg_ranks(b.flatten(1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    undefined = den <= 1e-12
    rho = (ra * rb).sum(1) / den.clamp_min(1e-300)
    rho[undefined] = 0.0
    return rho, int(undefined.sum())


def to_unit(m: torch.Tensor) -> torch.Tensor:
    """Scale each map (B x H x W) to [0, 1] by its min and max (a constant map -> 0)."""
    flat = m.flatten(1).double()
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-300)).view(m.shape)


def _gaussian_kernel(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Gaussian-window SSIM per image pair (B x H x W), as scikit-image's
    structural_similarity(gaussian_weights=True) with its default sample
    covariance: the mean over the positions whose window lies inside the image."""
    k = _gaussian_kernel(sigma)
    n = len(k)
    H, W = a.shape[-2:]

    def band(size):  # (size - n + 1) x size matrix: a 'valid' 1-D filter as a product
        m = torch.zeros(size - n + 1, size, dtype=torch.float64)
        for i in range(size - n + 1):
            m[i, i:i + n] = k
        return m

    kr, kc = band(H), band(W)

    def filt(t):
        return kr @ t @ kc.T

    x, y = a.double(), b.double()
    cov_norm = n * n / (n * n - 1)
    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def hog(images: torch.Tensor, cell: int = 4, block: int = 2, orientations: int = 9) -> torch.Tensor:
    """HOG features per image (B x H x W), as scikit-image's ``hog`` with L2-Hys
    block normalisation: central-difference gradients (0 on the border), hard
    orientation bins over [0, 180), cell histograms of mean magnitude."""
    x = images.double()
    gr = torch.zeros_like(x)
    gc = torch.zeros_like(x)
    gr[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    gc[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    mag = torch.hypot(gr, gc)
    ang = torch.rad2deg(torch.atan2(gr, gc)) % 180
    bins = (ang / (180.0 / orientations)).floor().clamp(max=orientations - 1).long()
    B, H, W = x.shape
    nr, nc = H // cell, W // cell
    mag, bins = mag[:, :nr * cell, :nc * cell], bins[:, :nr * cell, :nc * cell]
    onehot = F.one_hot(bins, orientations).double() * mag[..., None]  # B x H x W x O
    hist = onehot.view(B, nr, cell, nc, cell, orientations).sum((2, 4)) / (cell * cell)
    nbr, nbc = nr - block + 1, nc - block + 1
    blocks = hist.unfold(1, block, 1).unfold(2, block, 1)  # B x nbr x nbc x O x b x b
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).reshape(B, nbr, nbc, -1)
    eps = 1e-5
    out = blocks / torch.sqrt((blocks ** 2).sum(-1, keepdim=True) + eps ** 2)
    out = out.clamp(max=0.2)
    out = out / torch.sqrt((out ** 2).sum(-1, keepdim=True) + eps ** 2)
    return out.flatten(1)


def similarity(original: torch.Tensor, new: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image similarity of two sets of maps (B x H x W) under the paper's four metrics."""
    rank_abs, nan_abs = spearman(original.abs(), new.abs())
    rank_signed, nan_signed = spearman(original, new)
    u0, u1 = to_unit(original), to_unit(new)
    rank_hog, nan_hog = spearman(hog(u0), hog(u1))
    return {"spearman_abs": rank_abs, "spearman_signed": rank_signed, "ssim": ssim(u0, u1),
            "hog": rank_hog, "nan_count": torch.tensor(nan_abs + nan_signed + nan_hog)}


METRICS = ("spearman_abs", "spearman_signed", "ssim", "hog")
METRIC_NAMES = {"spearman_abs": "Spearman (absolute value)", "spearman_signed": "Spearman (signed)",
                "ssim": "SSIM", "hog": "HOG Spearman"}


def count_blocks(model: CNN) -> dict[str, list[str]]:
    """Which parameters form each block, for the run log."""
    return {b: [f"{n} {tuple(p.shape)}" for n, p in model.block_parameters(b).items()]
            for b in model.BLOCKS}

