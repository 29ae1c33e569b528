"""Figures for the PWCCA experiments, each regenerated from a run's saved results."""

from __future__ import annotations

import numpy as np

from common import plotting

MEASURE_STYLE = {"mean_cca": ("mean CCA", "#7570b3"), "svcca": ("SVCCA (99% variance)", "#d95f02"),
                 "pwcca": ("PWCCA", "#1b9e77")}
GROUP_STYLE = {"gen_gen": ("generalising – generalising", "#1b9e77"),
               "mem_mem": ("memorising – memorising", "#d95f02"),
               "gen_mem": ("generalising – memorising", "#7570b3")}


def synthetic_curves(record, out):
    """Similarity of two layers that share a signal subspace, as noise dimensions replace
    signal dimensions; dotted: unrelated random layers of the same shape."""
    res = record.result("synthetic")
    cfg = res["config"]
    fig, axes = plotting.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, tag, scale in ((axes[0], "", cfg["noise_scale"]),
                           (axes[1], "low_noise/", cfg["low_noise_scale"])):
        for meas, (name, color) in MEASURE_STYLE.items():
            c = np.array(res["curves"][f"{tag}{meas}"])
            ax.errorbar(c[:, 0], c[:, 1], yerr=c[:, 2], fmt="o-", color=color, label=name, capsize=2)
            ax.axhline(res["random"][meas], color=color, ls=":", lw=1.2)
        ax.plot(c[:, 0], 1 - c[:, 0], color="gray", lw=0.8, ls="--", label="fraction of signal dims")
        ax.set_xlabel("fraction of each layer's dimensions that are independent noise")
        ax.set_title(f"noise std = {scale:g} × signal std")
        ax.set_ylim(-0.02, 1.05)
    axes[0].set_ylabel("similarity (1 = same up to a linear map)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Synthetic signal vs noise: {cfg['n_neurons']} neurons, {cfg['n_points']} data "
                 f"points, {cfg['draws']} draws (dotted: random-activation baselines)", fontsize=10)
    return plotting.save(fig, out / "synthetic_curves")


def gen_mem_layers(record, out):
    """PWCCA distance per layer within and across generalising and memorising groups."""
    res = record.result("cnn")
    layers = res["layers"]
    fig, ax = plotting.subplots(figsize=(7.5, 4))
    x = np.arange(len(layers))
    for name, (label, color) in GROUP_STYLE.items():
        vals = [res["gen_mem"][layer][name] for layer in layers]
        mean = np.array([np.mean(v) for v in vals])
        std = np.array([np.std(v) for v in vals])
        ax.errorbar(x, mean, yerr=std, fmt="o-", color=color, label=f"{label} ({len(vals[0])} pairs)",
                    capsize=3)
    base_w = res["config"]["base_width"]
    ax.plot(x, [res["baseline"][layer][str(base_w)]["pwcca"] for layer in layers], "k:",
            label="random activations, same shape")
    ax.set_xticks(x)
    ax.set_xticklabels(layers)
    ax.set_ylabel("PWCCA distance (mean ± std over pairs)")
    nets = res["nets"]
    gen_acc = np.mean([v["test_acc"] for v in nets.values() if not v["memorise"]
                       and v["width"] == base_w and v["lr"] == res["config"]["base_lr"]])
    mem_train = min(v["train_acc"] for v in nets.values() if v["memorise"])
    ax.set_title(f"{res['config']['dataset']}: generalising nets test {gen_acc:.1f}%, "
                 f"memorising nets fit ≥ {mem_train:.1f}% of permuted labels", fontsize=9)
    ax.legend(fontsize=8)
    return plotting.save(fig, out / "gen_mem_layers")


def width_distance(record, out):
    """PWCCA distance between networks of the same width, per layer, vs width; with test accuracy."""
    res = record.result("cnn")
    widths = res["config"]["widths"]
    layers = [layer for layer in res["layers"] if layer != "logits"]
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(11, 4))
    cmap = plotting.plt().get_cmap("viridis")
    for i, layer in enumerate(layers):
        color = cmap(i / max(1, len(layers) - 1))
        mean = [np.mean(res["width"][layer][str(w)]) for w in widths]
        std = [np.std(res["width"][layer][str(w)]) for w in widths]
        a1.errorbar(widths, mean, yerr=std, fmt="o-", color=color, label=layer, capsize=2)
        a1.plot(widths, [res["baseline"][layer][str(w)]["pwcca"] for w in widths], ":",
                color=color, lw=1)
    a1.set_xscale("log", base=2)
    a1.set_xticks(widths)
    a1.set_xticklabels([str(w) for w in widths])
    a1.set_xlabel("width multiplier (conv1 filters)")
    a1.set_ylabel("PWCCA distance between same-width nets")
    a1.set_title("wider nets converge to more similar solutions? (dotted: random baseline)",
                 fontsize=9)
    a1.legend(fontsize=8)
    nets = res["nets"]
    for w in widths:
        accs = [v["test_acc"] for v in nets.values() if v["width"] == w and not v["memorise"]
                and v["lr"] == res["config"]["base_lr"]]
        a2.scatter([w] * len(accs), accs, color="#1b9e77")
    a2.set_xscale("log", base=2)
    a2.set_xticks(widths)
    a2.set_xticklabels([str(w) for w in widths])
    a2.set_xlabel("width multiplier")
    a2.set_ylabel("test accuracy (%)")
    a2.set_title("test accuracy of each net", fontsize=9)
    return plotting.save(fig, out / "width_distance")


def lr_clusters(record, out):
    """PWCCA distance matrix between nets trained with different learning rates (deepest
    hidden layer), with the hierarchical clustering of that matrix."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    res = record.result("cnn")
    layer = [name for name in res["layers"] if name != "logits"][-1]
    lr = res["lr"]
    mat = np.array(lr["matrix"][layer])
    labels = [f"lr {v:g} #{k.split('-')[-1]}" for k, v in zip(lr["nets"], lr["lrs"])]
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    im = a1.imshow(mat, cmap="viridis")
    a1.set_xticks(range(len(labels)))
    a1.set_yticks(range(len(labels)))
    a1.set_xticklabels(labels, rotation=90, fontsize=7)
    a1.set_yticklabels(labels, fontsize=7)
    a1.grid(False)
    fig.colorbar(im, ax=a1, label=f"PWCCA distance ({layer})")
    z = linkage(squareform(mat, checks=False), method="average")
    dendrogram(z, labels=labels, ax=a2, leaf_rotation=90, leaf_font_size=7)
    a2.set_ylabel("average-linkage distance")
    a2.set_title("clusters of networks (should group by learning rate)", fontsize=9)
    return plotting.save(fig, out / "lr_clusters")


def lstm_dynamics(record, out):
    """PWCCA distance of each LSTM layer's representation to its final one over training."""
    res = record.result("lstm")
    fig, ax = plotting.subplots(figsize=(7, 4))
    cmap = plotting.plt().get_cmap("viridis")
    layers = list(res["dynamics"])
    for i, layer in enumerate(layers):
        d = np.array(res["dynamics"][layer])
        ax.plot(d[:, 0], d[:, 1], "o-", color=cmap(i / max(1, len(layers) - 1)), label=layer)
    ax.axhline(res["baseline_dynamics"], color="k", ls=":", lw=1, label="random activations")
    ax.set_xscale("symlog", linthresh=0.03)
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("PWCCA distance to the final representation")
    ax.set_title(f"LSTM on row-by-row {res['config']['dataset']}: bottom-up convergence? "
                 f"({res['data_points']['dynamics']} data points)", fontsize=9)
    ax.legend(fontsize=8)
    return plotting.save(fig, out / "lstm_dynamics")


def lstm_time_steps(record, out):
    """PWCCA distance between the trained LSTM's hidden state at step t and at the last step."""
    res = record.result("lstm")
    fig, ax = plotting.subplots(figsize=(7, 4))
    cmap = plotting.plt().get_cmap("viridis")
    layers = list(res["across_time"])
    for i, layer in enumerate(layers):
        row = res["across_time"][layer]
        ax.plot(range(1, len(row) + 1), row, "o-", ms=3, color=cmap(i / max(1, len(layers) - 1)),
                label=layer)
    ax.axhline(res["baseline_time"], color="k", ls=":", lw=1, label="random activations")
    ax.set_xlabel("time step t (image row)")
    ax.set_ylabel("PWCCA distance to the last step's state")
    ax.set_title(f"hidden state across time steps ({res['data_points']['time']} test images)",
                 fontsize=9)
    ax.legend(fontsize=8)
    return plotting.save(fig, out / "lstm_time_steps")
