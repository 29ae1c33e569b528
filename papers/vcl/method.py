"""Variance Constancy Loss (VCL): Littwin & Wolf, "Regularizing by the Variance
of the Activations' Sample-Variances", NeurIPS 2018 (arXiv 1811.08764).

The idea (§3): a unit whose sample variance changes a lot from one mini-batch
to the next has a heavy-tailed (high-kurtosis) distribution.  VCL penalises
that change directly.  For two disjoint sub-samples s1, s2 of n activations of
the same unit,

    L_VCL = (1 - var(s1) / (var(s2) + beta))^2,

averaged over the units of a layer and summed over layers, is added to the
task loss with weight gamma.  beta is a learned per-unit parameter that keeps
the ratio finite when a unit's variance is near zero.  The term is applied to
the *pre-activations*, i.e. the inputs of every activation function.  It
pushes each unit toward low kurtosis, i.e. few-mode (ideally two-mode)
distributions; for a mixture of two Gaussians a linear unit either merges the
components or separates them along the LDA direction, depending on the priors
(§3, the two-Gaussian analysis).

Details as in the reference code (avirambh/vcl_pytorch, read for its choices,
not copied):

- n = 5, and the two sub-samples are the first 2n examples of each batch;
- beta has one entry per activation position (C x H x W for conv layers,
  not pooled over space as batch norm would), initialised at 1;
- gamma = 0.01;
- the term is computed by a hook placed before each activation module.

Our choices where the reference is silent or does not port:

- beta is kept positive as softplus(raw) + 1e-6, with raw initialised so that
  beta starts at exactly 1.  The reference leaves it unconstrained and aborts
  when the loss becomes NaN.
- The sample variances are unbiased (divide by n - 1).  With beta = 0 the
  ratio does not depend on this choice.
- The hook is a forward-pre-hook that only records the term and returns
  None.  In modern PyTorch a returned value would replace the module's input.
  The hook never changes the forward pass, and it records nothing in eval
  mode.
- The betas live in a separate ``VCL`` module, not inside the model, so the
  model's state_dict is unchanged.  ``VCL.parameters()`` go to the optimiser
  alongside the model's.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

BETA_FLOOR = 1e-6


def vcl_penalty(x: torch.Tensor, beta: torch.Tensor | float, n: int = 5) -> torch.Tensor:
    """The VCL term of one layer: mean over units of (1 - var(s1)/(var(s2) + beta))^2.

    ``x``: (batch, *unit_shape) pre-activations; s1 = x[:n], s2 = x[n:2n]
    (the first 2n examples, as the reference).  ``beta`` broadcasts against
    ``unit_shape``.  Needs batch >= 2n."""
    if x.shape[0] < 2 * n:
        raise ValueError(f"VCL needs a batch of at least 2n = {2 * n}, got {x.shape[0]}")
    v1 = x[:n].var(0, unbiased=True)
    v2 = x[n:2 * n].var(0, unbiased=True)
    return (1 - v1 / (v2 + beta)).pow(2).mean()


def vcl_penalty_pairs(x: torch.Tensor, beta: torch.Tensor | float, n: int = 5) -> torch.Tensor:
    """The same term averaged over many independent sub-sample pairs.

    ``x``: (pairs, 2n, *unit_shape).  The theory experiment uses this to
    estimate the expectation the loss is meant to minimise."""
    v1 = x[:, :n].var(1, unbiased=True)
    v2 = x[:, n:2 * n].var(1, unbiased=True)
    return (1 - v1 / (v2 + beta)).pow(2).mean()


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Beta(nn.Module):
    """A positive learned parameter of a given shape: softplus(raw) + floor."""

    def __init__(self, shape, init: float = 1.0):
        super().__init__()
        self.raw = nn.Parameter(torch.full(tuple(shape), _inverse_softplus(init - BETA_FLOOR)))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw) + BETA_FLOOR


class VCL(nn.Module):
    """VCL for any model: a forward-pre-hook on every activation module.

        vcl = VCL(model, example_batch)        # finds the activations and their shapes
        opt = SGD([*model.parameters(), *vcl.parameters()], ...)
        loss = F.cross_entropy(model(x), y) + vcl.gamma * vcl.collect()

    ``example`` (any batch of inputs) is run once through the model in eval
    mode to find each hooked module's input shape, so the betas exist before
    the optimiser is built.  In training mode each forward pass records one
    term per hooked module.  ``collect()`` returns their sum and clears them.
    In eval mode nothing is recorded, and the forward pass is never changed.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, n: int = 5, gamma: float = 0.01,
                 beta_init: float = 1.0, activations=(nn.ELU,)):
        super().__init__()
        self.n, self.gamma = n, gamma
        self.names = [name for name, m in model.named_modules() if isinstance(m, tuple(activations))]
        if not self.names:
            raise ValueError(f"VCL: the model has no activation module of type {activations}")
        modules = dict(model.named_modules())
        shapes: dict[str, tuple] = {}

        def probe(name):
            def hook(module, inputs):
                shapes.setdefault(name, tuple(inputs[0].shape[1:]))
                return None
            return hook

        probes = [modules[name].register_forward_pre_hook(probe(name)) for name in self.names]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example[:2])
        model.train(was_training)
        for p in probes:
            p.remove()
        self.betas = nn.ModuleList([Beta(shapes[name], beta_init) for name in self.names])
        self._terms: list[torch.Tensor] = []
        self._handles = [modules[name].register_forward_pre_hook(self._hook(i))
                         for i, name in enumerate(self.names)]

    def _hook(self, i: int):
        def hook(module, inputs):
            if module.training:
                x = inputs[0]
                if x.shape[0] >= 2 * self.n:
                    self._terms.append(vcl_penalty(x, self.betas[i](), self.n))
            return None  # never replace the module's input
        return hook

    def collect(self) -> torch.Tensor:
        """The sum over hooked layers of the terms recorded since the last call (0 if none)."""
        terms, self._terms = self._terms, []
        if not terms:
            return torch.zeros((), device=self.betas[0].raw.device)
        return torch.stack(terms).sum()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def beta_stats(self) -> dict:
        with torch.no_grad():
            b = torch.cat([beta().flatten() for beta in self.betas])
            return {"beta_min": b.min(), "beta_mean": b.mean(), "beta_max": b.max()}


# ------------------------------------------------------------------ statistics


def kurtosis(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Pearson kurtosis m4 / m2^2 along ``dim`` (3 for a Gaussian, 1 at least,
    1 exactly for a symmetric two-point distribution)."""
    x = x.double()
    c = x - x.mean(dim, keepdim=True)
    m2 = c.pow(2).mean(dim)
    m4 = c.pow(4).mean(dim)
    return m4 / m2.pow(2)


def unit_kurtosis(pre: torch.Tensor, min_var: float = 1e-8) -> torch.Tensor:
    """Per-unit kurtosis of pre-activations ``pre`` (samples, *unit_shape)
    over the samples, for the units whose variance exceeds ``min_var``
    (constant units have none)."""
    flat = pre.reshape(len(pre), -1).double()
    keep = flat.var(0) > min_var
    return kurtosis(flat[:, keep], 0)


def bimodality_coefficient(x: torch.Tensor) -> float:
    """Sarle's bimodality coefficient (skew^2 + 1) / kurtosis of a 1-D sample:
    5/9 ~ 0.555 for a uniform distribution; above it suggests two modes; 1/3 for a Gaussian."""
    x = x.double().flatten()
    c = x - x.mean()
    m2, m3 = c.pow(2).mean(), c.pow(3).mean()
    skew2 = (m3 ** 2 / m2 ** 3).item()
    return (skew2 + 1) / kurtosis(x).item()


# ------------------------------------------------------------------ networks


def he_init(model: nn.Module) -> nn.Module:
    """He-normal weights (fan in) and zero biases for every conv and linear layer, as
    for the ELU paper's nets; PyTorch's default init shrinks the signal through 11
    plain layers until the un-normalised net does not train."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model

# The reference's ELU-11 (from the ELU paper, Clevert et al. 2016), stage by
# stage: (channels, kernel) per conv; a 2x2 max-pool after every stage but the last.
ELU11_STAGES = (((192, 5),), ((384, 1), (480, 3)), ((480, 1), (520, 2)), ((520, 1), (560, 2)),
                ((560, 1), (600, 2)), ((600, 1),))
ELU11_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # per stage, rising with depth (reference)


class ELUNet(nn.Module):
    """ELU-11 with every width divided by ``divisor``: conv (-> batch norm) -> ELU per
    layer, 'same' padding, max-pools (ceil mode) between stages, a 1x1 conv to the
    classes and global average pooling.  ``norm``: "none", "bn" or "vcl" (VCL is
    attached from outside; for the net it is the same as "none")."""

    def __init__(self, in_channels: int = 3, classes: int = 10, divisor: int = 1, norm: str = "none",
                 dropout=ELU11_DROPOUT):
        super().__init__()
        layers, c = [], in_channels
        for s, stage in enumerate(ELU11_STAGES):
            for width, k in stage:
                w = max(1, width // divisor)
                layers += [nn.Conv2d(c, w, k, padding="same")]
                if norm == "bn":
                    layers += [nn.BatchNorm2d(w)]
                layers += [nn.ELU()]
                c = w
            if dropout[s] > 0:
                layers += [nn.Dropout(dropout[s])]
            if s < len(ELU11_STAGES) - 1:
                layers += [nn.MaxPool2d(2, ceil_mode=True)]
        layers += [nn.Conv2d(c, classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = he_init(nn.Sequential(*layers))

    def forward(self, x):
        return self.net(x)


class ELUMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, linear (-> batch norm) -> ELU, then a linear head."""

    def __init__(self, in_features: int = 784, classes: int = 10, width: int = 256, depth: int = 6,
                 norm: str = "none"):
        super().__init__()
        layers, d = [nn.Flatten()], in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width)]
            if norm == "bn":
                layers += [nn.BatchNorm1d(width)]
            layers += [nn.ELU()]
            d = width
        layers += [nn.Linear(d, classes)]
        self.net = he_init(nn.Sequential(*layers))

    def forward(self, x):
        return self.net(x)


@torch.no_grad()
def pre_activations(model: nn.Module, x: torch.Tensor, activations=(nn.ELU,)) -> list[torch.Tensor]:
    """The inputs of every activation module (in order) for ``x``, in eval mode, on the CPU."""
    seen: list[torch.Tensor] = []

    def record(module, inputs):
        seen.append(inputs[0].detach().cpu())
        return None

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, tuple(activations))]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


# ------------------------------------------------------------------ theory (§3)


def _snapshot_steps(steps: int, count: int = 5) -> list[int]:
    """Steps at which the theory runs record their state: 0, then evenly spaced up to ``steps``."""
    return sorted({round(i * steps / (count - 1)) for i in range(count)})


def train_elu_unit(steps: int, pairs: int, lr: float, n: int, gen: torch.Generator,
                   eval_samples: int = 20000, bins: int = 60) -> dict:
    """One affine + ELU unit h = ELU(a x + b), x ~ N(0, 1), trained with the VCL term
    alone on h.  h is, up to an affine map, the next layer's pre-activation, and the
    beta-free ratio does not change under that map.  a = 1, b = 0 and beta = 1 at
    the start; Adam.  Each step draws ``pairs`` fresh sub-sample pairs of n, to
    estimate the expected term.  Returns the kurtosis, the bimodality coefficient
    and a histogram of h on a fixed evaluation sample, at 5 snapshot steps."""
    a = nn.Parameter(torch.ones(()))
    b = nn.Parameter(torch.zeros(()))
    beta = Beta((), 1.0)
    opt = torch.optim.Adam([a, b, *beta.parameters()], lr=lr)
    x_eval = torch.randn(eval_samples, generator=gen)
    snaps, history = _snapshot_steps(steps), []
    for step in range(steps + 1):
        if step in snaps:
            with torch.no_grad():
                h = F.elu(a * x_eval + b)
                lo, hi = h.min().item(), h.max().item()
                counts = torch.histc(h, bins=bins, min=lo, max=hi)
                history.append({"step": step, "a": a.item(), "b": b.item(), "beta": beta().item(),
                                "kurtosis": kurtosis(h).item(),
                                "bimodality": bimodality_coefficient(h),
                                "saturated_fraction": (a * x_eval + b < -2).float().mean().item(),
                                "hist_counts": counts.tolist(), "hist_range": [lo, hi]})
        if step == steps:
            break
        x = torch.randn(pairs, 2 * n, generator=gen)
        loss = vcl_penalty_pairs(F.elu(a * x + b), beta(), n)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"snapshots": history}


def mixture(prior: float, delta: float, corr: float):
    """The two-Gaussian mixture in 2-D: prior on the first component, means -/+ delta/2
    on the first axis, a shared covariance [[1, corr], [corr, 1]].  Returns
    (mu1, mu2, cov, lda), with lda = cov^-1 (mu1 - mu2) normalised."""
    mu1 = torch.tensor([delta / 2, 0.0], dtype=torch.float64)
    mu2 = -mu1
    cov = torch.tensor([[1.0, corr], [corr, 1.0]], dtype=torch.float64)
    lda = torch.linalg.solve(cov, mu1 - mu2)
    return mu1, mu2, cov, lda / lda.norm()


def sample_mixture(m: int, prior: float, delta: float, corr: float, gen: torch.Generator):
    mu1, mu2, cov, _ = mixture(prior, delta, corr)
    chol = torch.linalg.cholesky(cov).float()
    first = torch.rand(m, generator=gen) < prior
    z = torch.randn(m, 2, generator=gen) @ chol.T
    return z + torch.where(first[:, None], mu1.float(), mu2.float()), first


def projection_stats(w: torch.Tensor, prior: float, delta: float, corr: float) -> dict:
    """How a linear unit w.x sees the mixture: |cos| of w with the LDA direction,
    and the separation of the two projected components, |w.(mu1 - mu2)| / sqrt(w' cov w),
    as a fraction of its maximum (reached along LDA): 1 = separated as well as
    possible, 0 = merged."""
    mu1, mu2, cov, lda = mixture(prior, delta, corr)
    w = w.detach().double()
    d = mu1 - mu2
    sep = (w @ d).abs() / torch.sqrt(w @ cov @ w)
    sep_max = torch.sqrt(d @ torch.linalg.solve(cov, d))
    return {"cos_lda": (w @ lda).abs().item() / w.norm().item(),
            "cos_mean_diff": (w @ d).abs().item() / (w.norm() * d.norm()).item(),
            "separation_fraction": (sep / sep_max).item()}


def train_mixture_unit(prior: float, steps: int, pairs: int, lr: float, n: int, gen: torch.Generator,
                       delta: float = 3.0, corr: float = 0.6, eval_samples: int = 20000,
                       bins: int = 60) -> dict:
    """A linear unit w.x on the two-Gaussian mixture, trained with the VCL term alone.
    w starts at a random unit vector (drawn from ``gen``), beta at 1; Adam.
    Returns projection_stats, the kurtosis and bimodality of w.x, and its histogram
    (per component) at 5 snapshot steps, plus w's path for the angle figure."""
    w0 = torch.randn(2, generator=gen)
    w = nn.Parameter(w0 / w0.norm())
    beta = Beta((), 1.0)
    opt = torch.optim.Adam([w, *beta.parameters()], lr=lr)
    x_eval, first = sample_mixture(eval_samples, prior, delta, corr, gen)
    snaps, history, path = _snapshot_steps(steps), [], []
    for step in range(steps + 1):
        if step % max(1, steps // 100) == 0 or step == steps:
            path.append({"step": step, **projection_stats(w, prior, delta, corr)})
        if step in snaps:
            with torch.no_grad():
                p = x_eval @ w
                lo, hi = p.min().item(), p.max().item()
                history.append({"step": step, "w": w.tolist(), "beta": beta().item(),
                                **projection_stats(w, prior, delta, corr),
                                "kurtosis": kurtosis(p).item(),
                                "bimodality": bimodality_coefficient(p),
                                "hist_first": torch.histc(p[first], bins=bins, min=lo, max=hi).tolist(),
                                "hist_second": torch.histc(p[~first], bins=bins, min=lo, max=hi).tolist(),
                                "hist_range": [lo, hi]})
        if step == steps:
            break
        x, _ = sample_mixture(pairs * 2 * n, prior, delta, corr, gen)
        loss = vcl_penalty_pairs((x @ w).reshape(pairs, 2 * n), beta(), n)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"snapshots": history, "path": path,
            "lda": mixture(prior, delta, corr)[3].tolist()}
