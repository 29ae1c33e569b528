"""uncertainty_infinite_width: wide random one-hidden-layer networks are Gaussian processes.

The lecture ("Bayesian Infinite Networks", after Neal 1995, ch. 2): a network
f(x) = b + sum_j v_j h_j(x), h_j(x) = act(a_j + u_j x) with Gaussian priors
v_j ~ N(0, omega_v^2 / q), b ~ N(0, sigma_b^2), u ~ N(0, sigma_u^2),
a ~ N(0, sigma_a^2) has, for any width q, the prior covariance
E[f(x) f(x')] = sigma_b^2 + omega_v^2 C(x, x') with C = E[h(x) h(x')]; as
q -> infinity the central limit theorem makes the joint prior Gaussian: a GP.

Measured here, against known answers:
- C(x, x') in closed form for erf (Williams 1997) and ReLU (the degree-1
  arc-cosine kernel, Cho and Saul 2009), and by 2-D Gauss-Hermite quadrature
  for tanh (no closed form; labelled as quadrature);
- the covariance across many networks equals the kernel at every width
  (width 1 included): the covariance is exact, only Gaussianity needs width;
- one network's empirical kernel sigma_b^2 + (omega_v^2 / q) sum_j
  h_j(x) h_j(x') (the covariance of f given the first layer) converges to
  the kernel as 1/sqrt(q);
- the excess kurtosis of f(x) across networks is exactly
  3 omega_v^4 Var(h^2) / (q (sigma_b^2 + omega_v^2 E h^2)^2): f given the first
  layer is Gaussian with variance sigma_b^2 + (omega_v^2 / q) sum h_j^2, a scale
  mixture whose excess kurtosis shrinks as 1/q.

The lecture's figure (Neal's Fig. 2.2: functions from the prior of a network
with 10,000 tanh units, sigma_u = 5 and 20, sigma_a / sigma_u = 1,
sigma_b = omega_v = 1, the same random numbers) is regenerated too.
"""

from __future__ import annotations

import math

import gin
import numpy as np
import torch

from common import plotting
from common.context import RunContext
from papers.uncertainty.nets import scalar_metrics
from papers.uncertainty.paper import PAPER
from registry import register

ACTS = {"erf": torch.erf, "relu": torch.relu, "tanh": torch.tanh}


def pre_activation_cov(x: torch.Tensor, sigma_u: float, sigma_a: float) -> torch.Tensor:
    """Cov(a + u x, a + u x') for all pairs of the 1-D inputs ``x``."""
    return sigma_a ** 2 + sigma_u ** 2 * x[:, None] * x[None, :]


def analytic_kernel(act: str, x: torch.Tensor, sigma_u: float, sigma_a: float, n_quad: int = 160) -> torch.Tensor:
    """C(x, x') = E[h(x) h(x')] (float64)."""
    s = pre_activation_cov(x.double(), sigma_u, sigma_a)
    d = s.diagonal()
    if act == "erf":
        return 2 / math.pi * torch.asin(2 * s / torch.sqrt((1 + 2 * d[:, None]) * (1 + 2 * d[None, :])))
    if act == "relu":
        norm = torch.sqrt(d[:, None] * d[None, :])
        theta = torch.acos((s / norm).clamp(-1, 1))
        return norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta))
    # tanh: E over (a, u) ~ N(0, diag(sigma_a^2, sigma_u^2)) by a 2-D Gauss-Hermite product rule.
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_quad)  # weight exp(-z^2 / 2)
    z = torch.tensor(nodes, dtype=torch.float64)
    w = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
    pre = sigma_a * z[:, None, None] + sigma_u * z[None, :, None] * x.double()[None, None, :]  # (Qa, Qu, P)
    h = torch.tanh(pre)
    ww = (w[:, None] * w[None, :])[..., None]
    return torch.einsum("abp,abq->pq", h * ww, h)


def moments(act: str, var: float, n_quad: int = 200) -> tuple[float, float]:
    """E[h^2] and E[h^4] for h = act(z), z ~ N(0, var) (ReLU in closed form)."""
    if act == "relu":
        return var / 2, 1.5 * var ** 2
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_quad)
    h = ACTS[act](torch.tensor(nodes * math.sqrt(var)))
    w = torch.tensor(weights / math.sqrt(2 * math.pi))
    return float((w * h ** 2).sum()), float((w * h ** 4).sum())


def hidden_features(act: str, x: torch.Tensor, n_nets: int, width: int, sigma_u: float, sigma_a: float,
                    gen: torch.Generator) -> torch.Tensor:
    """h_j(x) for ``n_nets`` independent first layers: (n_nets, width, P)."""
    u = sigma_u * torch.randn(n_nets, width, 1, generator=gen)
    a = sigma_a * torch.randn(n_nets, width, 1, generator=gen)
    return ACTS[act](a + u * x[None, None, :])


def prior_functions(act: str, x: torch.Tensor, n_nets: int, width: int, cfg: dict, gen: torch.Generator,
                    chunk_elems: int = 2 ** 24) -> torch.Tensor:
    """f(x) for ``n_nets`` networks drawn from the prior: (n_nets, P), in chunks."""
    per = max(1, chunk_elems // (width * len(x)))
    out = []
    for start in range(0, n_nets, per):
        m = min(per, n_nets - start)
        h = hidden_features(act, x, m, width, cfg["sigma_u"], cfg["sigma_a"], gen)
        v = cfg["omega_v"] / math.sqrt(width) * torch.randn(m, 1, width, generator=gen)
        b = cfg["sigma_b"] * torch.randn(m, 1, generator=gen)
        out.append(b + (v @ h).squeeze(1))
    return torch.cat(out)


def fit_slope(q, y) -> float:
    return float(np.polyfit(np.log(np.asarray(q, float)), np.log(np.asarray(y, float)), 1)[0])


@gin.configurable(module="uncertainty")
def infinite_setup(acts=("erf", "relu", "tanh"), n_inputs=25, x_max=3.0, sigma_u=1.0, sigma_a=1.0,
                   sigma_b=1.0, omega_v=1.0, widths=(16, 64, 256, 1024, 4096, 16384), nets_per_width=20,
                   cov_widths=(1, 1024), cov_nets=20000, kurtosis_widths=(1, 2, 4, 8, 16),
                   kurtosis_nets=1000000, kurtosis_x=1.0, kurtosis_sigma_b=0.0, kurtosis_batches=20):
    """``kurtosis_sigma_b``: the output bias in the kurtosis study.  A Gaussian bias only
    dilutes the non-Gaussianity being measured (with Neal's sigma_b = 1 the erf/tanh excess
    kurtosis at width 16 is about two standard errors of its estimate from 10^6
    networks), so it is off there by default; the kernel studies keep sigma_b."""
    return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in locals().items()}


def study(ctx: RunContext, act: str, cfg: dict) -> dict:
    gen = ctx.generator(f"prior-{act}")
    x = torch.linspace(-cfg["x_max"], cfg["x_max"], cfg["n_inputs"])
    kernel = cfg["sigma_b"] ** 2 + cfg["omega_v"] ** 2 * analytic_kernel(act, x, cfg["sigma_u"], cfg["sigma_a"])
    knorm = kernel.norm().item()
    out = {"kernel": kernel.tolist()}

    # 1. one network's empirical kernel (the covariance of f given its first layer) vs width
    errs = []
    for q in cfg["widths"]:
        e = []
        for start in range(0, cfg["nets_per_width"], 4):
            h = hidden_features(act, x, min(4, cfg["nets_per_width"] - start), q, cfg["sigma_u"], cfg["sigma_a"], gen).double()
            k_hat = cfg["sigma_b"] ** 2 + cfg["omega_v"] ** 2 / q * torch.einsum("njp,njq->npq", h, h)
            e.append((k_hat - kernel).flatten(1).norm(dim=1) / knorm)
        errs.append(torch.cat(e).mean().item())
    out["kernel_err"] = errs
    out["kernel_err_slope"] = fit_slope(cfg["widths"], errs)

    # 2. the covariance across networks equals the kernel at any width
    for q in cfg["cov_widths"]:
        f = prior_functions(act, x, cfg["cov_nets"], q, cfg, gen).double()
        emp = f.T @ f / len(f)  # the prior mean is zero: the second moment is the covariance
        out[f"cov_err_w{q}"] = ((emp - kernel).norm() / knorm).item()
        if q == max(cfg["cov_widths"]):
            out["empirical_cov"] = emp.tolist()

    # 3. excess kurtosis of f(x0) across networks vs its exact 1/q law
    x0 = torch.tensor([cfg["kurtosis_x"]])
    m2, m4 = moments(act, cfg["sigma_a"] ** 2 + cfg["sigma_u"] ** 2 * cfg["kurtosis_x"] ** 2)
    kcfg, sb = dict(cfg, sigma_b=cfg["kurtosis_sigma_b"]), cfg["kurtosis_sigma_b"]
    measured, exact, z = [], [], []
    for q in cfg["kurtosis_widths"]:
        f = prior_functions(act, x0, cfg["kurtosis_nets"], q, kcfg, gen).double().squeeze(1)
        measured.append((f.pow(4).mean() / f.pow(2).mean() ** 2 - 3).item())
        exact.append(3 * cfg["omega_v"] ** 4 * (m4 - m2 ** 2) / (q * (sb ** 2 + cfg["omega_v"] ** 2 * m2) ** 2))
        # standard error of the estimate from the spread of its value on disjoint batches
        parts = f.reshape(cfg["kurtosis_batches"], -1)
        per = parts.pow(4).mean(1) / parts.pow(2).mean(1) ** 2 - 3
        z.append(abs(measured[-1] - exact[-1]) / (per.std().item() / math.sqrt(cfg["kurtosis_batches"])))
    out.update(kurtosis=measured, kurtosis_exact=exact, kurtosis_z=z, kurtosis_max_z=max(z),
               kurtosis_slope=fit_slope(cfg["kurtosis_widths"], np.clip(measured, 1e-12, None)))
    return out


# ------------------------------------------------------------------ figures


def neal_figure(record, out):
    """Neal (1995) Fig. 2.2, as in the lecture: two functions from the prior of a network with
    10,000 tanh units, sigma_u = 5 (left) and 20 (right), sigma_a / sigma_u = 1, sigma_b = omega_v = 1,
    drawn with the same random numbers."""
    r = record.result("neal_functions")
    fig, axes = plotting.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (su, fs) in zip(axes, r["functions"].items()):
        for f in fs:
            ax.plot(r["x"], f)
        ax.set_title(f"σ_u = {su}", fontsize=10), ax.set_xlabel("x")
    axes[0].set_ylabel("f(x)")
    return plotting.save(fig, out / "neal_functions")


def convergence(record, out):
    """Left: one network's kernel error vs width, against 1/sqrt(q). Right: the excess kurtosis
    of f(x0) across networks vs width, against its exact 1/q law."""
    res, cfg = record.result("studies"), record.result("setup")
    fig, axes = plotting.subplots(1, 2, figsize=(10, 3.8))
    for i, (act, r) in enumerate(res.items()):
        axes[0].loglog(cfg["widths"], r["kernel_err"], "o-", color=f"C{i}", label=f"{act} (slope {r['kernel_err_slope']:.2f})")
        axes[1].loglog(cfg["kurtosis_widths"], r["kurtosis"], "o", color=f"C{i}", label=f"{act} measured")
        axes[1].loglog(cfg["kurtosis_widths"], r["kurtosis_exact"], "-", color=f"C{i}", alpha=0.6)
    q = np.array(cfg["widths"], float)
    first = next(iter(res.values()))["kernel_err"][0]
    axes[0].loglog(q, first * np.sqrt(q[0] / q), "k:", label="∝ 1/√q")
    axes[0].set(xlabel="width q", ylabel="‖K̂_q − K‖_F / ‖K‖_F", title="one network's kernel vs the GP's")
    axes[1].set(xlabel="width q", ylabel="excess kurtosis of f(x₀)", title="non-Gaussianity (lines: exact 3c/q)")
    axes[0].legend(fontsize=7), axes[1].legend(fontsize=7)
    return plotting.save(fig, out / "convergence")


def kernels(record, out):
    """The analytic kernel beside the covariance of f across networks of the largest
    covariance width, for each activation."""
    res = record.result("studies")
    fig, axes = plotting.subplots(2, len(res), figsize=(3.4 * len(res), 6.4), squeeze=False)
    for j, (act, r) in enumerate(res.items()):
        k, e = np.array(r["kernel"]), np.array(r["empirical_cov"])
        lo, hi = min(k.min(), e.min()), max(k.max(), e.max())
        axes[0, j].imshow(k, vmin=lo, vmax=hi, cmap="viridis")
        axes[1, j].imshow(e, vmin=lo, vmax=hi, cmap="viridis")
        axes[0, j].set_title(f"{act}: {'quadrature' if act == 'tanh' else 'analytic'} kernel", fontsize=9)
        axes[1, j].set_title(f"covariance across networks\n(rel. error {min(v for kk, v in r.items() if kk.startswith('cov_err')):.3f}"
                             " at the widest)", fontsize=9)
        for ax in axes[:, j]:
            ax.set_xticks([]), ax.set_yticks([])
    return plotting.save(fig, out / "kernels")


@register("uncertainty_infinite_width", paper=PAPER, data=("none (random networks)",),
          claims_file="claims_infinite.toml", figures=[convergence, kernels, neal_figure])
def run(ctx: RunContext) -> dict:
    """Wide random one-hidden-layer networks against their GP limit (erf, ReLU, tanh)."""
    cfg = infinite_setup()
    ctx.save_json("setup", cfg)
    studies = {}
    for act in cfg["acts"]:
        studies[act] = ctx.once(act, lambda act=act: study(ctx, act, cfg))
        ctx.log(f"{act}: kernel error slope {studies[act]['kernel_err_slope']:.3f}, "
                f"kurtosis slope {studies[act]['kurtosis_slope']:.3f}")
    ctx.save_json("studies", studies)
    # Neal's figure: the same random numbers for both sigma_u (sigma_a = sigma_u).
    xs = torch.linspace(-1, 1, 201)
    fns = {}
    for su in (5, 20):
        g = torch.Generator().manual_seed(ctx.seed_for("neal"))
        fns[su] = prior_functions("tanh", xs, 2, 10000, dict(cfg, sigma_u=su, sigma_a=su), g).tolist()
    ctx.save_json("neal_functions", {"x": xs.tolist(), "functions": fns})
    return scalar_metrics(studies)
