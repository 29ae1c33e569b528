"""Figures for sbn_table1 and sbn_simulation, each regenerated from a run's saved results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import plotting

NAMES = {"srf": "SRF", "ccd": "CCD", "sbn_sa": "SBN-SA", "sbn_em": "SBN-EM",
         "sbn_em_alpha": "SBN-EM-α"}
COLORS = {"srf": "gray", "ccd": "#1f77b4", "sbn_sa": "#ff7f0e", "sbn_em": "#2ca02c",
          "sbn_em_alpha": "#d62728"}
EPS = np.finfo(float).eps


def _reported() -> dict:
    """The paper's Table 1 values, read from claims.toml (never typed twice)."""
    from common.claims import load_claims

    out = {}
    for c in load_claims(Path(__file__).parent / "claims.toml"):
        if c.metric and isinstance(c.reported, (int, float)):
            out[c.metric] = c.reported
    return out


def table1_vs_paper(record, out):
    """Table 1: our mean KL over the 10 short runs (bars, ± std) beside the paper's (black ticks),
    and the same numbers as a table."""
    res, m = record.result("table1"), record.metrics
    paper = _reported()
    datasets, methods = res["config"]["datasets"], res["methods"]
    fig, (ax, axt) = plotting.subplots(2, 1, figsize=(10, 4.2 + 0.32 * len(datasets) * 1.0),
                                       gridspec_kw={"height_ratios": [3, 2]})
    width = 0.16
    x = np.arange(len(datasets))
    for k, meth in enumerate(methods):
        xs = x + (k - 2) * width
        ys = [m.get(f"{d}/{meth}/kl") for d in datasets]
        err = [m.get(f"{d}/{meth}/kl_std") for d in datasets]
        ax.bar(xs, ys, width, yerr=err, color=COLORS[meth], label=NAMES[meth], alpha=0.85,
               capsize=2)
        rep = [paper.get(f"{d}/{meth}/kl", np.nan) for d in datasets]
        ax.scatter(xs, rep, marker="_", s=180, color="black", zorder=3,
                   label="paper (Table 1)" if k == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{d} ({int(m.get(f'{d}/n_taxa', 0))} taxa)" for d in datasets])
    ax.set_ylabel("KL(ground truth ‖ estimate)")
    ax.set_title(f"Table 1: mean over {res['config']['short_reps']} short MCMC runs "
                 f"(profile {record.profile}); error bars: std over runs", pad=28)
    ax.legend(ncol=6, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    axt.axis("off")
    cells, rows = [], []
    for d in datasets:
        rows.append(d)
        cells.append([f"{m.get(f'{d}/{meth}/kl', float('nan')):.4f} / "
                      + (f"{paper[f'{d}/{meth}/kl']:.4f}" if f"{d}/{meth}/kl" in paper else "?")
                      for meth in methods])
    table = axt.table(cellText=cells, rowLabels=rows,
                      colLabels=[f"{NAMES[meth]}: ours / paper" for meth in methods],
                      loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.4)
    return plotting.save(fig, out / "table1_vs_paper")


def ds1_scatter(record, out):
    """Estimated vs ground-truth probability of every ground-truth topology (log-log), for
    CCD and SBN-EM fitted to one short run; estimates of 0 are drawn at machine epsilon."""
    s = record.result("scatter")
    truth = np.asarray(s["truth"])
    fig, axes = plotting.subplots(1, 2, figsize=(9.5, 4.4), sharey=True)
    lo = max(min(truth.min(), 1e-8) / 3, EPS)
    for ax, meth in zip(axes, ("ccd", "sbn_em")):
        est = np.exp(np.asarray(s[meth], dtype=float))
        zero = est < EPS
        ax.scatter(truth[~zero], est[~zero], s=6, alpha=0.5, color=COLORS[meth])
        if zero.any():
            ax.scatter(truth[zero], np.full(zero.sum(), lo), s=6, marker="v", color="black",
                       label=f"{zero.sum()} trees estimated 0")
            ax.legend(fontsize=8, loc="upper left")
        ax.plot([lo, 1], [lo, 1], color="black", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo / 2, 1.5)
        ax.set_ylim(lo / 2, 1.5)
        ax.set_xlabel("ground-truth probability")
        ax.set_title(f"{NAMES[meth]} ({s['dataset']}, short run {s['replicate']})")
    axes[0].set_ylabel("estimated probability")
    return plotting.save(fig, out / "ds1_scatter")


def em_traces(record, out):
    """EM convergence: (penalised) log-likelihood per iteration, first short run of each set."""
    traces = record.result("em_traces")
    firsts = {}
    for key, t in traces.items():
        ds = key.split("-rep")[0]
        firsts.setdefault(ds, (key, t))
    fig, axes = plotting.subplots(1, len(firsts), figsize=(3.3 * len(firsts), 3.3), squeeze=False)
    for ax, (ds, (key, t)) in zip(axes[0], firsts.items()):
        for name, color in (("em", COLORS["sbn_em"]), ("em_alpha", COLORS["sbn_em_alpha"])):
            lp = np.asarray(t[name])
            ax.plot(np.arange(1, len(lp) + 1), lp, color=color,
                    label=f"{NAMES['sbn_' + name]} ({len(lp)} it.)")
        ax.set_title(key)
        ax.set_xlabel("EM iteration")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("per-tree log-likelihood")
    return plotting.save(fig, out / "em_traces")


# --------------------------------------------------------------- simulation


def simulation_heatmaps(record, out):
    """KL per method over (beta, K), mean over replicates, one shared log colour scale."""
    import matplotlib.colors as mcolors

    sim = record.result("simulation")
    cfg, methods = sim["config"], sim["methods"]
    mats = {m: np.asarray(sim["mean"][m]) for m in methods}
    vmin = min(x.min() for x in mats.values())
    vmax = max(x.max() for x in mats.values())
    fig, axes = plotting.subplots(1, len(methods), figsize=(3.1 * len(methods), 3.4),
                                  sharey=True)
    norm = mcolors.LogNorm(vmin=vmin, vmax=vmax)
    for ax, m in zip(axes, methods):
        im = ax.imshow(mats[m], origin="lower", cmap="viridis", norm=norm, aspect="auto")
        for (i, j), v in np.ndenumerate(mats[m]):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6.5,
                    color="white" if norm(v) < 0.6 else "black")
        ax.set_xticks(range(len(cfg["sample_sizes"])), cfg["sample_sizes"], rotation=45)
        ax.set_yticks(range(len(cfg["betas"])), cfg["betas"])
        ax.set_xlabel("K (sampled trees)")
        ax.set_title(NAMES[m])
        ax.grid(False)
    axes[0].set_ylabel("β (Dirichlet concentration)")
    fig.colorbar(im, ax=list(axes), label="KL (mean over replicates)", shrink=0.9)
    fig.suptitle(f"{cfg['n_taxa']}-taxon simulation: KL(truth ‖ estimate), mean over "
                 f"{record.metrics.get('replicates', '?')} replicate(s) (lower is better)")
    return plotting.save(fig, out / "simulation_heatmaps")


def simulation_slices(record, out):
    """KL vs beta at the K nearest 4000, and vs K at the beta nearest 0.008 (mean ± std)."""
    sim = record.result("simulation")
    cfg, methods = sim["config"], sim["methods"]
    betas, Ks = np.asarray(cfg["betas"]), np.asarray(cfg["sample_sizes"])
    j = int(np.argmin(np.abs(Ks - 4000)))
    i = int(np.argmin(np.abs(np.log(betas / 0.008))))
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(10, 3.8))
    for m in methods:
        mean, std = np.asarray(sim["mean"][m]), np.asarray(sim["std"][m])
        a1.errorbar(betas, mean[:, j], yerr=std[:, j], color=COLORS[m], label=NAMES[m],
                    marker="o", ms=3, capsize=2, lw=1)
        a2.errorbar(Ks, mean[i, :], yerr=std[i, :], color=COLORS[m], label=NAMES[m],
                    marker="o", ms=3, capsize=2, lw=1)
    a1.set_xscale("log")
    a1.set_xlabel("β")
    a1.set_title(f"K = {Ks[j]}")
    a2.set_xscale("log")
    a2.set_xlabel("K")
    a2.set_title(f"β = {betas[i]}")
    for ax in (a1, a2):
        ax.set_ylabel("KL divergence")
        ax.legend(fontsize=8)
    return plotting.save(fig, out / "simulation_slices")
