"""Figures for stadv_mnist, regenerated from a run's saved results: Fig. 2's 10 x 10
grids of targeted examples (source digit x target, for each model), a flow-field
quiver, and success rate vs tau."""

from __future__ import annotations

import torch

from common import plotting


def _mosaic(ex) -> tuple[torch.Tensor, torch.Tensor]:
    """A (10*28, 10*28) image: row = source digit, column = target (the diagonal is the
    original image) and a (10, 10) mask of failed targets."""
    x, labels = ex["x"], ex["labels"]
    h, w = x.shape[-2:]
    grid = torch.ones(10 * h, 10 * w)
    failed = torch.zeros(10, 10, dtype=torch.bool)
    for r in range(len(labels)):
        d = int(labels[r])
        grid[d * h:(d + 1) * h, d * w:(d + 1) * w] = x[r, 0]
    for k in range(len(ex["target"])):
        d, t = int(labels[int(ex["pair_image"][k])]), int(ex["target"][k])
        grid[d * h:(d + 1) * h, t * w:(t + 1) * w] = ex["adv"][k, 0]
        failed[d, t] = int(ex["pred"][k]) != t
    return grid, failed


def targeted_grid(record, out):
    """Fig. 2: for each model, the first correctly classified test image of each digit
    (row; on the diagonal) and its targeted stAdv examples (column = target; red
    frame = the attack missed its target)."""
    names = record.result("config")["setup"]["models"]
    fig, axes = plotting.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        ex = record.result(f"examples_{name}")
        grid, failed = _mosaic(ex)
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # small PNG
        for d, t in failed.nonzero().tolist():
            ax.add_patch(plotting.plt().Rectangle((t * 28 - 0.5, d * 28 - 0.5), 28, 28, fill=False,
                                                  edgecolor="red", linewidth=1.2))
        ax.set_xticks([14 + 28 * i for i in range(10)], [str(i) for i in range(10)], fontsize=7)
        ax.set_yticks([14 + 28 * i for i in range(10)], [str(i) for i in range(10)], fontsize=7)
        ax.set_xlabel("target class")
        ax.set_ylabel("source digit")
        ax.grid(False)
        ax.set_title(f"model {name}", fontsize=9)
    fig.suptitle("Targeted stAdv examples (tau = %g)" % record.result("config")["attack"]["tau"], fontsize=10)
    return plotting.save(fig, out / "targeted_grid")


def flow_quiver(record, out):
    """One targeted example of the first model: the image, the flow field (arrows at
    every pixel, length in pixels), and the adversarial image with its prediction."""
    name = record.result("config")["setup"]["models"][0]
    ex = record.result(f"examples_{name}")
    hits = (ex["pred"] == ex["target"]).nonzero().flatten()
    k = int(hits[0]) if len(hits) else 0  # the first successful pair, if any
    i = int(ex["pair_image"][k])
    flow = ex["flow"][k]
    fig, axes = plotting.subplots(1, 3, figsize=(10, 3.6))
    axes[0].imshow(ex["x"][i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"original ({int(ex['labels'][i])})", fontsize=9)
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    axes[1].imshow(ex["x"][i, 0].numpy(), cmap="gray", vmin=0, vmax=1, alpha=0.35)
    axes[1].quiver(cols.numpy(), rows.numpy(), flow[0].numpy(), -flow[1].numpy(), color="tab:red",
                   angles="xy", scale_units="xy", scale=1, width=0.004)
    axes[1].set_title(f"flow (max |f| = {flow.abs().max():.2f} px)", fontsize=9)
    axes[2].imshow(ex["adv"][k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"stAdv -> target {int(ex['target'][k])}, predicted {int(ex['pred'][k])}", fontsize=9)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(f"model {name}: each pixel samples the input at its position + flow", fontsize=10)
    return plotting.save(fig, out / "flow_quiver")


def success_vs_tau(record, out):
    """Targeted success rate and mean flow loss vs tau (sweep model, first pairs)."""
    sw = record.result("sensitivity")
    taus = sorted(sw["tau"], key=float)
    fig, ax = plotting.subplots(figsize=(5.2, 3.6))
    ax.semilogx([float(t) for t in taus], [sw["tau"][t]["success_rate"] for t in taus], "o-",
                label="success rate")
    ax.axvline(sw["tau_paper"], color="gray", ls="--", lw=1, label=f"paper's tau = {sw['tau_paper']:g}")
    ax.set_xlabel("tau (weight of the flow loss)")
    ax.set_ylabel("targeted success (%)")
    ax.set_ylim(-2, 102)
    ax2 = ax.twinx()
    ax2.semilogx([float(t) for t in taus], [sw["tau"][t]["flow_loss"] for t in taus], "s:",
                 color="tab:orange", label="mean flow loss")
    ax2.set_ylabel("mean L_flow", color="tab:orange")
    ax2.grid(False)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"stAdv success vs tau (model {sw['model']})", fontsize=9)
    return plotting.save(fig, out / "success_vs_tau")
