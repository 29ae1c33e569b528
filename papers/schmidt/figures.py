"""Figures for Schmidt et al., each regenerated from a run's saved results."""

from __future__ import annotations

import math

import numpy as np

from common import plotting
from papers.schmidt import method as M


def _dim_colors(n):
    cmap = plotting.plt().get_cmap("viridis")
    return [cmap(i / max(1, n - 1) * 0.85) for i in range(n)]


def gaussian_curves(record, out):
    """Gaussian model: standard and l_inf-robust error of the averaging classifier against n."""
    th = record.result("theory")
    gauss, eps = th["gaussian"], th["config"]["eps"]
    fig, axes = plotting.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for (d, res), c in zip(gauss.items(), _dim_colors(len(gauss))):
        axes[0].plot(res["n"], res["standard"], color=c, label=f"d = {d}")
        axes[1].plot(res["n"], res["robust"], color=c, label=f"d = {d}")
    for ax, title in zip(axes, ("standard error", f"l_inf-robust error (eps = {eps})")):
        ax.set_xscale("log")
        ax.set_xlabel("training samples n")
        ax.set_title(title, fontsize=10)
        ax.axhline(0.5, color="#999", lw=0.8, ls=":")
    axes[0].set_ylabel("expected test error")
    axes[1].legend(fontsize=7)
    fig.suptitle("Gaussian model, averaging classifier (closed form given w, mean over training sets): "
                 "the standard error does not depend on d, the robust one does", fontsize=9)
    return plotting.save(fig, out / "gaussian_curves")


def n50_against_d(record, out):
    """n at which the robust error reaches 50%, against d, with a sqrt(d) reference line."""
    th = record.result("theory")
    fig, ax = plotting.subplots(figsize=(5.4, 4))
    dims = np.array([int(d) for d in th["gaussian"]])
    n50 = np.array([M.crossing(r["n"], r["robust"]) for r in th["gaussian"].values()])
    ax.loglog(dims, n50, "o-", color="#d62728", label="Gaussian, averaging classifier")
    bd = np.array([int(d) for d in th["bernoulli"]])
    lin = np.array([M.crossing(r["n"], r["robust_linear"]) for r in th["bernoulli"].values()])
    thr = np.array([M.crossing(r["n"], r["robust_thresholded"]) for r in th["bernoulli"].values()])
    ax.loglog(bd, lin, "s-", color="#1f77b4", label="Bernoulli, linear (majority vote)")
    ax.loglog(bd, thr, "^-", color="#2ca02c", label="Bernoulli, thresholded (below 50% already at n = 1)")
    ref = n50[0] * np.sqrt(dims / dims[0])
    ax.loglog(dims, ref, color="#999", ls="--", lw=0.8, label="~ sqrt(d)")
    eps = th["config"]["eps"]
    lb = np.array([M.gaussian_lower_bound_n(int(d), eps) for d in dims])
    ax.loglog(dims, lb, color="#999", ls=":", lw=0.8, label="eps^2 sqrt(d) / log d (shape only)")
    slope = M.loglog_slope(dims, n50)
    ax.set_xlabel("dimension d")
    ax.set_ylabel("n with 50% robust error")
    ax.set_title(f"Robust sample complexity grows with d (Gaussian slope {slope:.2f})", fontsize=9)
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "n50_against_d")


def bernoulli_curves(record, out):
    """Bernoulli model: linear rule's standard and robust error vs the thresholded rule's robust error."""
    bern = record.result("theory")["bernoulli"]
    fig, ax = plotting.subplots(figsize=(6.4, 4))
    for (d, res), c in zip(bern.items(), _dim_colors(len(bern))):
        ax.plot(res["n"], res["robust_linear"], color=c, label=f"d = {d}: robust, linear")
        ax.plot(res["n"], res["robust_thresholded"], color=c, ls="--",
                label=f"d = {d}: robust, thresholded (= standard)")
    ax.set_xscale("log")
    ax.set_xlabel("training samples n")
    ax.set_ylabel("expected test error (exact)")
    ax.set_title("Bernoulli model, tau = d^(-1/4), eps = tau / 2: thresholding closes the gap", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return plotting.save(fig, out / "bernoulli_curves")


def _series(results, sizes, arm, field):
    return [results.get(f"n{n}/{arm}", {}).get(field, math.nan) for n in sizes]


def mnist_curves(record, out):
    """Test accuracy against training-set size per eps: standard training (clean) vs
    adversarial training (clean and robust), as in the paper's MNIST figure."""
    res = record.result("mnist")
    cfg, results = res["config"], res["results"]
    sizes, eps_list = cfg["sizes"], cfg["eps"]
    fig, axes = plotting.subplots(1, len(eps_list), figsize=(4.2 * len(eps_list), 3.8), sharey=True,
                                  squeeze=False)
    for ax, e in zip(axes[0], eps_list):
        ax.plot(sizes, _series(results, sizes, "standard", "clean"), "o-", color="#1f77b4",
                label="standard training, clean")
        ax.plot(sizes, _series(results, sizes, "standard", f"robust_eps{e}"), "o:", color="#1f77b4",
                label="standard training, PGD")
        ax.plot(sizes, _series(results, sizes, f"at{e}", "clean"), "s-", color="#d62728",
                label="adversarial training, clean")
        ax.plot(sizes, _series(results, sizes, f"at{e}", f"robust_eps{e}"), "s--", color="#d62728",
                label="adversarial training, PGD")
        ax.set_xscale("log")
        ax.set_xlabel("training images n")
        ax.set_title(f"eps = {e}", fontsize=10)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel(f"test accuracy (%), {cfg['eval_images']} images, PGD-{cfg['eval_pgd_steps']}")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("MNIST, small CNN: robust accuracy needs more data than standard accuracy", fontsize=10)
    return plotting.save(fig, out / "mnist_curves")


def mnist_binarisation(record, out):
    """Robust accuracy of adversarial training with and without input binarisation."""
    res = record.result("mnist")
    cfg, results = res["config"], res["results"]
    sizes, eps_list = cfg["sizes"], cfg["eps"]
    fig, ax = plotting.subplots(figsize=(6, 4))
    colors = _dim_colors(len(eps_list))
    for e, c in zip(eps_list, colors):
        ax.plot(sizes, _series(results, sizes, f"at{e}", f"robust_eps{e}"), "o-", color=c,
                label=f"eps {e}: PGD training")
        ax.plot(sizes, _series(results, sizes, f"bin_at{e}", f"robust_eps{e}"), "o--", color=c,
                label=f"eps {e}: binarised input + PGD training")
    ax.set_xscale("log")
    ax.set_xlabel("training images n")
    ax.set_ylabel("robust test accuracy (%) (binarised: BPDA attack)")
    ax.set_title("Robust accuracy with and without thresholding the input", fontsize=10)
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "mnist_binarisation")
