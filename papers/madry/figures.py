"""Figures for madry_mnist, each regenerated from a run's saved results."""

from __future__ import annotations

from common import plotting

STYLE = {"natural": ("natural training", "#d95f02"), "adversarial": ("PGD adversarial training", "#1b9e77")}
NORM_NAME = {"linf": "L-inf", "l2": "L2"}


def accuracy_vs_eps(record, out):
    """Accuracy under PGD vs the perturbation budget, per norm, for both networks."""
    curves, cfg = record.result("curves"), record.result("config")
    ev = cfg["evaluate"]
    fig, axes = plotting.subplots(1, 2, figsize=(10.5, 3.8))
    for ax, norm in zip(axes, ("linf", "l2")):
        for kind, (name, color) in STYLE.items():
            c = curves.get(kind, {}).get(norm)
            if c:
                ax.plot(c["eps"], c["accuracy"], "o-", color=color, label=name)
        if norm == "linf":
            ax.axvline(ev["eps"], color="gray", ls=":", lw=1)
            ax.plot([ev["eps"]], [92.52], "k*", ms=10,
                    label="Madry et al. released model, PGD-100 (leaderboard)")
        ax.set_xlabel(f"{NORM_NAME[norm]} budget eps")
        ax.set_ylabel("accuracy under attack (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{NORM_NAME[norm]} PGD-{ev['curve_steps']} (step 2.5 eps/{ev['curve_steps']}), "
                     f"{cfg['setup']['curve_images']} test images", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    return plotting.save(fig, out / "accuracy_vs_eps")


def adversarial_examples(record, out):
    """Test images and their PGD adversarials (eps 0.3) against each network; titles
    give the predicted class (red: wrong)."""
    ex, cfg = record.result("examples"), record.result("config")
    x, y = ex["x"], ex["y"]
    rows = [("clean", x, ex["natural/pred_clean"])]
    for kind in ("natural", "adversarial"):
        if f"{kind}/adv" in ex:
            rows.append((f"vs {kind}", ex[f"{kind}/adv"], ex[f"{kind}/pred_adv"]))
    fig = plotting.prediction_grid(
        rows, y, f"PGD-{cfg['evaluate']['steps']} adversarials at L-inf eps = {cfg['evaluate']['eps']} "
        f"(titles: predicted class, red = wrong)")
    return plotting.save(fig, out / "adversarial_examples")


def training_curves(record, out):
    """Training loss and held-out accuracy (clean and under the training attack) per epoch."""
    hist, cfg = record.result("histories"), record.result("config")
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(10.5, 3.6))
    for kind, (name, color) in STYLE.items():
        h = hist.get(kind) or []
        ep = [r["epoch"] for r in h]
        a1.plot(ep, [r["train_loss"] for r in h], "o-", color=color, label=name)
        a2.plot(ep, [r["monitor_clean"] for r in h], "o-", color=color, label=f"{name}: clean")
        a2.plot(ep, [r["monitor_pgd"] for r in h], "s--", color=color, label=f"{name}: PGD")
    t = cfg["train"]
    a1.set_title("training loss (on the images trained on)", fontsize=9)
    a2.set_title(f"{cfg['setup']['monitor_images']} held-out test images; PGD-{t['steps']} at eps {t['eps']}",
                 fontsize=9)
    a2.set_ylim(-2, 102)
    for ax in (a1, a2):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    a2.set_ylabel("accuracy (%)")
    return plotting.save(fig, out / "training_curves")
