"""Figures for the sanity-check experiments, each regenerated from a run's saved results."""

from __future__ import annotations

import numpy as np

from common import plotting
from papers.sanity_checks.method import METHOD_NAMES, METRIC_NAMES

N_EXAMPLES = 3  # images whose maps are saved for the grids
COLORS = {"gradient": "#d62728", "grad_x_input": "#bcbd22", "integrated_gradients": "#e377c2",
          "guided_backprop": "#2ca02c", "gradcam": "#17becf", "guided_gradcam": "#1f77b4",
          "smoothgrad": "#ff7f0e", "vargrad": "#8c564b"}
BLOCK_NAMES = {"logits": "logits", "fc1": "fc1", "conv2": "conv2", "conv1": "conv1"}


def _abs_norm(m):
    m = np.abs(np.asarray(m, dtype=float))
    top = m.max()
    return m / top if top > 0 else m


def _mosaic(cells, gap: int = 3):
    """One image from a grid of equally sized [0, 1] tiles (None leaves a blank tile)."""
    h, w = next(np.shape(c) for row in cells for c in row if c is not None)
    rows, cols = len(cells), len(cells[0])
    out = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap))
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c is not None:
                out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = c
    return out, h + gap, w + gap


def _grid_figure(cells, row_labels, col_labels, title):
    """A labelled grid of grey tiles drawn as one image (fast even for 100+ tiles)."""
    img, dh, dw = _mosaic(cells)
    rows, cols = len(cells), len(cells[0])
    fig, ax = plotting.subplots(figsize=(0.75 * cols + 1.6, 0.75 * rows + 0.9))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for i, label in enumerate(row_labels):
        ax.text(-4, i * dh + dh / 2 - 1.5, label, ha="right", va="center", fontsize=6.5)
    for j, label in enumerate(col_labels):
        ax.text(j * dw + dw / 2 - 1.5, -4, label, ha="left", va="bottom", fontsize=7, rotation=35)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, pad=48)
    return fig


def _unit(m):
    m = np.asarray(m, dtype=float)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def cascading_grid(record, out):
    """Maps of a few test images as blocks are randomised from the top down
    (absolute-value normalisation, as the paper's Fig. 2)."""
    saved = record.result("maps")
    dataset = next(iter(saved))
    d = saved[dataset]
    methods = list(d["original"])
    states = [("trained", d["original"])] + [
        ("+ " + BLOCK_NAMES[s["blocks"][-1]] + " random", s["examples"]) for s in d["cascade"]]
    cells, labels = [], []
    for i in range(len(d["images"])):
        for s, (state, maps) in enumerate(states):
            cells.append([_unit(d["images"][i]) if s == 0 else None]
                         + [_abs_norm(maps[m][i]) for m in methods])
            labels.append(f"image {i + 1} (label {d['labels'][i]}): {state}" if s == 0 else state)
    fig = _grid_figure(cells, labels, ["input"] + [METHOD_NAMES[m] for m in methods],
                       f"Cascading randomisation ({dataset} CNN): each row randomises one more "
                       f"block, from the logits down; |map| / max")
    return plotting.save(fig, out / "cascading_grid")


def _curves(record, out, kind, name):
    sim = record.result("similarity")
    setup = record.result("setup")
    figs = []
    for dataset in setup["datasets"]:
        blocks = ["logits", "fc1", "conv2", "conv1"]
        fig, axes = plotting.subplots(1, 4, figsize=(16, 3.8), sharey=True)
        x = np.arange(len(blocks) + 1)
        for ax, metric in zip(axes, setup["metrics"]):
            for method in setup["methods"]:
                vals = [sim[f"{dataset}/{kind}/{b}"][method][metric] for b in blocks]
                mean = np.array([1.0] + [v[0] for v in vals])
                std = np.array([0.0] + [v[1] for v in vals])
                ax.plot(x, mean, "o-", color=COLORS[method], label=METHOD_NAMES[method], lw=1.5, ms=4)
                ax.fill_between(x, mean - std, mean + std, color=COLORS[method], alpha=0.07)
            ax.axhline(0, color="gray", lw=0.8, ls="--")
            ax.set_xticks(x)
            labels = ["trained"] + (["+" + b for b in blocks] if kind == "cascade" else blocks)
            ax.set_xticklabels(labels, rotation=30)
            ax.set_title(METRIC_NAMES[metric])
            ax.set_xlabel("randomised " + ("up to block (top down)" if kind == "cascade"
                                           else "block (only this one)"))
        axes[0].set_ylabel(f"similarity to the trained model's map\n(mean ± std over "
                           f"{setup['saliency']['n_images']} test images)")
        axes[-1].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"{name} randomisation, {dataset} CNN", fontsize=10)
        figs.append(plotting.save(fig, out / f"{kind}_curves_{dataset}"))
    return figs


def cascading_curves(record, out):
    """Similarity to the trained model's map vs how many blocks are randomised (top down)."""
    return _curves(record, out, "cascade", "Cascading")


def independent_curves(record, out):
    """Similarity to the trained model's map when one block alone is randomised."""
    return _curves(record, out, "independent", "Independent")


def data_randomization_maps(record, out):
    """True-label vs random-label model maps on a few test images (absolute-value normalisation)."""
    saved = record.result("maps")
    methods = list(next(iter(saved.values()))["maps"]["true"])
    cells, labels = [], []
    for d, s in saved.items():
        for i in range(len(s["images"])):
            for model in ("true", "random"):
                cells.append([_unit(s["images"][i]) if model == "true" else None]
                             + [_abs_norm(s["maps"][model][m][i]) for m in methods])
                labels.append(f"{d} image {i + 1}: true labels" if model == "true"
                              else "random labels")
    fig = _grid_figure(cells, labels, ["input"] + [METHOD_NAMES[m] for m in methods],
                       "Data randomisation: maps of the model trained on true labels and of the "
                       "model trained on permuted labels; |map| / max")
    return plotting.save(fig, out / "data_randomization_maps")


def data_randomization_bars(record, out):
    """Similarity of the true-label model's maps to the random-label model's (solid) and
    to a second true-label model's from another initialisation (hatched: the noise floor)."""
    sim, setup, m = record.result("similarity"), record.result("setup"), record.metrics
    datasets, methods = setup["datasets"], setup["methods"]
    fig, axes = plotting.subplots(len(datasets), 4, figsize=(16, 3.4 * len(datasets)),
                                  squeeze=False, sharey=True)
    x = np.arange(len(methods))
    for row, d in zip(axes, datasets):
        acc = m.get(f"{d}/random/train_acc")
        for ax, metric in zip(row, setup["metrics"]):
            for off, other, hatch, alpha in ((-0.2, "random", None, 0.9), (0.2, "true_b", "//", 0.45)):
                vals = [sim[f"{d}/true_vs_{other}"][k][metric] for k in methods]
                ax.bar(x + off, [v[0] for v in vals], 0.4, yerr=[v[1] for v in vals],
                       color=[COLORS[k] for k in methods], alpha=alpha, hatch=hatch,
                       error_kw={"lw": 0.7}, label="vs random-label model" if other == "random"
                       else "vs 2nd true-label model")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set_xticks(x)
            ax.set_xticklabels([METHOD_NAMES[k] for k in methods], rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{d}: {METRIC_NAMES[metric]}", fontsize=9)
        row[0].set_ylabel("similarity to the\ntrue-label model's map")
        row[0].legend(fontsize=7, title=f"random-label train acc {acc:.1f}%" if acc is not None
                      else None, title_fontsize=7)
    return plotting.save(fig, out / "data_randomization_bars")
