"""Figures for multi_perturbation_mnist, each regenerated from a run's saved results."""

from __future__ import annotations

from common import plotting

NAMES = {"natural": "natural", "adv_linf": "Adv-inf", "adv_l1": "Adv-1", "adv_l2": "Adv-2",
         "adv_avg": "Adv-avg", "adv_max": "Adv-max"}
COLORS = {"natural": "#7f7f7f", "adv_linf": "#d95f02", "adv_l1": "#7570b3", "adv_l2": "#e7298a",
          "adv_avg": "#66a61e", "adv_max": "#1b9e77"}
NORM = {"linf": "L-inf", "l1": "L1", "l2": "L2"}


def accuracy_table(record, out):
    """Accuracy (%) of each network (rows) clean, under each norm's attack at its eps, and
    against the union of the three (the paper's Table layout); where AutoAttack ran, also
    the per-image worst case of PGD and AutoAttack at L-inf and L2 and on the union."""
    m, cfg = record.metrics, record.result("config")
    eps = cfg["train"]["eps"]
    models = [n for n in cfg["setup"]["models"] if f"{n}/clean" in m]
    cols = ["clean", "linf", "l1", "l2", "union"]
    heads = ["clean", f"L-inf {eps['linf']:g}", f"L1 {eps['l1']:g}", f"L2 {eps['l2']:g}", "all (union)"]
    if any(f"{n}/union_worst" in m for n in models):
        cols += ["linf_worst", "l2_worst", "union_worst"]
        heads += ["L-inf\n+AutoAttack", "L2\n+AutoAttack", "union\n+AutoAttack"]
    values = [[m.get(f"{n}/{c}") for c in cols] for n in models]
    fig, ax = plotting.subplots(1, 1, figsize=(1.3 * len(cols) + 0.3, 0.55 * len(models) + 1.4))
    grid = [[v if v is not None else float("nan") for v in row] for row in values]
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, "-" if v is None else f"{v:.1f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(cols)), heads, fontsize=8)
    ax.set_yticks(range(len(models)), [NAMES.get(n, n) for n in models], fontsize=8)
    ax.grid(False)
    ev = cfg["evaluate"]
    aa = f"; AutoAttack ({ev['autoattack']})" if len(cols) > 5 else ""
    ax.set_title(f"accuracy (%), {cfg['setup']['eval_images']} test images; PGD/SLIDE "
                 f"{ev['eval_steps']} steps x {ev['eval_restarts']} restarts{aa}", fontsize=9)
    return plotting.save(fig, out / "accuracy_table")


def accuracy_vs_eps(record, out):
    """Accuracy vs eps under each norm's attack, for every network."""
    curves, cfg = record.result("curves"), record.result("config")
    fig, axes = plotting.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, norm in zip(axes, ("linf", "l1", "l2")):
        for name, c in curves.items():
            cn = c.get(norm)
            if cn:
                ax.plot(cn["eps"], cn["accuracy"], "o-", ms=4, color=COLORS.get(name),
                        label=NAMES.get(name, name))
        ax.axvline(cfg["train"]["eps"][norm], color="gray", ls=":", lw=1)
        ax.set_xlabel(f"{NORM[norm]} eps (dotted: the training eps)")
        ax.set_ylim(-2, 102)
        ev = cfg["evaluate"]
        ax.set_title(f"{NORM[norm]} {'SLIDE' if norm == 'l1' else 'PGD'}-{ev['curve_steps']}, "
                     f"{cfg['setup']['curve_images']} images", fontsize=9)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=7)
    return plotting.save(fig, out / "accuracy_vs_eps")


def adversarial_examples(record, out):
    """Test images and their L-inf, L1, L2 adversarials against one network (Adv-max by
    default); titles: predicted class (red = wrong)."""
    ex, cfg = record.result("examples"), record.result("config")
    eps = cfg["train"]["eps"]
    rows = [("clean", ex["x"], ex["pred_clean"])] + [
        (f"{NORM[n]} {eps[n]:g}", ex[f"{n}/adv"], ex[f"{n}/pred"]) for n in ("linf", "l1", "l2")]
    model = cfg.get("examples_model") or "?"
    fig = plotting.prediction_grid(rows, ex["y"], f"adversarial examples against {NAMES.get(model, model)} "
                                   f"(titles: predicted class, red = wrong)")
    return plotting.save(fig, out / "adversarial_examples")


def training_curves(record, out):
    """Held-out accuracy under each norm's training attack after every epoch."""
    hist = record.result("histories")
    fig, axes = plotting.subplots(1, 4, figsize=(15, 3.4), sharey=True)
    for ax, key in zip(axes, ("clean", "linf", "l1", "l2")):
        for name, h in hist.items():
            ax.plot([r["epoch"] for r in h], [r[key] for r in h], "o-", ms=3,
                    color=COLORS.get(name), label=NAMES.get(name, name))
        ax.set_title("clean" if key == "clean" else f"{NORM[key]} training attack", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[-1].legend(fontsize=7)
    return plotting.save(fig, out / "training_curves")
