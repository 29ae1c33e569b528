"""Figures for confident_classifier_toy and confident_classifier_mnist, each regenerated
from a run's saved results: Fig. 1 (toy confidence maps, small vs big box), Fig. 3
(ordinary vs proposed GAN samples: 2-D and MNIST), Fig. 4 (detection bars per variant and
OOD set) and the max-softmax histograms (in vs out, Fig. 2 left's analogue)."""

from __future__ import annotations

from common import plotting
from common.gan import image_grid

TOY_TITLES = {"ce": "cross entropy only", "small": "confidence loss, OOD from [-20, 20]$^2$",
              "big": "confidence loss, OOD from [-50, 50]$^2$"}
VARIANT_NAMES = {"ce": "cross entropy", "explicit": "conf. loss, explicit OOD",
                 "gan": "conf. loss, pre-trained GAN", "joint": "joint conf. loss"}
VARIANT_COLORS = {"ce": "#d62728", "explicit": "#2ca02c", "gan": "#ff7f0e", "joint": "#1f77b4"}


def toy_confidence_maps(record, out):
    """Max softmax over [-50, 50]^2 for the CE model and the confidence-loss models
    trained with OOD points from the small or the big box (Fig. 1)."""
    r = record.result("toy")
    lo, hi = (float(v) for v in r["extent"])
    fig, axes = plotting.subplots(1, 3, figsize=(13.5, 4.4))
    for ax, name in zip(axes, ("ce", "small", "big")):
        im = ax.imshow(r["maps"][name].numpy(), origin="lower", extent=(lo, hi, lo, hi), vmin=0.5, vmax=1.0,
                       cmap="viridis")
        if name in r["ood"]:
            o = r["ood"][name][:600]
            ax.scatter(o[:, 0], o[:, 1], s=2, c="white", alpha=0.5, label="OOD training points")
        x, y = r["x"][:600], r["y"][:600]
        ax.scatter(x[:, 0], x[:, 1], s=2, c=["#ff7f0e" if v == 0 else "#d62728" for v in y.tolist()])
        h = float(r["small_half"])
        ax.plot([-h, h, h, -h, -h], [-h, -h, h, h, -h], "w--", lw=0.8)
        ax.set_title(TOY_TITLES[name], fontsize=10)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.colorbar(im, ax=axes, shrink=0.85, label="max softmax")
    return plotting.save(fig, out / "fig1_toy_confidence")


def toy_gan_samples(record, out):
    """2-D data with the samples of the ordinary GAN and of the proposed GAN (GAN loss +
    KL(U || P) through the small-box classifier), Fig. 3 left."""
    r = record.result("toy")
    fig, axes = plotting.subplots(1, 2, figsize=(9.5, 4.4), sharex=True, sharey=True)
    x = r["x"]
    for ax, name in zip(axes, ("ordinary", "proposed")):
        ax.scatter(x[:, 0], x[:, 1], s=2, c="#bbbbbb", label="data")
        s = r["samples"][name]
        ax.scatter(s[:, 0], s[:, 1], s=3, c="#1f77b4", alpha=0.6, label="GAN samples")
        ax.set_title("ordinary GAN" if name == "ordinary" else "proposed GAN (+ beta KL(U || P))", fontsize=10)
        ax.set_xlim(-25, 25)
        ax.set_ylim(-25, 25)
        ax.legend(loc="upper right", fontsize=7)
    return plotting.save(fig, out / "fig3_toy_gan")


def detection_bars(record, out):
    """TNR at TPR 95%, AUROC and detection accuracy of the max softmax per variant and OOD
    set (Fig. 4's bar charts; the seen set marked)."""
    m = record.metrics
    cfg = record.result("config")
    sets = cfg["ood_sets"]
    variants = [v for v in VARIANT_NAMES if f"{v}/test_acc" in m]
    fig, axes = plotting.subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / len(variants)
    for ax, (key, label) in zip(axes, (("tnr_at_tpr95", "TNR at TPR 95%"), ("auroc", "AUROC"),
                                       ("detection_acc", "detection accuracy"))):
        for i, v in enumerate(variants):
            vals = [m[f"{v}/{s}/{key}"] for s in sets]
            ax.bar([j + (i - (len(variants) - 1) / 2) * width for j in range(len(sets))], vals, width,
                   color=VARIANT_COLORS[v], label=VARIANT_NAMES[v])
        ax.set_xticks(range(len(sets)))
        ax.set_xticklabels([s + (" (seen)" if s == cfg["seen"] else "") for s in sets], rotation=20, fontsize=8)
        ax.set_ylabel(label + " (%)")
        ax.set_ylim(0, 102)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("in-distribution test accuracy: " + ", ".join(
        f"{v} {m[f'{v}/test_acc']:.2f}%" for v in variants), fontsize=9)
    return plotting.save(fig, out / "fig4_detection_bars")


def msp_histograms(record, out):
    """Max-softmax histograms, in-distribution test set vs each OOD set, per variant."""
    h = record.result("histograms")
    variants = [v for v in VARIANT_NAMES if v in h]
    sets = [k for k in h[variants[0]] if k not in ("edges", "in")]
    edges = h[variants[0]]["edges"]
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    w = edges[1] - edges[0]
    fig, axes = plotting.subplots(len(variants), len(sets), figsize=(2.6 * len(sets), 1.9 * len(variants)),
                                  sharex=True, squeeze=False)
    for i, v in enumerate(variants):
        n_in = sum(h[v]["in"])
        for j, s in enumerate(sets):
            ax = axes[i][j]
            n_out = sum(h[v][s])
            ax.bar(centers, [c / n_in for c in h[v]["in"]], w, color="#1f77b4", alpha=0.6, label="in (test)")
            ax.bar(centers, [c / n_out for c in h[v][s]], w, color="#d62728", alpha=0.6, label="out")
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 1.1)
            if i == 0:
                ax.set_title(s, fontsize=9)
            if j == 0:
                ax.set_ylabel(VARIANT_NAMES[v], fontsize=8)
    axes[0][0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("max softmax")
    return plotting.save(fig, out / "msp_histograms")


def gan_samples(record, out):
    """64 samples of the ordinary DCGAN and of the jointly trained GAN (Fig. 3 right)."""
    s = record.result("samples")
    fig, axes = plotting.subplots(1, 2, figsize=(9, 4.8))
    for ax, name in zip(axes, ("ordinary", "joint")):
        ax.imshow(image_grid(s[name][:64]).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title("ordinary GAN" if name == "ordinary" else "joint GAN (Algorithm 1)", fontsize=10)
        ax.axis("off")
    return plotting.save(fig, out / "fig3_mnist_gan_samples")
