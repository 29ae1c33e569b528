"""Figures for ami_synthetic_faces, each regenerated from a run's saved results: sample
synthetic faces with their landmark boxes, the witness search per attribute, detection
against false-positive rate (oblivious vs adaptive), the strengthening-factor sweep, and
example adversarial images."""

from __future__ import annotations

import math

from common import plotting

COLORS = {"left_eye": "#1b9e77", "right_eye": "#d95f02", "nose": "#7570b3", "mouth": "#e7298a"}
ATTACKS = {"oblivious/fgsm": ("FGSM (oblivious)", "#a6cee3", "o", "-"),
           "oblivious/pgd": ("PGD (oblivious)", "#1f78b4", "s", "-"),
           "oblivious/cw": ("C&W-L2 (oblivious)", "#33a02c", "^", "-"),
           "adaptive/pgd": ("PGD (adaptive)", "#e31a1c", "s", "--"),
           "adaptive/cw": ("C&W-L2 (adaptive)", "#ff7f00", "^", "--")}


def sample_faces(record, out):
    """Sixteen synthetic test faces (identity in the title) with the four landmark boxes
    known by construction."""
    from matplotlib.patches import Rectangle

    f = record.result("faces")
    fig, axes = plotting.subplots(2, 8, figsize=(13, 3.8))
    for i, ax in enumerate(axes.flat):
        ax.imshow(f["images"][i], cmap="gray", vmin=0, vmax=1)
        for part, (r0, c0, r1, c1) in zip(f["parts"], f["boxes"][i]):
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                   edgecolor=COLORS[part], lw=1))
        shapes = "/".join(f["shapes"][s][:2] for s in f["table"][f["labels"][i]])
        ax.set_title(f"id {f['labels'][i]}\n{shapes}", fontsize=7)
        ax.axis("off")
    fig.suptitle("Synthetic faces (proxy for VGG-Face data): boxes = left eye, right eye, nose, mouth",
                 fontsize=9)
    return plotting.save(fig, out / "sample_faces")


def witnesses(record, out):
    """Per attribute: each neuron's change under attribute substitution (x) against its
    change under attribute preservation (y), both in units of its std; witnesses
    (changed by substitution, stable under preservation) are filled."""
    w = record.result("witnesses")
    parts = [p for p in COLORS if p in w]
    fig, axes = plotting.subplots(1, len(parts), figsize=(3.4 * len(parts), 3.3))
    for ax, part in zip(axes, parts):
        ds, dp, wit = w[part]["d_sub"], w[part]["d_pres"], set(w[part]["witnesses"])
        other = [i for i in range(len(ds)) if i not in wit]
        ax.scatter([ds[i] for i in other], [dp[i] for i in other], s=10, facecolors="none",
                   edgecolors="#999999", label="other neurons")
        ax.scatter([ds[i] for i in wit], [dp[i] for i in wit], s=16, color=COLORS[part],
                   label=f"witnesses ({len(wit)})")
        hi = max(max(ds), max(dp)) * 1.05
        ax.plot([0, hi], [0, hi], "k:", lw=0.8)
        ax.set_xlabel("change under substitution (std)")
        ax.set_ylabel("change under preservation (std)")
        ax.set_title(f"{part.replace('_', ' ')} ({w['layer']})", fontsize=9)
        ax.legend(fontsize=7)
    return plotting.save(fig, out / "witnesses")


def detection_vs_fpr(record, out):
    """Detection rate against the false-positive rate on clean test images, one curve
    per attack across the strengthening factors (adaptive C&W-L2: the operating point
    only); the operating point circled; the paper's 94% / 9.91% (VGG-Face, 7 attacks)
    marked for orientation."""
    s = record.result("sweep")
    fig, ax = plotting.subplots(figsize=(6, 4.4))
    alphas = sorted(s["sweep"], key=float)
    for key, (label, color, marker, ls) in ATTACKS.items():
        if key not in s["sweep"][alphas[0]]:
            continue
        xs = [s["sweep"][a][key]["fpr"] for a in alphas]
        ys = [s["sweep"][a][key]["detection"] for a in alphas]
        ax.plot(xs, ys, ls, color=color, marker=marker, ms=4, label=label)
        op = str(s["alpha"])
        if op in s["sweep"]:
            ax.scatter([s["sweep"][op][key]["fpr"]], [s["sweep"][op][key]["detection"]], s=90,
                       facecolors="none", edgecolors="k")
    res = record.result("detection")["results"]
    if "adaptive/cw" in res and "adaptive/cw" not in s["sweep"][alphas[0]]:   # operating point only
        label, color, marker, _ = ATTACKS["adaptive/cw"]
        ax.scatter([res["adaptive/cw"]["fpr"]], [res["adaptive/cw"]["detection"]], color=color, marker=marker,
                   s=40, label=f"{label}, operating point only")
    ax.scatter([9.91], [94], marker="*", s=120, color="k", label="paper (VGG-Face): 94% at 9.91% FPR")
    ax.set_xlabel("false-positive rate on clean test faces (%)")
    ax.set_ylabel("detection rate of successful adversarials (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"AmI on synthetic faces: detection vs FPR over alpha (circle: alpha={s['alpha']:g})",
                 fontsize=9)
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "detection_vs_fpr")


def alpha_sweep(record, out):
    """Strengthening factor alpha: false-positive rate (test and validation) and the
    detection rate per attack; the dotted line marks the operating point."""
    s = record.result("sweep")
    alphas = sorted(s["sweep"], key=float)
    av = [float(a) for a in alphas]
    fig, ax = plotting.subplots(figsize=(6.4, 4.2))
    for key, (label, color, marker, ls) in ATTACKS.items():
        if key not in s["sweep"][alphas[0]]:
            continue
        ax.plot(av, [s["sweep"][a][key]["detection"] for a in alphas], ls, color=color, marker=marker,
                ms=4, label=f"detection: {label}")
    ax.plot(av, [s["sweep"][a]["oblivious/pgd"]["fpr"] for a in alphas], "k-", lw=2, label="FPR (clean test)")
    ax.plot(av, [s["sweep"][a]["val_fpr"] for a in alphas], "k:", label="FPR (clean validation)")
    ax.axvline(float(s["alpha"]), color="#666666", ls=":", lw=1)
    ax.axhline(s["target_fpr"], color="#bbbbbb", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("strengthening factor alpha (log)")
    ax.set_ylabel("%")
    ax.set_title("Strengthening-factor sweep (synthetic faces)", fontsize=9)
    ax.legend(fontsize=6.5)
    return plotting.save(fig, out / "alpha_sweep")


def adversarial_examples(record, out):
    """Clean faces and their adversarial versions per attack; title: the original
    model's label / the steered model's label (red: AmI flags it, they disagree)."""
    e = record.result("examples")
    rows = ["clean"] + [k for k in ATTACKS if k in e]
    n = len(e["clean"]["images"])
    fig, axes = plotting.subplots(len(rows), n, figsize=(1.5 * n, 1.6 * len(rows)))
    for r, key in enumerate(rows):
        for i in range(n):
            ax = axes[r][i]
            ax.imshow(e[key]["images"][i], cmap="gray", vmin=0, vmax=1)
            o, st = e[key]["orig"][i], e[key]["steered"][i]
            ax.set_title(f"{o} / {st}", fontsize=7, color="red" if o != st else "black")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(ATTACKS[key][0] if key in ATTACKS else "clean", fontsize=7)
    fig.suptitle("original / steered label (labels: " + ", ".join(map(str, e["labels"]))
                 + "; targets: " + ", ".join(map(str, e["targets"])) + ")", fontsize=8)
    return plotting.save(fig, out / "adversarial_examples")
