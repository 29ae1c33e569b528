"""Figures of the epistemic topic, each regenerated from a run's saved results."""

from __future__ import annotations

import numpy as np

from common import plotting

NAMES = {"plain": "plain net", "mc_dropout": "MC dropout", "ensemble": "deep ensemble (5)",
         "bbb": "Bayes by backprop"}
COLORS = {"plain": "#7f7f7f", "mc_dropout": "#1f77b4", "ensemble": "#2ca02c", "bbb": "#d62728"}


def regression_bands(record, out):
    """The lecture's dropout-uncertainty figure, for each method: predictive mean
    +- 2 std (total: noise + epistemic, light; epistemic alone, dark), the training
    data and the true function."""
    r = record.result("regression")
    xs, truth = np.array(r["grid"]), np.array(r["truth"])
    methods = list(r["curves"])
    fig, axes = plotting.subplots(1, len(methods), figsize=(5 * len(methods), 3.8), sharey=True,
                                  squeeze=False)
    for ax, method in zip(axes[0], methods):
        mean = np.array(r["curves"][method]["mean"])
        epi = np.array(r["curves"][method]["epistemic_std"])
        total = np.sqrt(epi ** 2 + r["noise"] ** 2)
        ax.axvspan(-r["gap"], r["gap"], color="#ffe9a8", alpha=0.5, lw=0, label="gap in the data")
        ax.fill_between(xs, mean - 2 * total, mean + 2 * total, color=COLORS[method], alpha=0.18,
                        lw=0, label="mean ± 2 std (noise + epistemic)")
        ax.fill_between(xs, mean - 2 * epi, mean + 2 * epi, color=COLORS[method], alpha=0.35, lw=0,
                        label="mean ± 2 epistemic std")
        ax.plot(xs, truth, "k--", lw=1, label="true function")
        ax.plot(xs, mean, color=COLORS[method], lw=1.6, label="predictive mean")
        ax.plot(r["x_train"], r["y_train"], "k.", ms=3, label="training data")
        ax.set_title(NAMES[method])
        ax.set_xlabel("x")
        ax.set_ylim(-3.5, 3.5)
    axes[0][0].set_ylabel("y")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle("1-D regression with a gap: epistemic uncertainty grows away from the data", fontsize=10)
    return plotting.save(fig, out / "regression_bands")


def reliability_diagrams(record, out):
    """Accuracy vs confidence per equal-width bin of top-label confidence (MNIST test),
    one panel per method; the bar height is the bin's accuracy, the diagonal perfect
    calibration, and the title gives the ECE."""
    r, metrics = record.result("mnist"), record.metrics
    methods = r["methods"]
    fig, axes = plotting.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.4), squeeze=False)
    for ax, method in zip(axes[0], methods):
        rel = r[method]["reliability"]
        edges = np.array(rel["edges"])
        acc = np.array([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
        conf = np.array([np.nan if c is None else c for c in rel["confidence"]], dtype=float)
        width = np.diff(edges)
        ax.bar(edges[:-1], np.nan_to_num(acc), width=width, align="edge", color=COLORS[method],
               alpha=0.75, edgecolor="k", lw=0.4, label="accuracy")
        ax.bar(edges[:-1], np.nan_to_num(conf - acc), bottom=np.nan_to_num(acc), width=width,
               align="edge", color="none", edgecolor="#d62728", hatch="//", lw=0.4, label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ece = metrics.get(f"{method}/ece")
        ax.set_title(f"{NAMES[method]}" + (f"\nECE {ece:.4f}" if ece is not None else ""), fontsize=9)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    return plotting.save(fig, out / "reliability_diagrams")


def entropy_histograms(record, out):
    """Predictive entropy of the MNIST test images vs the Fashion-MNIST test images
    (out of distribution), one panel per method, with the entropy AUROC."""
    r, metrics = record.result("mnist"), record.metrics
    methods = r["methods"]
    fig, axes = plotting.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.0), sharey=True,
                                  squeeze=False)
    for ax, method in zip(axes[0], methods):
        h = r[method]["histogram"]
        edges = np.array(h["edges"])
        for key, label, color in (("entropy_in", "MNIST (in)", "#1f77b4"),
                                  ("entropy_out", "Fashion-MNIST (out)", "#ff7f0e")):
            counts = np.array(h[key], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.45, color=color, label=label)
        auc = metrics.get(f"{method}/ood/entropy/auroc")
        ax.set_title(NAMES[method] + (f"\nAUROC (entropy) {auc:.3f}" if auc is not None else ""), fontsize=9)
        ax.set_xlabel("predictive entropy (nats)")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("fraction of images")
    axes[0][0].legend(fontsize=7)
    return plotting.save(fig, out / "entropy_histograms")
