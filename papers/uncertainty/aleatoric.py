"""uncertainty_aleatoric: homoscedastic vs heteroscedastic Gaussian regression.

The lecture ("Aleatoric uncertainty", "Regression with uncertainty") models
p(y|x) = N(y; mu(x), sigma^2(x)) and fits it by maximum likelihood, i.e. by
minimising  sum_i (y_i - mu(x_i))^2 / (2 sigma^2) + log sigma  with one sigma
for all inputs (homoscedastic) or sigma(x) from the network (heteroscedastic;
Nix and Weigend 1994, the "learned loss attenuation" of Kendall and Gal 2017).
Its three panels: (a) a homoscedastic model on small noise, (b) on large
noise, (c) a heteroscedastic model on data-dependent noise.

Here the data are drawn with a known mu*(x) and sigma*(x), so what the lecture
draws can be measured: the fitted sigma(x) against the true one, and each
model's test negative log-likelihood against the oracle's (the true
conditional density evaluated on the same test points).

Choices the lecture leaves open (documented, defaults below): mu*(x) =
sin(pi x) on x ~ U(-1, 1); sigma*(x) = 0.05 + 0.3 ((1 + x) / 2)^2 for the
data-dependent noise, 0.05 and 0.3 for the constant ones; a tanh MLP 1-50-50
whose second output is log sigma(x); full-batch Adam with the first fifth of
the steps fitting mu alone by squared error (the usual warm start against the
variance absorbing a poorly fit mean), the same for both models.
"""

from __future__ import annotations

import math

import gin
import numpy as np
import torch
from torch import nn

from common import plotting
from common.context import RunContext
from papers.uncertainty.nets import fit, mlp, scalar_metrics
from papers.uncertainty.paper import PAPER
from registry import register

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
NOISE = {"small": lambda x: torch.full_like(x, 0.05),          # panel (a)
         "large": lambda x: torch.full_like(x, 0.3),           # panel (b)
         "varying": lambda x: 0.05 + 0.3 * ((1 + x) / 2) ** 2}  # panel (c)


def true_mean(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(math.pi * x)


def gaussian_nll(y: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(y; mu, sigma^2) per point: the lecture's loss plus its constant."""
    return 0.5 * ((y - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma + HALF_LOG_2PI


def sample(noise: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, generator=gen) * 2 - 1
    y = true_mean(x) + NOISE[noise](x) * torch.randn(n, 1, generator=gen)
    return x, y


class Regressor(nn.Module):
    """mu(x) from an MLP; log sigma either one parameter (homoscedastic) or the
    MLP's second output (heteroscedastic)."""

    def __init__(self, heteroscedastic: bool, hidden: int = 50):
        super().__init__()
        self.heteroscedastic = heteroscedastic
        self.net = mlp(1, 2 if heteroscedastic else 1, hidden)
        self.log_sigma = None if heteroscedastic else nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = self.net(x)
        if self.heteroscedastic:
            return out[:, :1], out[:, 1:]
        return out, self.log_sigma.expand_as(out)


@gin.configurable(module="uncertainty")
def aleatoric_setup(n_train=500, n_test=20000, steps=3000, lr=0.01, warmup_fraction=0.2, hidden=50):
    return dict(n_train=n_train, n_test=n_test, steps=steps, lr=lr,
                warmup_fraction=warmup_fraction, hidden=hidden)


def train_model(ctx: RunContext, noise: str, heteroscedastic: bool, cfg: dict):
    gen = ctx.generator(f"data-{noise}")
    x, y = sample(noise, cfg["n_train"], gen)
    xt, yt = sample(noise, cfg["n_test"], gen)
    torch.manual_seed(ctx.seed_for(f"init-{noise}-{heteroscedastic}"))
    model = Regressor(heteroscedastic, cfg["hidden"])
    warm = int(cfg["warmup_fraction"] * cfg["steps"])
    fit(model.net.parameters(), lambda: ((model(x)[0] - y) ** 2).mean(), warm, cfg["lr"])
    curve = fit(model.parameters(), lambda: gaussian_nll(y, *model(x)).mean(),
                cfg["steps"] - warm, cfg["lr"], log_every=50)
    grid = torch.linspace(-1, 1, 201).unsqueeze(1)
    with torch.no_grad():
        test_nll = gaussian_nll(yt, *model(xt)).mean().item()
        oracle = gaussian_nll(yt, true_mean(xt), NOISE[noise](xt).log()).mean().item()
        mu, log_sigma = model(grid)
    sig, true_sig = log_sigma.exp().squeeze(1), NOISE[noise](grid).squeeze(1)
    out = {"test_nll": test_nll, "oracle_nll": oracle, "excess_nll": test_nll - oracle,
           "sigma_rel_err": (sig / true_sig - 1).abs().mean().item(),
           "mu_rmse": (mu - true_mean(grid)).pow(2).mean().sqrt().item(),
           "curve": curve, "grid": grid.squeeze(1).tolist(), "mu": mu.squeeze(1).tolist(),
           "sigma": sig.tolist(), "train_x": x.squeeze(1).tolist(), "train_y": y.squeeze(1).tolist()}
    if heteroscedastic and noise == "varying":
        out["sigma_corr"] = float(np.corrcoef(sig.numpy(), true_sig.numpy())[0, 1])
    if not heteroscedastic:
        # The homoscedastic MLE of sigma is the RMS residual: with a good mean it
        # estimates sqrt(E_x sigma*(x)^2), the known answer it is compared with.
        out["sigma"] = sig[0].item()
        out["rms_true_sigma"] = NOISE[noise](xt).pow(2).mean().sqrt().item()
        out["sigma_ratio"] = out["sigma"] / out["rms_true_sigma"]
    return out


ARMS = [("small", False), ("large", False), ("varying", False), ("varying", True), ("small", True)]


def label(noise: str, hetero: bool) -> str:
    return f"{noise}/{'hetero' if hetero else 'homo'}"


# ------------------------------------------------------------------ figures


def lecture_panels(record, out):
    """The lecture's three panels: (a) homoscedastic model, small noise; (b) large
    noise; (c) heteroscedastic model on data-dependent noise (plus the homoscedastic
    fit of the same data, for contrast)."""
    fits = record.result("fits")
    fig, axes = plotting.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    panels = [("(a) homoscedastic, small noise", "small/homo", None),
              ("(b) homoscedastic, large noise", "large/homo", None),
              ("(c) heteroscedastic, data-dependent noise", "varying/hetero", "varying/homo")]
    for ax, (title, key, contrast) in zip(axes, panels):
        f = fits[key]
        g, mu = np.array(f["grid"]), np.array(f["mu"])
        sig = np.broadcast_to(np.array(f["sigma"]), g.shape)
        ax.scatter(f["train_x"], f["train_y"], s=4, color="0.55", alpha=0.6, label="training data")
        ax.plot(g, np.sin(np.pi * g), "k--", lw=1, label="true mean")
        ax.plot(g, mu, color="C0", label="fitted mean")
        ax.fill_between(g, mu - 2 * sig, mu + 2 * sig, color="C0", alpha=0.25, label="±2σ fitted")
        if contrast:
            c = fits[contrast]
            ax.plot(g, np.array(c["mu"]) + 2 * c["sigma"], ":", color="C3", label="±2σ homoscedastic")
            ax.plot(g, np.array(c["mu"]) - 2 * c["sigma"], ":", color="C3")
        ax.set_title(f"{title}\ntest NLL {f['test_nll']:.3f} (oracle {f['oracle_nll']:.3f})", fontsize=9)
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[2].legend(fontsize=7, loc="lower left")
    return plotting.save(fig, out / "lecture_panels")


def sigma_recovery(record, out):
    """Fitted sigma(x) against the true sigma*(x) on the data-dependent noise."""
    fits = record.result("fits")
    h, m = fits["varying/hetero"], fits["varying/homo"]
    g = np.array(h["grid"])
    fig, ax = plotting.subplots(figsize=(5, 3.6))
    ax.plot(g, 0.05 + 0.3 * ((1 + g) / 2) ** 2, "k--", label="true σ*(x)")
    ax.plot(g, h["sigma"], color="C0", label=f"heteroscedastic (ρ = {h['sigma_corr']:.3f})")
    ax.axhline(m["sigma"], color="C3", ls=":", label=f"homoscedastic σ = {m['sigma']:.3f}")
    ax.set_xlabel("x"), ax.set_ylabel("σ")
    ax.legend(fontsize=8)
    ax.set_title("Aleatoric noise recovered from data")
    return plotting.save(fig, out / "sigma_recovery")


@register("uncertainty_aleatoric", paper=PAPER, data=("synthetic 1-D regression (known sigma(x))",),
          claims_file="claims_aleatoric.toml", figures=[lecture_panels, sigma_recovery])
def run(ctx: RunContext) -> dict:
    """Homoscedastic vs heteroscedastic Gaussian NLL regression on 1-D data with known noise."""
    cfg = aleatoric_setup()
    fits = {}
    bar = ctx.progress(total=len(ARMS), desc="fits")
    for noise, hetero in ARMS:
        key = label(noise, hetero)
        fits[key] = ctx.once(key, lambda noise=noise, hetero=hetero: train_model(ctx, noise, hetero, cfg))
        bar.update(1)
    bar.close()
    metrics = scalar_metrics(fits)
    metrics["varying/hetero_minus_homo_nll"] = fits["varying/hetero"]["test_nll"] - fits["varying/homo"]["test_nll"]
    metrics["small/hetero_minus_homo_nll"] = fits["small/hetero"]["test_nll"] - fits["small/homo"]["test_nll"]
    ctx.log("  ".join(f"{k} NLL {v['test_nll']:.3f}" for k, v in fits.items()))
    ctx.save_json("fits", fits)
    return metrics
