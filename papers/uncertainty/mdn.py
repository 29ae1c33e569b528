"""uncertainty_mdn: mixture density networks on the lecture's inverted sine.

The lecture ("Multimodality", "Mixture density network", after Bishop 1994)
draws training data "randomly as y_i = x_i + 0.3 sin(4 pi x_i) + eps_i", fits
them with a 2-layer network producing point estimates, flips x and y, and
shows that the point-estimate network then "produces some sort of average of
the correct values", while a mixture density network,
p(t|s) = sum_k pi_k(s) N(t; mu_k(s), sigma_k^2(s)), models the data correctly.

The flipped problem's true conditional density is known here, p(x|y) ∝
N(y; g(x), s^2) on x in (0, 1) with g(x) = x + 0.3 sin(4 pi x), so each
statement is measured against it: the point net against the conditional mean
E[x|y] (what least squares converges to), the MDN and a single-Gaussian
regressor by test NLL and total-variation distance to p(x|y), and where each
model's prediction falls in the true density.

Choices the slide leaves open: x ~ U(0, 1) (as in Bishop); eps ~ N(0, 0.05^2)
(the slide writes only "N"); 1,000 training points; K = 5 components (the
4 pi curve has up to three branches; Bishop's 2 pi one used 3); tanh MLPs
1-50-50 for every model, full-batch Adam. The slide's 4 pi, not Bishop's
2 pi, is the default (``mdn_setup.frequency``).
"""

from __future__ import annotations

import math

import gin
import numpy as np
import torch
from torch import nn

from common import plotting
from common.context import RunContext
from papers.uncertainty.aleatoric import gaussian_nll
from papers.uncertainty.nets import fit, mlp
from papers.uncertainty.paper import PAPER
from registry import register


@gin.configurable(module="uncertainty")
def mdn_setup(frequency=4.0, noise=0.05, n_train=1000, n_test=5000, components=5, hidden=50,
              steps=5000, lr=0.005, grid=801):
    return dict(frequency=frequency, noise=noise, n_train=n_train, n_test=n_test,
                components=components, hidden=hidden, steps=steps, lr=lr, grid=grid)


def forward_curve(x: torch.Tensor, frequency: float) -> torch.Tensor:
    return x + 0.3 * torch.sin(frequency * math.pi * x)


def sample(n: int, cfg: dict, gen: torch.Generator):
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    y = forward_curve(x, cfg["frequency"]) + cfg["noise"] * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return x.float(), y.float()


class MDN(nn.Module):
    """An MLP whose 3K outputs are mixing logits, means and log standard deviations."""

    def __init__(self, components: int, hidden: int = 50):
        super().__init__()
        self.k = components
        self.net = mlp(1, 3 * components, hidden)

    def forward(self, s):
        logits, mu, log_sigma = self.net(s).split(self.k, dim=1)
        return torch.log_softmax(logits, 1), mu, log_sigma


def mixture_log_density(t: torch.Tensor, log_pi, mu, log_sigma) -> torch.Tensor:
    """log sum_k pi_k N(t; mu_k, sigma_k^2), by log-sum-exp; t is (N, 1) or (N, G)
    against (N, K) parameters (the result is (N,) or (N, G))."""
    comp = -gaussian_nll(t.unsqueeze(-1), mu.unsqueeze(1), log_sigma.unsqueeze(1)) + log_pi.unsqueeze(1)
    return torch.logsumexp(comp, -1).squeeze(1) if t.shape[1] == 1 else torch.logsumexp(comp, -1)


def true_conditional(y: torch.Tensor, xs: torch.Tensor, cfg: dict) -> torch.Tensor:
    """p(x | y) on the uniform grid ``xs`` (rows: y), normalised by its Riemann sum."""
    z = (y.double() - forward_curve(xs.double(), cfg["frequency"]).unsqueeze(0)) / cfg["noise"]
    w = torch.exp(-0.5 * z ** 2)
    dx = (xs[1] - xs[0]).item()
    return w / (w.sum(1, keepdim=True) * dx)


def on_branch_fraction(pred: torch.Tensor, dens: torch.Tensor, xs: torch.Tensor) -> float:
    """Share of inputs whose prediction falls where the true conditional density
    is at least half its maximum (on one of the inverse's branches)."""
    idx = ((pred.clamp(0, 1) - xs[0]) / (xs[1] - xs[0])).round().long().squeeze(1)
    at = dens.gather(1, idx.unsqueeze(1)).squeeze(1)
    return (at >= 0.5 * dens.max(1).values).double().mean().item()


def train_all(ctx: RunContext, cfg: dict) -> dict:
    gen = ctx.generator("data")
    x, y = sample(cfg["n_train"], cfg, gen)
    xt, yt = sample(cfg["n_test"], cfg, gen)
    xs = torch.linspace(0, 1, cfg["grid"])
    dx = (xs[1] - xs[0]).item()
    dens_true = true_conditional(yt, xs, cfg)
    # Exact log p(x|y) at the test pairs: log N(y; g(x), s^2) - log Z(y), with
    # Z(y) = int_0^1 N(y; g(x'), s^2) dx' by the Riemann sum on the fine grid.
    log_lik = -gaussian_nll(yt.double(), forward_curve(xt.double(), cfg["frequency"]),
                            torch.tensor(math.log(cfg["noise"]), dtype=torch.float64)).squeeze(1)
    z = (yt.double() - forward_curve(xs.double(), cfg["frequency"]).unsqueeze(0)) / cfg["noise"]
    log_z = torch.logsumexp(-0.5 * z ** 2, 1) + math.log(dx) - math.log(cfg["noise"] * math.sqrt(2 * math.pi))
    oracle_nll = -(log_lik - log_z).mean().item()
    cond_mean = (dens_true * xs).sum(1) * dx
    out = {"oracle_nll": oracle_nll}

    torch.manual_seed(ctx.seed_for("point-forward"))
    fwd = mlp(1, 1, cfg["hidden"])
    fit(fwd.parameters(), lambda: ((fwd(x) - y) ** 2).mean(), cfg["steps"], cfg["lr"])
    torch.manual_seed(ctx.seed_for("point-inverse"))
    inv = mlp(1, 1, cfg["hidden"])
    fit(inv.parameters(), lambda: ((inv(y) - x) ** 2).mean(), cfg["steps"], cfg["lr"])
    torch.manual_seed(ctx.seed_for("gauss-inverse"))
    gauss = mlp(1, 2, cfg["hidden"])
    fit(gauss.parameters(), lambda: gaussian_nll(x, *gauss(y).split(1, 1)).mean(), cfg["steps"], cfg["lr"])
    torch.manual_seed(ctx.seed_for("mdn-inverse"))
    mdn = MDN(cfg["components"], cfg["hidden"])
    fit(mdn.parameters(), lambda: -mixture_log_density(x, *mdn(y)).mean(), cfg["steps"], cfg["lr"])

    with torch.no_grad():
        out["forward/point_rmse"] = (fwd(xt) - yt).pow(2).mean().sqrt().item()
        out["forward/point_rmse_over_noise"] = out["forward/point_rmse"] / cfg["noise"]
        p_inv = inv(yt)
        out["inverse/point_rmse"] = (p_inv - xt).pow(2).mean().sqrt().item()
        out["inverse/point_vs_conditional_mean_rmse"] = (p_inv.squeeze(1).double() - cond_mean).pow(2).mean().sqrt().item()
        out["inverse/point_on_branch"] = on_branch_fraction(p_inv, dens_true, xs)
        mu_g, ls_g = gauss(yt).split(1, 1)
        out["inverse/gauss_nll"] = gaussian_nll(xt, mu_g, ls_g).mean().item()
        dens_g = torch.exp(-gaussian_nll(xs.unsqueeze(0), mu_g, ls_g)).double()
        params = mdn(yt)
        out["inverse/mdn_nll"] = -mixture_log_density(xt, *params).mean().item()
        dens_m = torch.exp(mixture_log_density(xs.expand(len(yt), -1), *params)).double()
        mode = xs[dens_m.argmax(1)].unsqueeze(1)
        out["inverse/mdn_mode_on_branch"] = on_branch_fraction(mode, dens_true, xs)
        out["inverse/gauss_on_branch"] = on_branch_fraction(mu_g, dens_true, xs)
        for name, d in (("mdn", dens_m), ("gauss", dens_g)):
            out[f"inverse/{name}_tv"] = (0.5 * (d - dens_true).abs().sum(1) * dx).mean().item()
            out[f"inverse/{name}_mass"] = (d.sum(1) * dx).mean().item()
        out["inverse/mdn_excess_nll"] = out["inverse/mdn_nll"] - oracle_nll
        out["inverse/gauss_minus_mdn_nll"] = out["inverse/gauss_nll"] - out["inverse/mdn_nll"]

        # What the figures draw, on a plotting grid.
        s_grid = torch.linspace(float(y.min()), float(y.max()), 121).unsqueeze(1)
        log_pi, mu, log_sigma = mdn(s_grid)
        img = torch.exp(mixture_log_density(xs[::4].expand(len(s_grid), -1), log_pi, mu, log_sigma))
        out["plot"] = {
            "train_x": x.squeeze(1).tolist(), "train_y": y.squeeze(1).tolist(),
            "x_grid": xs[::4].tolist(), "s_grid": s_grid.squeeze(1).tolist(),
            "forward": fwd(xs[::4].unsqueeze(1)).squeeze(1).tolist(),
            "inverse": inv(s_grid).squeeze(1).tolist(),
            "gauss_mu": gauss(s_grid)[:, 0].tolist(), "gauss_sigma": gauss(s_grid)[:, 1].exp().tolist(),
            "pi": log_pi.exp().T.tolist(), "mu": mu.T.tolist(),
            "density": img.T.tolist(),
            "true_density": true_conditional(s_grid, xs[::4], cfg).T.tolist()}
    return out


# ------------------------------------------------------------------ figures


def lecture_illustration(record, out):
    """The slides' three demos: the forward fit, the flipped fit that averages the
    branches, and the MDN's conditional density on the flipped data."""
    r = record.result("mdn")
    p = r["plot"]
    fig, axes = plotting.subplots(1, 3, figsize=(13.5, 4))
    axes[0].scatter(p["train_x"], p["train_y"], s=3, color="0.6")
    axes[0].plot(p["x_grid"], p["forward"], color="C3", lw=2, label="2-layer net, least squares")
    axes[0].set(xlabel="x", ylabel="y", title=f"forward: fits (test RMSE {r['forward/point_rmse']:.3f})")
    axes[1].scatter(p["train_y"], p["train_x"], s=3, color="0.6")
    axes[1].plot(p["s_grid"], p["inverse"], color="C3", lw=2, label="least squares (≈ E[x|y])")
    g_mu, g_s = np.array(p["gauss_mu"]), np.array(p["gauss_sigma"])
    axes[1].plot(p["s_grid"], g_mu, color="C0", lw=1.5, label="single Gaussian, mean")
    axes[1].fill_between(p["s_grid"], g_mu - 2 * g_s, g_mu + 2 * g_s, color="C0", alpha=0.15)
    axes[1].set(xlabel="y (input)", ylabel="x (target)",
                title=f"flipped: least squares averages\n({100 * r['inverse/point_on_branch']:.0f}% of predictions on a branch)")
    axes[1].legend(fontsize=7)
    dens = np.array(p["density"])
    axes[2].imshow(np.sqrt(dens), origin="lower", aspect="auto", cmap="magma",
                   extent=[p["s_grid"][0], p["s_grid"][-1], p["x_grid"][0], p["x_grid"][-1]])
    axes[2].scatter(p["train_y"], p["train_x"], s=1, color="w", alpha=0.3)
    axes[2].grid(False)
    axes[2].set(xlabel="y (input)", ylabel="x (target)",
                title=f"MDN p(x|y) (sqrt scale)\nNLL {r['inverse/mdn_nll']:.2f} vs Gaussian "
                      f"{r['inverse/gauss_nll']:.2f} (oracle {r['oracle_nll']:.2f})")
    return plotting.save(fig, out / "lecture_illustration")


def mixture_components(record, out):
    """The MDN's mixing coefficients pi_k(y) and means mu_k(y) (Bishop's Fig. 5.21)."""
    p = record.result("mdn")["plot"]
    fig, axes = plotting.subplots(1, 2, figsize=(10, 3.6))
    for k, (pi, mu) in enumerate(zip(p["pi"], p["mu"])):
        axes[0].plot(p["s_grid"], pi, color=f"C{k}", label=f"π_{k + 1}")
        axes[1].scatter(p["s_grid"], mu, s=4 + 40 * np.array(pi), color=f"C{k}")
    axes[1].scatter(p["train_y"], p["train_x"], s=2, color="0.75", zorder=0)
    axes[0].set(xlabel="y (input)", ylabel="mixing coefficient", title="π_k(y)")
    axes[1].set(xlabel="y (input)", ylabel="x", title="μ_k(y), marker size ∝ π_k")
    axes[0].legend(fontsize=7)
    return plotting.save(fig, out / "mixture_components")


@register("uncertainty_mdn", paper=PAPER, data=("synthetic inverted sine (the lecture's recipe)",),
          claims_file="claims_mdn.toml", figures=[lecture_illustration, mixture_components])
def run(ctx: RunContext) -> dict:
    """Point regression vs a single Gaussian vs a mixture density network on the inverted sine."""
    cfg = mdn_setup()
    r = ctx.once("mdn", lambda: train_all(ctx, cfg))
    ctx.save_json("mdn", r)
    ctx.log(f"forward RMSE {r['forward/point_rmse']:.4f}; inverse NLL: MDN {r['inverse/mdn_nll']:.3f}, "
            f"Gaussian {r['inverse/gauss_nll']:.3f}, oracle {r['oracle_nll']:.3f}")
    return {k: v for k, v in r.items() if isinstance(v, float)}
