"""Schott, Rauber, Bethge & Brendel, "Towards the first adversarially robust neural
network model on MNIST", ICLR 2019 (arXiv:1805.09190): analysis by synthesis (ABS).

- One VAE per class (``ClassVAEs``): latent dimension 8, the paper's encoder
  (conv 32-32-64-16, kernels 5/4/3/5, strides 1/2/2/1, BatchNorm + ELU) and decoder
  (transposed conv 32-16-16-1, kernels 4/5/5/4, strides 1/2/2/1, sigmoid output),
  each trained on its own class with the Gaussian ELBO (squared error + beta KL).
  All ten are *one* module: every layer is a grouped convolution with one group
  per class, so decoding a latent for every class is a single call, and training
  on a class-balanced batch (B, 10, 28, 28) trains the ten VAEs at once, each on
  its own images (groups never mix, so each VAE gets exactly its own gradient).
- Inference (``ABS``) replaces the encoder by optimisation: per class,
  l_y(x) = min_z [||x - G_y(z)||^2 + beta ||z||^2 / 2] / 784 (the negative ELBO with
  the encoder variance fixed at 1, per pixel).  The minimum is searched from a fixed
  bank of latents drawn once from N(0, I) (8,000, keeping the most probable
  (1 - 0.1) of the draws), decoded once for every class and cached, so the
  best bank latent per (image, class) is one matrix product; then refined by Adam
  (50 steps of 0.05) on all (image, class) latents at once, projected onto the ball
  ||z|| <= 5.  Logits are -l_y; class probabilities use the paper's offset softmax
  p_y = (exp(alpha * logit_y) + eta) / (sum_j exp(alpha * logit_j) + K eta),
  alpha = 440, eta = 3.9e-5, so inputs far from every class get p ~ 1/K.
- Gradients: the logits are evaluated at the optimal latents (detached), so the
  input gradient is that of the minimum (the envelope theorem) -- what gradient
  attacks on ABS use.
- Binary ABS: the input binarised at 0.5, and the scores multiplied by the reference
  code's class factors.  For gradient attacks the binarisation's gradient is that
  of a scaled sigmoid (``binarize``); the forward pass is the hard threshold.
- ``l2_lower_bound``: a per-sample lower bound on the L2 size of any perturbation
  that changes the ABS decision, derived from the optimisation problem (below).
- ``latent_descent``: the paper's attack that exploits the model's structure.

Reference code (read, not copied): bethgelab/AnalysisBySynthesis abs_models/
(models.py, inference.py, sampling.py, attack_utils.py).  Differences: the
reference keeps the last Adam iterate, we keep each latent's best iterate (a
better estimate of the minimum at no cost); the reference's projection onto the
ball drops the sign of clipped coordinates (its known bug), ours rescales.
"""

from __future__ import annotations

import contextlib

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.attacks import AttackInputError

N_CLASSES, LATENT, PIXELS = 10, 8, 784
REFERENCE_ALPHA, REFERENCE_ETA = 440.0, 3.9e-5
REFERENCE_BINARY_SCALES = (1.0, 0.96, 1.001, 1.06, 0.98, 0.96, 1.03, 1.0, 1.0, 1.0)


# ------------------------------------------------------------------ the VAEs


def _conv(cin, cout, k, s, groups, transposed=False, last=False):
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin * groups, cout * groups, k, s,
                                                              groups=groups)
    return [conv] if last else [conv, nn.BatchNorm2d(cout * groups), nn.ELU()]


class ClassVAEs(nn.Module):
    """K class-conditional VAEs as one grouped network (module docstring).

    ``encode(x)``: x (N, K, 28, 28), channel k an image of class k -> mu, logvar (N, K, d).
    ``decode(z)``: z (N, K, d) -> images (N, K, 28, 28), channel k decoded by VAE k."""

    def __init__(self, n_classes: int = N_CLASSES, latent: int = LATENT):
        super().__init__()
        K, self.n_classes, self.latent = n_classes, n_classes, latent
        self.encoder = nn.Sequential(*_conv(1, 32, 5, 1, K), *_conv(32, 32, 4, 2, K),
                                     *_conv(32, 64, 3, 2, K), *_conv(64, 2 * latent, 5, 1, K, last=True))
        self.decoder = nn.Sequential(*_conv(latent, 32, 4, 1, K, True), *_conv(32, 16, 5, 2, K, True),
                                     *_conv(16, 16, 5, 2, K, True), *_conv(16, 1, 4, 1, K, True, True))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).view(len(x), self.n_classes, 2, self.latent)
        return h[:, :, 0], h[:, :, 1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n = len(z)
        return torch.sigmoid(self.decoder(z.reshape(n, self.n_classes * self.latent, 1, 1)))

    def plain_decoder(self, k: int) -> nn.Sequential:
        """Class k's decoder as ordinary (ungrouped) layers with the same weights (to
        export one VAE, and for checking the grouped layout against a plain loop)."""
        K, layers = self.n_classes, []
        for mod in self.decoder:
            if isinstance(mod, nn.ConvTranspose2d):
                cin, cout = mod.in_channels // K, mod.out_channels // K
                new = nn.ConvTranspose2d(cin, cout, mod.kernel_size, mod.stride)
                new.weight.data = mod.weight.data[k * cin:(k + 1) * cin].clone()
                new.bias.data = mod.bias.data[k * cout:(k + 1) * cout].clone()
            elif isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features // K
                new, sl = nn.BatchNorm2d(c), slice(k * c, (k + 1) * c)
                new.running_mean.data, new.running_var.data = mod.running_mean[sl].clone(), mod.running_var[sl].clone()
                new.weight.data, new.bias.data = mod.weight.data[sl].clone(), mod.bias.data[sl].clone()
            else:
                new = nn.ELU()
            layers.append(new)
        return nn.Sequential(*layers).eval()

    def elbo_loss(self, x: torch.Tensor, beta: float = 1.0, generator=None) -> torch.Tensor:
        """Negative ELBO per image (squared error summed over pixels + beta KL),
        averaged over the batch and summed over the K VAEs."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device)
        z = mu + (0.5 * logvar).exp() * eps
        rec = self.decode(z)
        sq = (rec - x).pow(2).flatten(2).sum(2)  # (N, K)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(2)
        return (sq + beta * kl).mean(0).sum()


class _ELU(torch.autograd.Function):
    """ELU as max(x, exp(min(x, 0)) - 1), exact since exp(t) - 1 >= t.  PyTorch's CPU
    ELU (and expm1) is not vectorised here: 9 ms against 1.9 on 1M values at one thread.
    The backward uses the output: d/dx = min(y + 1, 1)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.maximum(x, torch.exp(torch.clamp(x, max=0.0)).sub_(1.0))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (y + 1.0).clamp_(max=1.0)


class _TransposedConv(torch.autograd.Function):
    """A grouped transposed convolution with constant weights, run forward by the
    convolution's backward-data kernel and differentiated by its forward kernel (the
    pair of kernels is the same maths as ``conv_transpose2d``, and faster here)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, groups, size):
        ctx.weight, ctx.stride, ctx.groups = weight, stride, groups
        out = torch.nn.grad.conv2d_input((len(x), weight.shape[1] * groups, *size), weight, x,
                                         stride, groups=groups)
        return out.add_(bias[:, None, None])

    @staticmethod
    def backward(ctx, grad):
        return F.conv2d(grad, ctx.weight, None, ctx.stride, groups=ctx.groups), None, None, None, None, None


class InferenceDecoder:
    """The ten decoders of ``ClassVAEs`` frozen for inference: ``decoder(z)`` equals
    ``vaes.decode(z)`` in eval mode to float rounding, and is differentiable in z only.

    - BatchNorm (eval statistics) folded into the transposed convolution before it;
    - the first layer (1x1 -> 4x4) as one batched matmul over the classes;
    - the others by ``_TransposedConv``, and ELU by ``_ELU``.
    With ``ABS``'s Adam batching, inference at one thread runs 1.2-1.3x faster than with
    ``vaes.decode`` at 1 and 10 images and 2.5x at 100 (benchmarks/abs_inference.py).
    A snapshot: built from the weights when made, so ``ABS`` makes a new one whenever
    the VAEs' weights have changed (``_weights_key``)."""

    def __init__(self, vaes: "ClassVAEs"):
        K, mods = vaes.n_classes, list(vaes.decoder)
        self.n_classes, self.latent, self.layers = K, vaes.latent, []
        with torch.no_grad():
            for i, conv in enumerate(mods):
                if not isinstance(conv, nn.ConvTranspose2d):
                    continue
                w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
                cin, cout, k = conv.in_channels // K, conv.out_channels // K, conv.kernel_size[0]
                act = i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d)
                if act:
                    bn = mods[i + 1]
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    w = (w.view(K, cin, cout, k, k) * scale.view(K, 1, cout, 1, 1)).view_as(w)
                    b = (b - bn.running_mean) * scale + bn.bias
                self.layers.append((w.contiguous(), b.contiguous(), conv.stride[0], cin, cout, k, act))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        n, K = len(z), self.n_classes
        h = z.reshape(n, K * self.latent, 1, 1)
        for j, (w, b, stride, cin, cout, k, act) in enumerate(self.layers):
            if j == 0 and h.shape[-1] == 1:  # (K, n, cin) @ (K, cin, cout k k)
                out = torch.bmm(h.view(n, K, cin).transpose(0, 1), w.view(K, cin, cout * k * k))
                h = out.transpose(0, 1).reshape(n, K * cout, k, k) + b[:, None, None]
            else:
                size = ((h.shape[-2] - 1) * stride + k, (h.shape[-1] - 1) * stride + k)
                h = _TransposedConv.apply(h, w, b, stride, K, size)
            if act:
                h = _ELU.apply(h)
        return torch.sigmoid(h)


def _weights_key(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (an
    optimiser step, ``load_state_dict``, ``.to()``)."""
    return tuple((t.data_ptr(), t._version, str(t.device)) for t in module.state_dict().values())


def latent_bank(n: int, latent: int = LATENT, fraction_to_dismiss: float = 0.1,
                seed: int = 1234) -> torch.Tensor:
    """n latents from N(0, I): the n most probable (smallest norm) of n / (1 - f) draws
    from a generator seeded with ``seed`` (the reference seeds 1234), so the bank --
    and hence the classifier -- is deterministic."""
    draws = int(math.ceil(n / (1.0 - fraction_to_dismiss)))
    z = torch.randn(draws, latent, generator=torch.Generator().manual_seed(seed))
    return z[z.norm(dim=1).argsort()[:n]]


def project_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rescale every latent (last dim) with norm above ``radius`` onto the sphere."""
    norm = z.norm(dim=-1, keepdim=True)
    return z * (radius / norm.clamp_min(radius))


# ------------------------------------------------------------------ binarisation


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, slope):
        ctx.save_for_backward(x)
        ctx.threshold, ctx.slope = threshold, slope
        return (x >= threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * (x - ctx.threshold))
        return grad * ctx.slope * s * (1 - s), None, None


def binarize(x: torch.Tensor, threshold: float = 0.5, slope: float = 10.0) -> torch.Tensor:
    """Hard binarisation at ``threshold`` (x >= t -> 1, as the reference); its gradient
    is that of sigmoid(slope (x - t)), so gradient attacks get a usable signal."""
    return _Binarize.apply(x, threshold, slope)


# ------------------------------------------------------------------ inference


def offset_softmax(logits: torch.Tensor, alpha: float = REFERENCE_ALPHA,
                   eta: float = REFERENCE_ETA) -> torch.Tensor:
    """The paper's class probabilities: (exp(alpha l_y) + eta) / (sum_j exp(alpha l_j) + K eta).
    Computed stably (shifting by the max logit scales eta by the same factor)."""
    a = alpha * logits
    m = a.amax(1, keepdim=True).clamp_min(0.0) if eta > 0 else a.amax(1, keepdim=True)
    e = (a - m).exp()
    off = eta * torch.exp(-m)
    return (e + off) / (e.sum(1, keepdim=True) + logits.shape[1] * off)


class ABS(nn.Module):
    """The ABS classifier on trained ``ClassVAEs``; ``forward(x)`` returns logits -l_y(x)
    (module docstring).  ``n_samples``: the latent bank's size; ``steps``: Adam steps
    (0: the best bank latent only).  ``infer(x)`` also returns latents, reconstructions
    and the unnormalised scores.  Deterministic: same input, same output.  ``fast``
    (default): decode with the frozen ``InferenceDecoder``; False: with ``vaes.decode``
    (the reference path; the two agree to float rounding).  ``adam_batch``: images per
    Adam loop (None: all at once; the result is the same)."""

    def __init__(self, vaes: ClassVAEs, n_samples: int = 8000, steps: int = 50, lr: float = 0.05,
                 beta: float = 1.0, radius: float = 5.0, fraction_to_dismiss: float = 0.1,
                 binary: bool = False, class_scales=None, binary_slope: float = 10.0,
                 bank_seed: int = 1234, chunk: int = 500, fast: bool = True, adam_batch: int = 32):
        super().__init__()
        self.vaes = vaes.eval()
        self.n_samples, self.steps, self.lr, self.beta, self.radius = n_samples, steps, lr, beta, radius
        self.binary, self.binary_slope, self.chunk = binary, binary_slope, chunk
        self.fast, self.adam_batch = fast, adam_batch
        scales = torch.ones(vaes.n_classes) if class_scales is None else torch.tensor(class_scales)
        if scales.shape != (vaes.n_classes,):
            raise AttackInputError(f"class_scales needs {vaes.n_classes} values, got {tuple(scales.shape)}")
        self.register_buffer("class_scales", scales.float())
        z = latent_bank(n_samples, vaes.latent, fraction_to_dismiss, bank_seed)
        self.bank_key = (n_samples, fraction_to_dismiss, bank_seed)
        self.register_buffer("bank_z", z)
        self._bank = None  # (weights key, decoded bank, its constant), built lazily

    def train(self, mode: bool = True):  # the VAEs stay in eval mode (BatchNorm statistics)
        super().train(mode)
        self.vaes.eval()
        return self

    def decoder(self):
        """The decoder inference uses: the frozen ``InferenceDecoder`` of the VAEs'
        current weights (``fast``, the default), or ``vaes.decode`` itself."""
        if not self.fast:
            return self.vaes.decode
        key = _weights_key(self.vaes)
        cached = self.vaes.__dict__.get("_inference_decoder")
        if cached is None or cached[0] != key:
            cached = self.vaes.__dict__["_inference_decoder"] = (key, InferenceDecoder(self.vaes))
        return cached[1]

    @torch.no_grad()
    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoded bank G (K, S, 784) and its scores' x-independent part
        ||G||^2 + beta ||z||^2 / 2 (K, S); decoded once per weights and cached."""
        wkey = _weights_key(self.vaes)
        if self._bank is None or self._bank[0] != wkey:
            # shared by every ABS on the same VAEs and bank (ABS, binary ABS, cheap copies)
            cache = self.vaes.__dict__.setdefault("_decoded_banks", {})
            key = (self.bank_key, self.fast)
            if key not in cache or cache[key][0] != wkey:
                K, S, decode = self.vaes.n_classes, len(self.bank_z), self.decoder()
                parts = [decode(self.bank_z[i:i + 1000, None].expand(-1, K, -1)) for i in range(0, S, 1000)]
                cache[key] = (wkey, torch.cat(parts).flatten(2).transpose(0, 1).contiguous())  # (K, S, 784)
            G = cache[key][1]
            const = G.pow(2).sum(2) + self.beta * 0.5 * self.bank_z.pow(2).sum(1)[None]
            self._bank = (wkey, G, const)
        return self._bank[1], self._bank[2]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise AttackInputError(f"ABS expects MNIST images (N, 1, 28, 28), got {tuple(x.shape)}")
        return binarize(x, 0.5, self.binary_slope) if self.binary else x

    @torch.no_grad()
    def initial_latents(self, xf: torch.Tensor) -> torch.Tensor:
        """Per (image, class), the bank latent with the best score: (N, K, d)."""
        G, const = self.bank()
        K, S, _ = G.shape
        out = []
        for i in range(0, len(xf), self.chunk):
            xc = xf[i:i + self.chunk]
            # ||x - G||^2 + beta |z|^2 / 2 = |x|^2 - 2 x.G + (|G|^2 + beta |z|^2 / 2); |x|^2 is constant per image
            s = const[None] - 2 * torch.einsum("np,ksp->nks", xc, G)
            out.append(self.bank_z[s.argmin(2)])
        return torch.cat(out)

    def _scores(self, xf: torch.Tensor, z: torch.Tensor, decode=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised scores ||x - G_k(z_k)||^2 + beta ||z_k||^2 / 2 (N, K) and the
        reconstructions (N, K, 784)."""
        rec = (decode or self.decoder())(z).flatten(2)
        return (xf[:, None] - rec).pow(2).sum(2) + self.beta * 0.5 * z.pow(2).sum(2), rec

    def optimal_latents(self, xf: torch.Tensor) -> torch.Tensor:
        """Bank search, then ``steps`` Adam steps on all (image, class) latents at once,
        ``adam_batch`` images at a time (Adam is elementwise, so batching changes
        nothing but the speed: activations of 32 images stay in cache); returns each
        latent's best iterate (N, K, d), detached."""
        z0 = self.initial_latents(xf.detach())
        if self.steps == 0:
            return z0
        decode, b = self.decoder(), self.adam_batch or len(xf)
        return torch.cat([self._descend(xf[i:i + b].detach(), z0[i:i + b], decode)
                          for i in range(0, len(xf), b)])

    def _descend(self, x_det: torch.Tensor, z0: torch.Tensor, decode) -> torch.Tensor:
        with torch.enable_grad():
            z = z0.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.lr)
            best_z, best = z0.clone(), torch.full(z0.shape[:2], math.inf, device=z0.device)
            for _ in range(self.steps):
                loss, _ = self._scores(x_det, z, decode)
                with torch.no_grad():
                    better = loss < best
                    best = torch.where(better, loss, best)
                    best_z[better] = z[better]
                (z.grad,) = torch.autograd.grad(loss.sum(), z)  # the latents' gradient only
                opt.step()
                with torch.no_grad():
                    z.copy_(project_ball(z, self.radius))
            with torch.no_grad():
                loss, _ = self._scores(x_det, z, decode)
                better = loss < best
                best_z[better] = z[better]
        return best_z.detach()

    def infer(self, x: torch.Tensor) -> dict:
        """``logits`` (N, K; differentiable in x at the optimal latents), ``scores``
        (unnormalised l_y * 784, before class scales), ``z`` (N, K, d) and ``rec``
        (N, K, 1, 28, 28)."""
        xb = self._prepare(x)
        xf = xb.flatten(1)
        z = self.optimal_latents(xf)
        scores, rec = self._scores(xf, z)
        logits = -(scores / PIXELS) * self.class_scales
        return {"logits": logits, "scores": scores, "z": z, "rec": rec.view(len(x), -1, 1, 28, 28)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.infer(x)["logits"]

    def cheap(self, n_samples: int, steps: int) -> "ABS":
        """The same classifier with a smaller bank / fewer steps (for inside attacks)."""
        return ABS(self.vaes, n_samples=n_samples, steps=steps, lr=self.lr, beta=self.beta,
                   radius=self.radius, binary=self.binary,
                   class_scales=self.class_scales.tolist(), binary_slope=self.binary_slope,
                   chunk=self.chunk, fast=self.fast,
                   adam_batch=self.adam_batch).to(self.bank_z.device).eval()


# ------------------------------------------------------------------ lower bound


def l2_lower_bound(abs_model: ABS, x: torch.Tensor, y: torch.Tensor, search_steps: int = 40) -> torch.Tensor:
    """Per sample, a lower bound on ||delta||_2 for any delta that makes ABS (not binary)
    prefer another class over y.  0 for misclassified samples.

    Derivation (from the optimisation problem, as the paper does; its exact formula
    is not in our notes, so this is ours).  Write s_k(x, z) = ||x - G_k(z)||^2 +
    beta ||z||^2 / 2 and s*_k(x) = min_z s_k(x, z), and let z_k be the latents found
    by inference with d_k = ||x - G_k(z_k)||, s_k = s_k(x, z_k).  For ||delta|| = e:
      s*_y(x + delta) <= s_y(x + delta, z_y) <= s_y + 2 e d_y + e^2.
    For c != y, the minimiser z' of s_c(x + delta, .) satisfies s_c(x + delta, z') <=
    s_c(x + delta, z_c) <= (d_c + e)^2 + (s_c - d_c^2), hence ||x - G_c(z')|| <=
    R_c(e) := sqrt((d_c + e)^2 + s_c - d_c^2) + e, and
      s*_c(x + delta) >= s*_c(x) - 2 e R_c(e) + e^2.
    The decision cannot change while s_y + 2 e d_y < s*_c(x) - 2 e R_c(e) for every c;
    the left side grows and the right side shrinks with e, so the largest such e is
    found by bisection.  The bound holds exactly if s*_c(x) is the true minimum; we
    use inference's estimate s_c, which can only be above it -- so the bound is as
    good as the inference's minimum for the other classes (stated in the report)."""
    if abs_model.binary:
        raise AttackInputError("l2_lower_bound applies to the (non-binary) ABS model")
    with torch.no_grad():
        out = abs_model.infer(x)
        s = out["scores"].double()  # (N, K)
        rec = out["rec"].flatten(2).double()
        d = (x.flatten(1).double()[:, None] - rec).norm(dim=2)  # (N, K)
        n = len(x)
        s_y, d_y = s[torch.arange(n), y], d[torch.arange(n), y]
        other = torch.ones_like(s, dtype=torch.bool)
        other[torch.arange(n), y] = False
        correct = out["logits"].argmax(1) == y

        def safe(e):  # (N,) -> bool: no class c can overtake y at perturbation size e
            e2 = e[:, None]
            r_c = torch.sqrt((d + e2) ** 2 + (s - d ** 2).clamp_min(0)) + e2
            lhs = s_y[:, None] + 2 * e2 * d_y[:, None]
            rhs = s - 2 * e2 * r_c
            return ((lhs < rhs) | ~other).all(1)

        lo = torch.zeros(n, dtype=torch.float64, device=x.device)
        hi = torch.full((n,), float(math.sqrt(PIXELS)), dtype=torch.float64, device=x.device)
        for _ in range(search_steps):
            mid = (lo + hi) / 2
            ok = safe(mid)
            lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
        return torch.where(correct, lo, torch.zeros_like(lo)).float()


# ------------------------------------------------------------------ latent descent


@torch.no_grad()
def latent_descent(abs_model: ABS, x: torch.Tensor, y: torch.Tensor, coarse_steps: int = 51,
                   fine_steps: int = 10) -> torch.Tensor:
    """The paper's Latent Descent attack (reference: attack_utils.LineSearchAttack):
    walk from x towards the reconstruction of the best *other* class, re-querying
    the best other class at every coarse step (x_t = (1 - t) x + t G_c(x_{t-1})), until
    the decision flips; then binary-search t between the last two coarse points.
    For binary ABS the reconstruction is binarised first.  Returns adversarials
    (or x where none was found).  Batched over samples."""
    n = len(x)
    rows = torch.arange(n, device=x.device)
    adv = x.clone()
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    t_found = torch.ones(n, device=x.device)
    target = x.clone()  # the current "best other" reconstruction
    prev_t = torch.zeros(n, device=x.device)
    anchor = x.clone()
    for t in torch.linspace(0, 1, coarse_steps).tolist():
        cur = (1 - t) * x + t * target
        out = abs_model.infer(cur)
        pred = out["logits"].argmax(1)
        hit = (pred != y) & ~found
        adv[hit], t_found[hit] = cur[hit], t
        found |= hit
        anchor[~found] = target[~found]
        prev_t[~found] = t
        masked = out["logits"].clone()
        masked[rows, y] = -math.inf
        c = masked.argmax(1)
        rec = out["rec"][rows, c]
        if abs_model.binary:
            rec = (rec >= 0.5).to(x.dtype)
        target = torch.where(found[:, None, None, None], target, rec)
        if found.all():
            break
    # binary search between prev_t (not adversarial) and t_found, along the found line
    lo, hi = prev_t.clone(), t_found.clone()
    for _ in range(fine_steps):
        mid = (lo + hi) / 2
        cur = (1 - mid)[:, None, None, None] * x + mid[:, None, None, None] * anchor
        ok = (abs_model(cur).argmax(1) != y) & found
        adv[ok] = cur[ok]
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return adv.clamp_(0, 1)


# ------------------------------------------------------------------ baselines


class VanillaCNN(nn.Module):
    """The paper's CNN baseline (reference nets.NN): conv 20-70-256-10, kernels 5/4/3/5,
    strides 1/2/2/1, BatchNorm + ELU between, logits from the last 1x1 map.  The
    binary CNN is the same weights behind ``Binarized``."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 1
        for i, (c, k, s) in enumerate(zip((20, 70, 256, 10), (5, 4, 3, 5), (1, 2, 2, 1))):
            layers.append(nn.Conv2d(cin, c, k, s))
            if i < 3:
                layers += [nn.BatchNorm2d(c), nn.ELU()]
            cin = c
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten(1)


class Binarized(nn.Module):
    """A trained classifier with binarised inputs (shares the wrapped model's weights)."""

    def __init__(self, model: nn.Module, slope: float = 10.0):
        super().__init__()
        self.model, self.slope = model, slope

    def forward(self, x):
        return self.model(binarize(x, 0.5, self.slope))


class NearestNeighbour(nn.Module):
    """Logit of class k = -(L2 distance to the nearest training image of class k)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int = N_CLASSES,
                 chunk: int = 250):
        super().__init__()
        self.register_buffer("bank", images.flatten(1).float())
        self.register_buffer("sq", self.bank.pow(2).sum(1))
        self.register_buffer("labels", labels.long())
        self.n_classes, self.chunk = n_classes, chunk

    def forward(self, x):
        outs = []
        for i in range(0, len(x), self.chunk):
            xf = x[i:i + self.chunk].flatten(1)
            d2 = (xf.pow(2).sum(1, keepdim=True) - 2 * xf @ self.bank.T + self.sq[None]).clamp_min(1e-12)
            idx = self.labels[None].expand(len(xf), -1)
            m = torch.full((len(xf), self.n_classes), math.inf, device=x.device, dtype=d2.dtype)
            outs.append(-m.scatter_reduce(1, idx, d2, "amin").sqrt())
        return torch.cat(outs)


def train_vaes(vaes: ClassVAEs, images_by_class: list[torch.Tensor], opt, steps: int, batch_per_class: int,
               generator: torch.Generator, beta: float = 1.0, device="cpu", autocast=None) -> float:
    """``steps`` Adam steps on class-balanced batches (``batch_per_class`` images of
    every class per step, drawn uniformly with replacement by the CPU ``generator``,
    gathered where the images live); returns the mean negative ELBO per VAE and image
    (summed on the device, one host sync)."""
    vaes.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    amp = autocast or contextlib.nullcontext
    for _ in range(steps):
        x = torch.stack([imgs[torch.randint(len(imgs), (batch_per_class,), generator=generator)
                              .to(imgs.device, non_blocking=True)][:, 0]
                         for imgs in images_by_class], 1).to(device)
        opt.zero_grad(set_to_none=True)
        with amp():
            loss = vaes.elbo_loss(x, beta, generator)
        loss.backward()
        opt.step()
        total += loss.detach().double() / vaes.n_classes
    vaes.eval()
    return total.item() / max(steps, 1)
