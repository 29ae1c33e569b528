"""Epistemic uncertainty (the lecture's second half): a Bayesian neural network's
posterior predictive ``p(y|x, d) = E_{q(w)}[p(y|x, w)]`` approximated three ways,
against a plain network.

- **Bayes by backprop** (Blundell et al., ICML 2015, §3.2-3.4): a diagonal Gaussian
  ``q(w) = N(mu, sigma^2)`` with ``sigma = softplus(rho)``, one reparameterised draw
  ``w = mu + sigma * eps`` per minibatch, and the ELBO of the lecture,
  ``E_q[log p(d|w)] - KL(q || p)``.  Our choice: a Gaussian prior ``N(0, s^2)``
  with the KL in closed form (the paper's best prior is a scale mixture, whose KL
  needs Monte Carlo), spread uniformly over the minibatches (the paper's
  ``pi_i = 1/M`` option), so the per-example loss is ``mean NLL + KL / N``.
- **MC dropout** (Gal & Ghahramani, ICML 2016; the lecture's "dropout does
  variational inference"): dropout after every hidden layer, kept on at test
  time; T stochastic passes give the predictive mean ``1/T sum_t f(x; w_t)`` and
  variance ``sigma^2 + 1/T sum_t f_t^2 - mean^2`` (the lecture's formula; sigma^2 is
  ``tau^{-1}``, here the known noise variance of the regression data).
- **Deep ensembles** (Lakshminarayanan et al., NeurIPS 2017) as the baseline:
  M networks from independent initialisations and data orders, predictions
  averaged; their optional adversarial training is left out.

The T passes, weight draws and members are batched, never looped: dropout masks
are drawn for a ``(T, B, H)`` activation at once, BBB draws ``(S, in, out)``
weights and the ensemble stores ``(M, in, out)`` weights, both applied with
``torch.baddbmm``.

Experiments: ``uncertainty_epistemic_1d`` (1-D regression with a gap in the data,
the lecture's dropout-uncertainty figure) and ``uncertainty_epistemic_mnist``
(calibration and Fashion-MNIST-vs-MNIST detection of MNIST MLPs).
"""

from __future__ import annotations

import math
import time

import gin
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import ood
from common.context import RunContext
from common.train import batches, to_device, train_epoch
from papers.uncertainty import epistemic_figures as figures
from papers.uncertainty.paper import PAPER
from registry import register

METHODS = ("plain", "mc_dropout", "ensemble", "bbb")
BAYESIAN = ("mc_dropout", "ensemble", "bbb")  # the methods with an epistemic spread


# ------------------------------------------------------------------ models


def _uniform(shape, fan_in: int) -> torch.Tensor:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class MLP(nn.Module):
    """ReLU MLP with dropout (probability ``p``) after every hidden layer.  ``mc=True``
    keeps dropout on in eval mode (MC dropout); ``p = 0`` is the plain network."""

    def __init__(self, sizes, p: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.p = p

    def forward(self, x: torch.Tensor, mc: bool = False) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.dropout(F.relu(x), self.p, training=self.training or mc)
        return x


def mc_dropout_samples(model: MLP, x: torch.Tensor, samples: int) -> torch.Tensor:
    """``samples`` stochastic passes at once: (T, B, out), independent masks per pass."""
    return model(x.expand(samples, *x.shape), mc=True)


class EnsembleMLP(nn.Module):
    """M ReLU MLPs with stacked weights (M, in, out); input (B, in) is shared by all
    members, (M, B, in) gives each member its own batch.  Output (M, B, out)."""

    def __init__(self, members: int, sizes):
        super().__init__()
        self.members = members
        self.weights = nn.ParameterList(nn.Parameter(_uniform((members, a, b), a))
                                        for a, b in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(_uniform((members, 1, b), a))
                                       for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.members, *x.shape)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


class BayesMLP(nn.Module):
    """Bayes-by-backprop ReLU MLP: every weight and bias has a Gaussian
    ``N(mu, softplus(rho)^2)``; the prior is ``N(0, prior_sigma^2)``."""

    def __init__(self, sizes, prior_sigma: float = 1.0, rho_init: float = -5.0):
        super().__init__()
        self.prior_sigma = prior_sigma
        self.mu_w = nn.ParameterList(nn.Parameter(_uniform((a, b), a)) for a, b in zip(sizes[:-1], sizes[1:]))
        self.mu_b = nn.ParameterList(nn.Parameter(_uniform((b,), a)) for a, b in zip(sizes[:-1], sizes[1:]))
        self.rho_w = nn.ParameterList(nn.Parameter(torch.full_like(m, rho_init)) for m in self.mu_w)
        self.rho_b = nn.ParameterList(nn.Parameter(torch.full_like(m, rho_init)) for m in self.mu_b)

    def posterior(self):
        """(mu, sigma) of every parameter tensor."""
        mus = [*self.mu_w, *self.mu_b]
        return [(m, F.softplus(r)) for m, r in zip(mus, [*self.rho_w, *self.rho_b])]

    def forward(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """``samples`` weight draws w = mu + sigma * eps, applied at once: (S, B, out)."""
        x = x.expand(samples, *x.shape)
        n = len(self.mu_w)
        for i in range(n):
            mw, sw = self.mu_w[i], F.softplus(self.rho_w[i])
            mb, sb = self.mu_b[i], F.softplus(self.rho_b[i])
            w = mw + sw * torch.randn(samples, *mw.shape, device=mw.device)
            b = mb + sb * torch.randn(samples, 1, *mb.shape, device=mb.device)
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = F.relu(x)
        return x

    def kl(self) -> torch.Tensor:
        """Closed-form KL(q || p) summed over every weight and bias:
        log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2."""
        s = self.prior_sigma
        return sum((math.log(s) - torch.log(sig) + (sig ** 2 + mu ** 2) / (2 * s ** 2) - 0.5).sum()
                   for mu, sig in self.posterior())


def gaussian_nll(y: torch.Tensor, mean: torch.Tensor, var) -> torch.Tensor:
    """Elementwise -log N(y | mean, var)."""
    var = torch.as_tensor(var, dtype=mean.dtype, device=mean.device)
    return 0.5 * torch.log(2 * math.pi * var) + (y - mean) ** 2 / (2 * var)


def build(method: str, sizes, cfg: dict) -> nn.Module:
    if method == "plain":
        return MLP(sizes, 0.0)
    if method == "mc_dropout":
        return MLP(sizes, cfg["p_drop"])
    if method == "ensemble":
        return EnsembleMLP(cfg["members"], sizes)
    if method == "bbb":
        return BayesMLP(sizes, cfg["prior_sigma"], cfg["rho_init"])
    raise ValueError(method)


def forward_train(method: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Training-time outputs with a leading sample axis: (S, B, out)."""
    if method in ("plain", "mc_dropout"):
        return model(x)[None]
    return model(x)  # ensemble: (M, B, out); bbb: one weight draw, (1, B, out)


@torch.no_grad()
def predictive_samples(method: str, model: nn.Module, x: torch.Tensor, samples: int,
                       batch_size: int = 1000) -> torch.Tensor:
    """Outputs (S, N, out) of the approximate posterior: T dropout passes, T weight
    draws, the M members, or the plain net's single output (S = 1)."""
    model.eval()
    out = []
    for (xb,) in batches(x, batch_size=batch_size):
        if method == "plain":
            out.append(model(xb)[None])
        elif method == "mc_dropout":
            out.append(mc_dropout_samples(model, xb, samples))
        elif method == "ensemble":
            out.append(model(xb))
        else:
            out.append(model(xb, samples))
    return torch.cat(out, 1).float()


def kl_per_example(method: str, model: nn.Module, n_train: int) -> torch.Tensor | float:
    """The complexity term of the per-example loss: KL / N for BBB (the KL spread
    uniformly over the M minibatches, each then divided by its batch size)."""
    return model.kl() / n_train if method == "bbb" else 0.0


# ------------------------------------------------------------------ 1-D regression with a gap


def true_function(x: torch.Tensor) -> torch.Tensor:
    """The known function of the 1-D toy: x + 0.3 sin(2 pi x) (Bishop's / PRML's curve)."""
    return x + 0.3 * torch.sin(2 * math.pi * x)


@gin.configurable(module="uncertainty")
def epistemic_1d(n_train=100, noise=0.1, gap=0.3, hidden=(100, 100), steps=3000, lr=3e-3,
                 p_drop=0.1, members=5, prior_sigma=1.0, rho_init=-5.0, samples=200,
                 grid=401, x_max=2.0):
    """1-D data on [-1, -gap] U [gap, 1], y = f(x) + N(0, noise^2); full-batch Adam for
    ``steps`` updates per method; ``samples`` MC passes / weight draws at test time.
    Regions judged: the data (gap <= |x| <= 1), the gap (|x| <= 0.2), far (|x| >= 1.5)."""
    return dict(n_train=n_train, noise=noise, gap=gap, hidden=tuple(hidden), steps=steps, lr=lr,
                p_drop=p_drop, members=members, prior_sigma=prior_sigma, rho_init=rho_init,
                samples=samples, grid=grid, x_max=x_max)


def gap_data(n: int, gap: float, noise: float, gen: torch.Generator):
    side = torch.rand(n, generator=gen) < 0.5
    mag = gap + (1 - gap) * torch.rand(n, generator=gen)
    x = torch.where(side, -mag, mag)
    y = true_function(x) + noise * torch.randn(n, generator=gen)
    return x[:, None], y[:, None]


def regions(xs: torch.Tensor, gap: float) -> dict:
    a = xs.abs()
    return {"data": (a >= gap) & (a <= 1.0), "gap": a <= 0.2, "far": a >= 1.5}


def fit_1d(ctx: RunContext, method: str, x, y, cfg: dict) -> nn.Module:
    model = build(method, (1, *cfg["hidden"], 1), cfg).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    x, y = to_device(x, y, device=ctx.device)
    model.train()
    for _ in range(cfg["steps"]):
        opt.zero_grad(set_to_none=True)
        pred = forward_train(method, model, x)  # (S, N, 1)
        loss = gaussian_nll(y, pred, cfg["noise"] ** 2).mean(1).sum(0).mean()
        loss = loss + kl_per_example(method, model, len(x))
        loss.backward()
        opt.step()
    return model


@register("uncertainty_epistemic_1d", paper=PAPER, data=("synthetic 1-D regression",),
          claims_file="claims_epistemic_1d.toml", figures=[figures.regression_bands])
def run_1d(ctx: RunContext) -> dict:
    """1-D regression with a gap: does the epistemic std grow in the gap and away from the data?"""
    cfg = epistemic_1d()
    x, y = gap_data(cfg["n_train"], cfg["gap"], cfg["noise"], ctx.generator("data"))
    xs = torch.linspace(-cfg["x_max"], cfg["x_max"], cfg["grid"])
    region = regions(xs, cfg["gap"])
    metrics, curves = {}, {}
    for method in BAYESIAN:
        def compute(method=method):
            t0 = time.time()
            model = fit_1d(ctx, method, x, y, cfg)
            f = predictive_samples(method, model, xs[:, None].to(ctx.device), cfg["samples"])[..., 0].cpu()
            mean = f.mean(0)
            epi = (f.pow(2).mean(0) - mean.pow(2)).clamp_min(0).sqrt()  # the lecture's 1/T sum f^2 - mean^2
            return {"mean": mean.tolist(), "epistemic_std": epi.tolist(), "seconds": time.time() - t0}
        res = ctx.once(f"1d-{method}", compute)
        mean, epi = torch.tensor(res["mean"]), torch.tensor(res["epistemic_std"])
        curves[method] = {"mean": res["mean"], "epistemic_std": res["epistemic_std"]}
        for name, mask in region.items():
            metrics[f"{method}/{name}_std"] = epi[mask].mean().item()
        metrics[f"{method}/gap_ratio"] = metrics[f"{method}/gap_std"] / metrics[f"{method}/data_std"]
        metrics[f"{method}/far_ratio"] = metrics[f"{method}/far_std"] / metrics[f"{method}/data_std"]
        metrics[f"{method}/data_rmse"] = (mean - true_function(xs))[region["data"]].pow(2).mean().sqrt().item()
        metrics[f"{method}/train_seconds"] = res["seconds"]
        ctx.log(f"{method}: epistemic std data {metrics[f'{method}/data_std']:.4f}, gap "
                f"{metrics[f'{method}/gap_std']:.4f} (x{metrics[f'{method}/gap_ratio']:.1f}), far "
                f"{metrics[f'{method}/far_std']:.4f} (x{metrics[f'{method}/far_ratio']:.1f}), "
                f"rmse on data {metrics[f'{method}/data_rmse']:.4f}")
    ctx.save_json("regression", {"x_train": x[:, 0].tolist(), "y_train": y[:, 0].tolist(),
                                 "grid": xs.tolist(), "truth": true_function(xs).tolist(),
                                 "noise": cfg["noise"], "gap": cfg["gap"], "curves": curves,
                                 "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}})
    return metrics


# ------------------------------------------------------------------ MNIST: calibration and OOD


@gin.configurable(module="uncertainty")
def epistemic_mnist(train_subset=0, hidden=(400, 400), epochs=20, batch_size=128, lr=1e-3,
                    p_drop=0.5, members=5, prior_sigma=0.1, rho_init=-5.0, samples=50, n_bins=15,
                    methods=METHODS):
    """MLPs on MNIST (``train_subset`` > 0: that many training images), Adam; dropout 0.5
    (Gal & Ghahramani's MNIST rate), 5 members, ``samples`` MC passes / weight draws.
    OOD set: the Fashion-MNIST test images."""
    return dict(train_subset=train_subset, hidden=tuple(hidden), epochs=epochs, batch_size=batch_size,
                lr=lr, p_drop=p_drop, members=members, prior_sigma=prior_sigma, rho_init=rho_init,
                samples=samples, n_bins=n_bins, methods=tuple(methods))


def flat(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(len(images), -1)


def train_mnist(ctx: RunContext, method: str, x, y, cfg: dict) -> nn.Module:
    """Resumable epochs of minibatch Adam; ensemble members each draw their own data order."""
    model = build(method, (x.shape[1], *cfg["hidden"], 10), cfg).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = ctx.generator(f"order {method}")
    state = {"history": []}
    n = len(x)

    def loss_fn(m, *batch):
        if method == "ensemble":  # batch: indices (B, M), one column per member
            idx = batch[0].T
            logits, target = m(x[idx]), y[idx]
        else:
            xb, target = batch
            logits = forward_train(method, m, xb)
            target = target.expand(len(logits), -1)
        ce = F.cross_entropy(logits.reshape(-1, 10), target.reshape(-1), reduction="none")
        return ce.view(len(logits), -1).mean(1).sum() + kl_per_example(method, m, n)

    for epoch in ctx.resumable(f"mnist-{method}", {"model": model, "opt": opt, "gen": gen}, state).epochs(cfg["epochs"]):
        if method == "ensemble":
            orders = torch.stack([torch.randperm(n, generator=gen) for _ in range(cfg["members"])], 1)
            it = batches(orders.to(x.device), batch_size=cfg["batch_size"])
        else:
            it = batches(x, y, batch_size=cfg["batch_size"], shuffle=True, generator=gen)
        stats = train_epoch(model, it, opt, loss_fn)
        state["history"].append(stats["train_loss"])
        ctx.log(f"[{method}] epoch {epoch + 1}: train loss {stats['train_loss']:.4f}")
    return model


def evaluate_mnist(method: str, model: nn.Module, x_in, y_in, x_out, cfg: dict) -> dict:
    """Predictive probabilities (averaged over the samples) on MNIST and Fashion-MNIST:
    accuracy, ECE, NLL, Brier; detection with MSP, entropy and mutual information."""
    p_in = predictive_samples(method, model, x_in, cfg["samples"]).softmax(-1).cpu()
    p_out = predictive_samples(method, model, x_out, cfg["samples"]).softmax(-1).cpu()
    mean_in, mean_out = p_in.mean(0), p_out.mean(0)
    metrics = ood.classification(mean_in, y_in, cfg["n_bins"])
    scores = {"msp": (ood.max_softmax(mean_in), ood.max_softmax(mean_out)),
              "entropy": (-ood.entropy(mean_in), -ood.entropy(mean_out))}
    if len(p_in) > 1:
        scores["mi"] = (-ood.mutual_information(p_in), -ood.mutual_information(p_out))
    for score, (s_in, s_out) in scores.items():
        for k, v in ood.detection(s_in, s_out).items():
            metrics[f"ood/{score}/{k}"] = v
    h_edges = torch.linspace(0, math.log(10), 31)
    hist = {"edges": h_edges.tolist(),
            "entropy_in": torch.histogram(ood.entropy(mean_in).float(), h_edges).hist.tolist(),
            "entropy_out": torch.histogram(ood.entropy(mean_out).float(), h_edges).hist.tolist()}
    return {"metrics": metrics, "reliability": ood.reliability(mean_in, y_in, cfg["n_bins"]),
            "histogram": hist}


@register("uncertainty_epistemic_mnist", paper=PAPER, data=("mnist", "fashion_mnist"),
          claims_file="claims_epistemic_mnist.toml",
          figures=[figures.reliability_diagrams, figures.entropy_histograms])
def run_mnist(ctx: RunContext) -> dict:
    """MNIST MLPs (plain, MC dropout, ensemble, BBB): calibration and Fashion-MNIST detection."""
    cfg = epistemic_mnist()
    tr, te = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    fm = ctx.dataset("fashion_mnist", train=False)
    x, y = flat(tr.images), tr.labels
    if cfg["train_subset"]:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:cfg["train_subset"]]
        x, y = x[keep], y[keep]
    x, y = to_device(x, y, device=ctx.device)
    x_in, y_in, x_out = flat(te.images).to(ctx.device), te.labels, flat(fm.images).to(ctx.device)
    metrics, saved = {}, {}
    for method in cfg["methods"]:
        def compute(method=method):
            t0 = time.time()
            model = train_mnist(ctx, method, x, y, cfg)
            seconds = time.time() - t0
            return {**evaluate_mnist(method, model, x_in, y_in, x_out, cfg), "seconds": seconds}
        res = ctx.once(f"mnist-{method}", compute)
        metrics.update({f"{method}/{k}": v for k, v in res["metrics"].items()})
        metrics[f"{method}/train_seconds"] = res["seconds"]
        saved[method] = {"reliability": res["reliability"], "histogram": res["histogram"]}
        m = res["metrics"]
        ctx.log(f"{method}: test acc {m['test_acc']:.2f}%, ECE {m['ece']:.4f}, NLL {m['nll']:.4f}, "
                f"OOD AUROC msp {m['ood/msp/auroc']:.3f} entropy {m['ood/entropy/auroc']:.3f}"
                + (f" MI {m['ood/mi/auroc']:.3f}" if "ood/mi/auroc" in m else ""))
    ctx.save_json("mnist", {"methods": list(cfg["methods"]), **saved,
                            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}})
    return metrics
