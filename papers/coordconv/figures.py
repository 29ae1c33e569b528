"""Figures for coordconv_notsoclevr, each regenerated from a run's saved results."""

from __future__ import annotations

import numpy as np
import torch

from common import plotting
from papers.coordconv import method as M

COLORS = {"coordconv": "#1b9e77", "deconv": "#d95f02", "conv": "#d95f02"}
LABELS = {"coordconv": "CoordConv", "deconv": "Deconv", "conv": "Conv"}


def _keys(record):
    return [k for k in record.result("best_arms")]


def data_examples(record, out):
    """Not-so-Clevr: example squares, their one-hot centres, and the two splits."""
    pos = M.positions()
    picks = pos[torch.tensor([0, 900, 1700, 2600, 3135])]
    squares, onehots = M.square_images(picks), M.onehot_images(picks)
    fig, axes = plotting.subplots(2, 7, figsize=(14, 4.4))
    for i in range(5):
        axes[0, i].imshow(squares[i, 0].numpy(), cmap="gray")
        axes[0, i].set_title(f"centre ({picks[i, 0]}, {picks[i, 1]})", fontsize=9)
        axes[1, i].imshow(onehots[i, 0].numpy(), cmap="gray")
    for j, kind in enumerate(("uniform", "quadrant")):
        split = record.result(f"split_{kind}")
        canvas = np.full((M.CANVAS, M.CANVAS), np.nan)
        p = pos.numpy()
        canvas[p[split["train"], 0], p[split["train"], 1]] = 0
        canvas[p[split["test"], 0], p[split["test"], 1]] = 1
        for row in range(2):
            axes[row, 5 + j].imshow(canvas, cmap="coolwarm", vmin=0, vmax=1)
        axes[0, 5 + j].set_title(f"{kind} split\n(blue train {len(split['train'])}, "
                                 f"red test {len(split['test'])})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("9x9 square")
    axes[1, 0].set_ylabel("one-hot centre")
    fig.suptitle("Not-so-Clevr: 3,136 centres on a 64x64 canvas")
    return plotting.save(fig, out / "data_examples")


def accuracy_vs_time(record, out):
    """Test accuracy vs training CPU time (best configuration per architecture)."""
    best = record.result("best_arms")
    panels = sorted({tuple(k.split("/")[:2]) for k in best})
    fig, axes = plotting.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (task, split) in zip(axes[0], panels):
        for key, arm in best.items():
            t, s, arch = key.split("/")
            if (t, s) != (task, split):
                continue
            h = arm["history"]
            ax.plot([x["train_time"] for x in h], [x["test_acc"] for x in h], "o-", ms=3,
                    color=COLORS[arch], label=f"{LABELS[arch]} ({arm['params']:,} params)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plotting.plt().NullFormatter())  # no crowded minor labels
        ax.set_ylim(-3, 103)
        ax.set_title(f"{task}, {split} split")
        ax.set_xlabel("training CPU time (s, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8, loc="center right")
    return plotting.save(fig, out / "accuracy_vs_time")


def sweep_scatter(record, out):
    """Train vs test accuracy of every configuration of every sweep (the paper's scatter)."""
    panels = [(t, s) for t in ("classification", "regression") for s in ("uniform", "quadrant")]
    fig, axes = plotting.subplots(1, 4, figsize=(16, 4))
    for ax, (task, split) in zip(axes, panels):
        for arch in ("coordconv", "deconv", "conv"):
            try:
                arms = record.result(f"arms_{task}_{split}_{arch}")
            except Exception:
                continue
            tr = [a["history"][-1]["train_acc"] for a in arms]
            te = [a["history"][-1]["test_acc"] for a in arms]
            ax.scatter(tr, te, s=28, alpha=0.75, color=COLORS[arch],
                       label=f"{LABELS[arch]} ({len(arms)} configs)")
        ax.plot([0, 100], [0, 100], ":", color="gray", lw=1)
        ax.set_xlim(-3, 103), ax.set_ylim(-3, 103)
        ax.set_title(f"{task}, {split}")
        ax.set_xlabel("train accuracy (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8, loc="upper left")
    return plotting.save(fig, out / "sweep_scatter")


def position_heatmaps(record, out):
    """Per-position error (pixels) of the best model; train positions greyed out."""
    best = record.result("best_arms")
    keys = sorted(best, key=lambda k: (k.split("/")[0], k.split("/")[1], k.split("/")[2] != "coordconv"))
    cols = len(keys)
    fig, axes = plotting.subplots(1, cols, figsize=(3.1 * cols, 3.4), squeeze=False)
    pos = M.positions().numpy()
    for ax, key in zip(axes[0], keys):
        task, split, arch = key.split("/")
        err = np.asarray(best[key]["errors"])
        test = np.asarray(record.result(f"split_{split}")["test"])
        canvas = np.full((M.CANVAS, M.CANVAS), np.nan)
        canvas[pos[test, 0], pos[test, 1]] = err[test]
        train_mask = np.full((M.CANVAS, M.CANVAS), np.nan)
        train_idx = np.setdiff1d(np.arange(len(pos)), test)
        train_mask[pos[train_idx, 0], pos[train_idx, 1]] = 1
        ax.imshow(train_mask, cmap="Greys", vmin=0, vmax=4)
        im = ax.imshow(canvas, cmap="magma_r", vmin=0, vmax=10)
        acc = 100 * (err[test] == 0).mean()
        ax.set_title(f"{task[:5]}. {split}\n{LABELS[arch]}: {acc:.1f}% exact", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[0, -1], label="test error (px, clipped at 10)", shrink=0.8)
    return plotting.save(fig, out / "position_heatmaps")
