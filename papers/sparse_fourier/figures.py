"""Figures for sparse_fourier_l0_*, each regenerated from a run's saved results:
original / adversarial / IHT-recovered triplets, accuracy against k under each
attack with and without recovery, and the synthetic recovery phase diagram."""

from __future__ import annotations

from common import plotting

ATTACKS = {"jsma": "JSMA", "cw_l0": "C&W-L0"}


def triplets(record, out):
    """Rows: original, adversarial (attack on the undefended top-k model), IHT-recovered
    top-k image; titles: label / prediction (red where wrong)."""
    ex = record.result("examples")
    attacks = [a for a in ATTACKS if a in ex]
    m = len(ex[attacks[0]]["label"])
    fig, axes = plotting.subplots(3 * len(attacks), m, figsize=(1.3 * m, 1.45 * 3 * len(attacks)),
                                  squeeze=False)
    for ai, a in enumerate(attacks):
        e = ex[a]
        rows = (("original", e["original"], e["label"]), ("adversarial", e["adversarial"], e["pred_adv"]),
                ("IHT-recovered", e["recovered"], e["pred_rec"]))
        for ri, (name, imgs, pred) in enumerate(rows):
            for j in range(m):
                ax = axes[3 * ai + ri, j]
                ax.imshow(imgs[j, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                wrong = int(pred[j]) != int(e["label"][j])
                ax.set_title(str(int(pred[j])), fontsize=8, color="red" if wrong else "black")
                if j == 0:
                    ax.set_ylabel(f"{ATTACKS[a]}\n{name}", fontsize=7)
    fig.suptitle(f"top-{ex['k']} DCT model: original / adversarial / recovered (title: prediction)", fontsize=9)
    return plotting.save(fig, out / "triplets")


def accuracy_vs_k(record, out):
    """Accuracy (%) on the attacked images against k, per attack: undefended, plain
    top-k projection, IHT (t = budget) and IHT with mis-specified t; clean beside."""
    res, cfg = record.result("attacks"), record.result("config")
    ks = list(cfg["setup"]["ks"])
    fig, axes = plotting.subplots(1, len(ATTACKS), figsize=(5 * len(ATTACKS), 3.6), squeeze=False)
    metrics = record.metrics
    for ax, (a, title) in zip(axes[0], ATTACKS.items()):
        keys = [k for k in res[f"k{ks[0]}"][a] if k in ("undefended", "projection", "iht") or k.startswith("iht_t")]
        for key in keys:
            label = {"iht": f"IHT, t = {cfg['attack']['pixels']}", "undefended": "undefended",
                     "projection": "top-k projection only"}.get(key, f"IHT, t = {key[5:]} (mis-specified)")
            ax.plot(ks, [res[f"k{k}"][a][key] for k in ks], marker="o", label=label)
        ax.plot(ks, [metrics.get(f"k{k}/clean", float("nan")) for k in ks], "k--", label="clean (projection)")
        if "bpda_identity/iht" in metrics and a == "jsma":
            ax.plot([cfg["attack"]["bpda_k"]], [metrics["bpda_identity/iht"]], "r*", ms=12,
                    label="IHT vs adaptive BPDA-JSMA (extension)")
        ax.set_xlabel("k (DCT coefficients kept)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{title}, budget {cfg['attack']['pixels']} pixels, "
                     f"{res[f'k{ks[0]}'][a]['images']} images", fontsize=9)
        ax.legend(fontsize=6)
    return plotting.save(fig, out / "accuracy_vs_k")


def phase_diagram(record, out):
    """Synthetic exactly k-sparse DCT images + t spikes of arbitrary magnitude: the
    fraction of trials IHT recovers exactly (relative error < 1e-6)."""
    ph = record.result("synthetic")
    grid = ph["grid"]
    import numpy as np

    z = np.array([[ph["rate"][f"{k},{t}"] for t in grid] for k in grid])
    fig, ax = plotting.subplots(figsize=(4.6, 3.8))
    im = ax.imshow(z, origin="lower", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(grid)), [str(g) for g in grid])
    ax.set_yticks(range(len(grid)), [str(g) for g in grid])
    ax.set_xlabel("t (corrupted pixels)")
    ax.set_ylabel("k (DCT sparsity)")
    for i in range(len(grid)):
        for j in range(len(grid)):
            ax.text(j, i, f"{z[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if z[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="P(exact recovery)")
    ax.set_title("IHT exact recovery, 28x28 DCT (synthetic)", fontsize=9)
    return plotting.save(fig, out / "phase_diagram")
