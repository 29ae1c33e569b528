"""Figures for natural_adversarial_mnist, each regenerated from a run's saved results:
Fig. 1 (x, G(I(x)), natural adversaries, FGSM), the Fig.-4 analogue (Delta z against
classifier accuracy), GAN samples with the judge's labels and the training curves,
and the Delta z distributions of LeNet and the random forest."""

from __future__ import annotations

import math

from common import plotting


def natural_vs_fgsm(record, out):
    """Fig. 1: per test image, x; its reconstruction G(I(x)); the natural adversary
    against LeNet and against the random forest (hybrid search; Delta z in the row
    label); FGSM against LeNet.  Titles: the target classifier's label (red: changed)."""
    f = record.result("figure1")
    y = f["y"]
    n = len(y)
    if n == 0:
        fig, ax = plotting.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no image valid for both classifiers", ha="center")
        return plotting.save(fig, out / "natural_vs_fgsm")
    dl = ", ".join(f"{v:.2f}" for v in f["dz_lenet"].tolist())
    dr = ", ".join(f"{v:.2f}" for v in f["dz_rf"].tolist())
    rows = [("x (label)", f["x"], y),
            ("G(I(x)) / LeNet", f["x_rec"], f["pred_rec_lenet"]),
            ("natural adv.\nvs LeNet", f["lenet_adv"], f["pred_lenet_adv"]),
            ("natural adv.\nvs RF", f["rf_adv"], f["pred_rf_adv"]),
            ("FGSM vs LeNet", f["fgsm"], f["pred_fgsm"])]
    fig = plotting.prediction_grid(rows, y, "Natural adversaries (latent search) vs FGSM on MNIST; "
                                   f"dz LeNet: {dl}; dz RF: {dr}", label_size=7)
    return plotting.save(fig, out / "natural_vs_fgsm")


def dz_vs_accuracy(record, out):
    """Fig.-4 analogue: mean Delta z of the hybrid search (on the test images valid for
    every snapshot) against test accuracy, for LeNet snapshots along its training, and
    the random forest (its own valid images) for reference."""
    d = record.result("fig4")
    fig, ax = plotting.subplots(figsize=(4.6, 3.6))
    ax.plot(d["acc"], d["dz_common"], "o-", color="#1b9e77", label=f"LeNet snapshots ({d['images']} images)")
    for a, z, s in zip(d["acc"], d["dz_common"], d["steps"]):
        if not (math.isnan(a) or z is None or math.isnan(z)):
            ax.annotate(f"{s} upd.", (a, z), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([d["rf_acc"]], [d["rf_dz"]], "s", color="#d95f02", label="random forest")
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("mean Delta z (hybrid search)")
    ax.set_title("Delta z grows with classifier accuracy? (Fig. 4 analogue)", fontsize=9)
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "dz_vs_accuracy")


def gan_samples(record, out):
    """64 WGAN-GP samples titled with the judge classifier's label, and the training
    curves (critic's Wasserstein estimate, gradient penalty, inverter loss per epoch)."""
    from common.gan import image_grid

    s = record.result("samples")
    h = record.result("history")
    fig, (ax0, ax) = plotting.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [1, 1]})
    ax0.imshow(image_grid(s["images"], 8, pad=2).numpy(), cmap="gray", vmin=0, vmax=1)
    for i, lab in enumerate(s["judge"].tolist()):  # the judge's label at each cell's corner
        r, c = divmod(i, 8)
        ax0.text(2 + c * 30 + 1, 2 + r * 30 + 5, str(lab), color="#e7298a", fontsize=6)
    ax0.set_xticks([]), ax0.set_yticks([])
    it = [r["iterations"] for r in h]
    for key, label in (("d_wasserstein", "critic W estimate"), ("d_gp", "gradient penalty"),
                       ("inv_loss", "inverter loss")):
        if h and key in h[0]:
            ax.plot(it, [r[key] for r in h], "o-", ms=3, label=label)
    ax.set_xlabel("generator iterations")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.legend(fontsize=7)
    ax.set_title("training (epoch means)", fontsize=9)
    fig.suptitle("WGAN-GP samples (title: judge classifier's label)", fontsize=9)
    return plotting.save(fig, out / "gan_samples")


def dz_histogram(record, out):
    """Delta z of the hybrid search per image, LeNet vs random forest (each on its own
    valid images), and the iterative search's on its images."""
    res = record.result("search")
    fig, ax = plotting.subplots(figsize=(4.8, 3.4))
    for name, color in (("lenet", "#1b9e77"), ("rf", "#d95f02")):
        d = [v for v in res[name]["d"] if v is not None]
        if d:
            ax.hist(d, bins=20, alpha=0.5, color=color, label=f"{name} hybrid (mean {sum(d) / len(d):.2f})")
        it = [v for v in res.get(f"{name}/iterative", {}).get("d", []) if v is not None]
        if it:
            ax.hist(it, bins=20, histtype="step", color=color, label=f"{name} iterative (mean {sum(it) / len(it):.2f})")
    ax.set_xlabel("Delta z = ||z* - I(x)||")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    ax.set_title("Natural-adversary distance in latent space", fontsize=9)
    return plotting.save(fig, out / "dz_histogram")
