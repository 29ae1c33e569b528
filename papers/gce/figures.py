"""Figures for gce_noisy_labels, each regenerated from a run's saved results."""

from __future__ import annotations

from common import plotting

LOSS_STYLE = {"cce": ("CCE", "#d95f02"), "mae": ("MAE", "#7570b3"),
              "lq": ("Lq (q=0.7)", "#1b9e77"), "trunc_lq": ("Truncated Lq (k=0.5)", "#e7298a")}
NOISE_NAME = {"uniform": "uniform noise", "class": "class-dependent noise"}


def accuracy_vs_noise(record, out):
    """Test accuracy (at the best noisy-validation epoch) vs noise rate, per loss."""
    grid, m = record.result("grid"), record.metrics
    kinds = sorted({k for k, _ in grid["noises"]}, key=lambda k: k != "uniform")
    fig, axes = plotting.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        etas = sorted(e for k, e in grid["noises"] if k == kind)
        for loss in grid["losses"]:
            name, color = LOSS_STYLE[loss]
            ys = [m.get(f"{kind}_{e}/{loss}/test_acc") for e in etas]
            ax.plot(etas, ys, "o-", color=color, label=name)
        ax.set_xlabel(f"noise rate η ({NOISE_NAME[kind]})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(etas)
        ax.set_title(f"{grid['dataset']}, {grid['train']['arch']}")
        ax.legend(fontsize=8)
    return plotting.save(fig, out / "accuracy_vs_noise")


def curves_high_noise(record, out):
    """At the highest uniform noise: test accuracy and fit to the corrupted labels per epoch.
    CCE fits (memorises) the wrong labels and its test accuracy falls; Lq resists."""
    grid, hist = record.result("grid"), record.result("histories")
    uniform = sorted(e for k, e in grid["noises"] if k == "uniform")
    kind, eta = ("uniform", uniform[-1]) if uniform else tuple(grid["noises"][-1])
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(10.5, 3.8))
    for loss in grid["losses"]:
        h = hist.get(f"{kind}_{eta}-{loss}")
        if not h:
            continue
        name, color = LOSS_STYLE[loss]
        ep = [r["epoch"] for r in h]
        a1.plot(ep, [r["test_acc"] for r in h], color=color, label=name)
        a2.plot(ep, [r["fit_noisy_labels"] for r in h], color=color, label=name)
    for drop in grid["train"]["lr_drops"]:
        for ax in (a1, a2):
            ax.axvline(drop, color="gray", ls=":", lw=1)
    a1.set_title(f"test accuracy, {kind} η = {eta}")
    a1.set_ylabel("clean test accuracy (%)")
    a2.set_title("memorisation of the corrupted training labels")
    a2.set_ylabel("% of corrupted labels fitted")
    for ax in (a1, a2):
        ax.set_xlabel("epoch (dotted: learning-rate drops)")
        ax.legend(fontsize=8)
    return plotting.save(fig, out / "curves_high_noise")
