"""Figures for the VCL experiments, each regenerated from a run's saved results."""

from __future__ import annotations

import numpy as np

from common import plotting

ARM_COLORS = {"none": "#7f7f7f", "bn": "#1f77b4", "vcl": "#d62728"}
ARM_NAMES = {"none": "no normalisation", "bn": "batch norm", "vcl": "VCL"}


def _centres(lo, hi, bins):
    edges = np.linspace(lo, hi, bins + 1)
    return (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]


def elu_unit_histograms(record, out):
    """Output histogram of one affine + ELU unit trained with VCL alone, over training."""
    snaps = record.result("theory")["elu_unit"]["snapshots"]
    fig, axes = plotting.subplots(1, len(snaps), figsize=(3.2 * len(snaps), 3))
    for ax, s in zip(axes, snaps):
        counts = np.asarray(s["hist_counts"])
        c, w = _centres(*s["hist_range"], len(counts))
        ax.bar(c, counts / counts.sum() / w, width=w, color="#d62728", alpha=0.8)
        ax.set_title(f"step {s['step']}: kurtosis {s['kurtosis']:.2f}\n"
                     f"bimodality {s['bimodality']:.2f}, a={s['a']:.2f} b={s['b']:.2f}", fontsize=8)
        ax.set_xlabel("h = ELU(a x + b)")
    axes[0].set_ylabel("density")
    fig.suptitle("One ELU unit, x ~ N(0, 1), trained with the VCL term alone", fontsize=10)
    return plotting.save(fig, out / "elu_unit_histograms")


def mixture_histograms(record, out):
    """Projection w.x of the two-Gaussian mixture over training, per component, for both priors."""
    mix = record.result("theory")["mixture"]
    n = len(next(iter(mix.values()))["snapshots"])
    fig, axes = plotting.subplots(len(mix), n, figsize=(3.2 * n, 2.9 * len(mix)), squeeze=False)
    for row, (name, res) in zip(axes, mix.items()):
        for ax, s in zip(row, res["snapshots"]):
            a, b = np.asarray(s["hist_first"]), np.asarray(s["hist_second"])
            c, w = _centres(*s["hist_range"], len(a))
            total = (a.sum() + b.sum()) * w
            ax.bar(c, a / total, width=w, color="#ff7f0e", alpha=0.8, label="component 1")
            ax.bar(c, b / total, width=w, bottom=a / total, color="#1f77b4", alpha=0.8,
                   label="component 2")
            ax.set_title(f"prior {res['prior']}, step {s['step']}\n|cos(w, LDA)| {s['cos_lda']:.2f}, "
                         f"separation {s['separation_fraction']:.2f}", fontsize=8)
            ax.set_xlabel("w . x")
        row[0].legend(fontsize=7)
    fig.suptitle("A linear unit on a two-Gaussian mixture, trained with the VCL term alone",
                 fontsize=10)
    return plotting.save(fig, out / "mixture_histograms")


def mixture_angle(record, out):
    """|cos| of w with the LDA direction and the components' separation, over training."""
    mix = record.result("theory")["mixture"]
    fig, axes = plotting.subplots(1, 2, figsize=(10, 3.6))
    for name, res in mix.items():
        steps = [p["step"] for p in res["path"]]
        style = "-" if name == "equal" else "--"
        axes[0].plot(steps, [p["cos_lda"] for p in res["path"]], style,
                     label=f"prior {res['prior']}: LDA")
        axes[0].plot(steps, [p["cos_mean_diff"] for p in res["path"]], style, alpha=0.5,
                     label=f"prior {res['prior']}: mean difference")
        axes[1].plot(steps, [p["separation_fraction"] for p in res["path"]], style,
                     label=f"prior {res['prior']}")
    axes[0].set_ylabel("|cos(w, direction)|")
    axes[1].set_ylabel("separation / its LDA maximum")
    for ax in axes:
        ax.set_xlabel("Adam step")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle("Equal priors: w turns to LDA (separate); unequal: the components merge",
                 fontsize=10)
    return plotting.save(fig, out / "mixture_angle")


def test_error(record, out):
    """Test error per arm (bars) and the learning curves (error on the first test images)."""
    saved = record.result("arms")
    arms = saved["arms"]
    fig, axes = plotting.subplots(1, 2, figsize=(10, 3.6))
    names = list(arms)
    axes[0].bar(range(len(names)), [arms[a]["test_err"] for a in names],
                color=[ARM_COLORS[a] for a in names])
    for i, a in enumerate(names):
        axes[0].text(i, arms[a]["test_err"], f"{arms[a]['test_err']:.2f}", ha="center", va="bottom")
    axes[0].set_xticks(range(len(names)))
    axes[0].set_xticklabels([ARM_NAMES[a] for a in names])
    axes[0].set_ylabel(f"test error (%), {saved['dataset']}")
    for a in names:
        h = arms[a]["history"]
        axes[1].plot([r["epoch"] for r in h], [r["test_err_subset"] for r in h], "o-",
                     color=ARM_COLORS[a], label=ARM_NAMES[a], ms=3)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(f"test error (%), first {saved['train']['eval_subset']} images")
    axes[1].legend(fontsize=8)
    return plotting.save(fig, out / "test_error")


def kurtosis_per_layer(record, out):
    """Median per-unit kurtosis of the pre-activations, per layer and arm."""
    arms = record.result("arms")["arms"]
    fig, ax = plotting.subplots(figsize=(6.5, 3.6))
    for a, info in arms.items():
        k = [l["kurtosis_median"] for l in info["layers"]]
        ax.plot(range(1, len(k) + 1), k, "o-", color=ARM_COLORS[a], label=ARM_NAMES[a])
    ax.axhline(3, color="gray", ls="--", lw=0.8, label="Gaussian")
    ax.set_xlabel("layer (pre-activation of the ELU)")
    ax.set_ylabel("median kurtosis over units")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return plotting.save(fig, out / "kurtosis_per_layer")


def preactivation_histograms(record, out):
    """Per-unit standardised pre-activations, pooled, for the first, middle and last layer."""
    arms = record.result("arms")["arms"]
    layers = len(next(iter(arms.values()))["layers"])
    picks = sorted({0, layers // 2, layers - 1})
    fig, axes = plotting.subplots(1, len(picks), figsize=(3.8 * len(picks), 3.2), squeeze=False)
    for ax, li in zip(axes[0], picks):
        for a, info in arms.items():
            h = np.asarray(info["layers"][li]["hist"])
            c, w = _centres(-5, 5, len(h))
            ax.plot(c, h / max(h.sum(), 1) / w, color=ARM_COLORS[a], label=ARM_NAMES[a])
        ax.set_title(f"layer {li + 1}", fontsize=9)
        ax.set_xlabel("pre-activation, standardised per unit")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    return plotting.save(fig, out / "preactivation_histograms")
