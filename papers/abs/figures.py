"""Figures for abs_mnist, each regenerated from a run's saved results."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from common import plotting
from common import robustness as R

NAMES = {"cnn": "CNN", "binary_cnn": "Binary CNN", "madry": "Madry et al. (ours, cpu)",
         "nn": "Nearest neighbour", "binary_abs": "Binary ABS", "abs": "ABS"}
COLORS = {"cnn": "#7f7f7f", "binary_cnn": "#bcbd22", "madry": "#d62728", "nn": "#9467bd",
          "binary_abs": "#17becf", "abs": "#1f77b4"}
NORM_LABEL = {"l2": "L2", "linf": "L-inf", "l0": "L0 (pixels)"}
GRIDS = {"l2": [i * 0.05 for i in range(0, 101)], "linf": [i * 0.005 for i in range(0, 121)],
         "l0": list(range(0, 61))}


def reported_accuracies() -> dict:
    """The paper's accuracy at its thresholds per norm and model (from the released
    curve data), read from claims.toml: never typed twice."""
    from common.claims import load_claims

    out: dict = {"l2": {}, "linf": {}, "l0": {}}
    for c in load_claims(Path(__file__).parent / "claims.toml"):
        model, _, stat = (c.metric or "").partition("/")
        if stat.startswith("acc_") and isinstance(c.reported, (int, float)):
            out[stat.removeprefix("acc_")][model] = c.reported
    return out

def inference_figure(record, out):
    """Figure 1 (as data): test digits, ABS's best reconstruction by every class's
    decoder, and the class probabilities of the offset softmax."""
    ex = record.result("inference_example")
    x, rec, p, logits = ex["x"], ex["rec"], ex["p"], ex["logits"]
    n, k = len(x), rec.shape[1]
    fig, axes = plotting.subplots(n, k + 1, figsize=(1.05 * (k + 1), 1.25 * n + 0.4))
    for i in range(n):
        axes[i][0].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[i][0].set_title(f"input ({int(ex['y'][i])})", fontsize=7)
        best = int(logits[i].argmax())
        for c in range(k):
            ax = axes[i][c + 1]
            ax.imshow(rec[i, c, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{c}: l={-float(logits[i, c]):.3f}\np={float(p[i, c]):.2f}", fontsize=6,
                         color="#1b9e77" if c == best else "black")
        for ax in axes[i]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("ABS: per-class reconstructions G_y(z*) and scores l_y = min_z ||x - G_y(z)||^2/784 + KL; "
                 "p = offset softmax", fontsize=8)
    return plotting.save(fig, out / "fig1_inference")


def accuracy_vs_perturbation(record, out):
    """Accuracy vs perturbation size per norm per model (the paper's accuracy-distortion
    curves), from each sample's smallest adversarial over all attacks; stars: the
    paper's accuracy at its thresholds (released curve data)."""
    dist, cfg = record.result("distances")["models"], record.result("config")
    th = cfg["attacks"]["thresholds"]
    reported = reported_accuracies()
    fig, axes = plotting.subplots(1, 3, figsize=(14, 4))
    for ax, norm in zip(axes, ("l2", "linf", "l0")):
        for name, d in dist.items():
            acc = R.accuracy_curve(torch.tensor(d[norm]), GRIDS[norm])
            ax.plot(GRIDS[norm], acc, color=COLORS[name], label=NAMES[name])
            rep = reported[norm].get(name)
            if rep is not None:
                ax.plot([th[norm]], [rep], "*", color=COLORS[name], ms=9, mec="black", mew=0.5)
        ax.axvline(th[norm], color="gray", ls=":", lw=1)
        ax.set_xlabel(f"{NORM_LABEL[norm]} perturbation size")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{NORM_LABEL[norm]}: best of all attacks per image", fontsize=9)
    axes[0].legend(fontsize=7)
    n = record.metrics.get("attack_images", "?")
    aa = cfg["attacks"].get("autoattack")
    note = (f"; AutoAttack ({aa}) attacks the baselines at the L2 and L-inf thresholds only, hence their "
            f"drops there" if aa else "")
    fig.suptitle(f"{n} test images attacked; stars: the paper's accuracy at its threshold{note}", fontsize=9)
    return plotting.save(fig, out / "accuracy_vs_perturbation")


def smallest_adversarials(record, out):
    """The smallest L2 adversarial found per model for the first test images (the
    reference repository's qualitative figure); titles: L2 size ('-' = none found)."""
    ex = record.result("examples")
    x = ex["x"]
    models = [m for m in NAMES if f"{m}/l2" in ex]
    fig, axes = plotting.subplots(len(models) + 1, len(x), figsize=(1.1 * len(x), 1.2 * (len(models) + 1)))
    for j in range(len(x)):
        axes[0][j].imshow(x[j, 0], cmap="gray", vmin=0, vmax=1)
        axes[0][j].set_title(f"clean ({int(ex['y'][j])})", fontsize=7)
        for i, m in enumerate(models, start=1):
            adv = ex[f"{m}/l2"][j]
            d = float((adv - x[j]).flatten().norm())
            axes[i][j].imshow(adv[0], cmap="gray", vmin=0, vmax=1)
            axes[i][j].set_title(f"{d:.2f}" if d > 0 else "-", fontsize=7)
    for i, m in enumerate(["clean"] + models):
        axes[i][0].set_ylabel(NAMES.get(m, m), fontsize=7, rotation=0, ha="right", va="center")
    for row in axes:
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("smallest L2 adversarials per model (best over all attacks)", fontsize=9)
    return plotting.save(fig, out / "smallest_adversarials")


def distal(record, out):
    """Distal adversarials: noise optimised towards each target class; titles give the
    target and the model's p(target) (>= 0.9: classified confidently, red)."""
    dd = record.result("distal")
    models = [m for m in ("cnn", "madry", "abs") if m in dd]
    n = min(10, len(dd[models[0]]["x"]))
    fig, axes = plotting.subplots(len(models), n, figsize=(1.1 * n, 1.35 * len(models)))
    for i, m in enumerate(models):
        for j in range(n):
            ax = axes[i][j]
            ax.imshow(dd[m]["x"][j, 0], cmap="gray", vmin=0, vmax=1)
            p = float(dd[m]["p"][j])
            ax.set_title(f"{int(dd[m]['target'][j])}: p={p:.2f}", fontsize=7, color="red" if p >= 0.9 else "black")
            ax.set_xticks([]), ax.set_yticks([])
        axes[i][0].set_ylabel(NAMES[m], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("distal adversarials (from uniform noise); red: p(target) >= 0.9", fontsize=9)
    return plotting.save(fig, out / "distal_adversarials")


def lower_bounds(record, out):
    """ABS: the per-sample L2 lower bound against the smallest L2 adversarial found."""
    d = record.result("distances")
    lb, up = d["lower_bound_l2"], d["models"]["abs"]["l2"]
    pts = [(a, b) for a, b in zip(lb, up) if b > 0]
    fig, ax = plotting.subplots(figsize=(4.8, 4.2))
    finite = [b for _, b in pts if math.isfinite(b)]
    top = max(finite + [1.0]) * 1.1
    ax.scatter([a for a, _ in pts], [b if math.isfinite(b) else top for _, b in pts], s=12, color="#1f77b4")
    ax.plot([0, top], [0, top], "k:", lw=1)
    ax.set_xlabel("L2 lower bound (from the optimisation problem)")
    ax.set_ylabel("smallest L2 adversarial found (top: none)")
    ax.set_title("ABS: bound vs attacks, per test image", fontsize=9)
    return plotting.save(fig, out / "lower_bounds")
