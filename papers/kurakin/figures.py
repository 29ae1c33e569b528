"""Figures for kurakin_mnist, each regenerated from a run's saved results."""

from __future__ import annotations

from common import plotting

STYLE = {"natural": ("natural training", "#7f7f7f"),
         "fgsm": ("adv. training: FGSM, true label", "#d95f02"),
         "fgsm_pred": ("adv. training: FGSM, predicted label", "#7570b3"),
         "step_ll": ("adv. training: step l.l.", "#1b9e77")}
ATTACK = {"fgsm": "FGSM (true label)", "fgsm_pred": "FGSM (predicted label)", "step_ll": "step l.l.",
          "bim": "BIM (iterative)", "pgd": "PGD-40 (random start)"}


def accuracy_over_training(record, out):
    """Clean vs FGSM (true-label) accuracy on held-out images after each epoch: label
    leaking shows as the dashed line above the solid one."""
    hist, cfg = record.result("histories"), record.result("config")
    fig, ax = plotting.subplots(1, 1, figsize=(6.8, 4.2))
    for name, h in hist.items():
        label, color = STYLE.get(name, (name, None))
        ep = [r["epoch"] for r in h]
        ax.plot(ep, [r["clean"] for r in h], "o-", color=color, label=f"{label}: clean")
        ax.plot(ep, [r["fgsm"] for r in h], "s--", color=color, label=f"{label}: FGSM")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{cfg['setup']['monitor_images']} held-out test images; FGSM (true label) at "
                 f"eps {cfg['train']['eps_max']}", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.17))  # below the axes: the curves fill the plot
    return plotting.save(fig, out / "accuracy_over_training")


def accuracy_vs_eps(record, out):
    """Accuracy vs L-inf eps under each attack, one panel per training method."""
    m, cfg = record.metrics, record.result("config")
    names = [n for n in cfg["setup"]["models"] if f"{n}/clean" in m]
    grid = cfg["evaluate"]["eps_grid"]
    fig, axes = plotting.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False,
                                  sharey=True)
    colors = {"fgsm": "#d95f02", "fgsm_pred": "#7570b3", "step_ll": "#1b9e77", "bim": "#e7298a",
              "pgd": "#444444"}
    for ax, name in zip(axes[0], names):
        ax.axhline(m[f"{name}/clean"], color="black", lw=1, ls=":", label="clean")
        for attack, label in ATTACK.items():
            ys = [m.get(f"{name}/{attack}_{e:g}") for e in grid]
            ax.plot(grid, ys, "o-" if attack in ("fgsm", "fgsm_pred", "step_ll") else "s--",
                    color=colors[attack], label=label, ms=4)
        ax.set_title(STYLE.get(name, (name,))[0], fontsize=9)
        ax.set_xlabel("L-inf eps")
        ax.set_ylim(-2, 102)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=6.5, loc="lower left")
    return plotting.save(fig, out / "accuracy_vs_eps")


def fgsm_examples(record, out):
    """FGSM (true label) adversarials against each network; titles: predicted class
    (red = wrong).  A leaking network classifies its own FGSM images correctly."""
    ex = record.result("examples")
    x, y = ex["x"], ex["y"]
    names = [k.split("/")[0] for k in ex if k.endswith("/adv")]
    rows = [("clean", x, y)] + [(STYLE.get(nm, (nm,))[0].replace("adv. training: ", ""),
                                 ex[f"{nm}/adv"], ex[f"{nm}/pred_adv"]) for nm in names]
    fig = plotting.prediction_grid(
        rows, y, f"FGSM (true label) at eps {float(ex['eps']):g} against each network "
        f"(titles: its prediction; first row: true class)", label_size=6.5)
    return plotting.save(fig, out / "fgsm_examples")
