"""Figures for crown_mnist, each regenerated from a run's saved results: the paper's
two tables (as images: mean certified radius per model x norm x target) and certified
vs attack radius per image."""

from __future__ import annotations

import statistics

from common import plotting

TARGETS = ("runner_up", "random", "least_likely")
NORM_NAME = {"linf": "L-inf", "l2": "L2", "l1": "L1"}


def _mean(v):
    finite = [x for x in v if x != float("inf")]
    return statistics.fmean(finite) if finite else float("nan")


def _rows(cert, relu: bool):
    rows = []
    for name, res in cert.items():
        if name.startswith("relu") != relu:
            continue
        for norm, by in res["radii"].items():
            for i, t in enumerate(TARGETS):
                m = {k: _mean(v[i]) for k, v in by.items()}
                s = res["seconds"][norm]
                row = [name, NORM_NAME[norm], t.replace("_", "-"), f"{m['ibp']:.4f}", f"{m['lipschitz']:.4f}"]
                if relu:
                    imp = 100 * (m["crown"] / m["fastlin"] - 1) if m["fastlin"] > 0 else float("nan")
                    row += [f"{m['fastlin']:.4f}", f"{m['crown']:.4f}", f"{imp:+.1f}%",
                            f"{1e3 * s['fastlin']:.1f}", f"{1e3 * s['crown']:.1f}"]
                else:
                    row += [f"{m['crown']:.4f}", f"{1e3 * s['crown']:.1f}"]
                row.append(f"{m['attack']:.4f}")
                rows.append(row)
    return rows


def _table(rows, header, title, out):
    fig, ax = plotting.subplots(figsize=(1.05 * len(header) + 1.5, 0.24 * len(rows) + 0.9))
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="right")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1, 1.15)
    ax.set_title(title, fontsize=9)
    return plotting.save(fig, out)


def relu_table(record, out):
    """Fast-Lin vs CROWN-Ada (ReLU nets): mean certified radius over the certified
    images, % improvement, ms per image and target (one thread); IBP, global
    Lipschitz and the PGD attack radius (an upper bound) beside them."""
    cert = record.result("certification")
    header = ["model", "norm", "target", "IBP", "Lipschitz", "Fast-Lin", "CROWN-Ada", "improv.",
              "ms FL", "ms CROWN", "PGD attack"]
    return _table(_rows(cert, True), header,
                  "Certified radius (mean), ReLU MLPs: Fast-Lin vs CROWN-Ada; attack = upper bound",
                  out / "relu_table")


def general_table(record, out):
    """CROWN-general on tanh / sigmoid / arctan nets, with IBP, global Lipschitz and the attack."""
    cert = record.result("certification")
    header = ["model", "norm", "target", "IBP", "Lipschitz", "CROWN-general", "ms CROWN", "PGD attack"]
    return _table(_rows(cert, False), header,
                  "Certified radius (mean), smooth activations: CROWN-general; attack = upper bound",
                  out / "general_table")


def certified_vs_attack(record, out):
    """Per image and target: CROWN's certified radius (and Fast-Lin's, IBP's) against
    the attack radius; every point must lie below the diagonal."""
    cert = record.result("certification")
    norms = list(next(iter(cert.values()))["radii"])
    fig, axes = plotting.subplots(1, len(norms), figsize=(4.2 * len(norms), 3.8))
    axes = axes if len(norms) > 1 else [axes]
    style = {"ibp": ("IBP", "#999999", "x"), "fastlin": ("Fast-Lin", "#d95f02", "s"),
             "crown": ("CROWN", "#1b9e77", "o")}
    for ax, norm in zip(axes, norms):
        hi = 0.0
        for k, (label, color, marker) in style.items():
            xs, ys = [], []
            for res in cert.values():
                by = res["radii"][norm]
                if k not in by:
                    continue
                for i in range(len(TARGETS)):
                    for a, c in zip(by["attack"][i], by[k][i]):
                        if a != float("inf"):
                            xs.append(a)
                            ys.append(c)
            ax.scatter(xs, ys, s=6, alpha=0.5, color=color, marker=marker, label=label)
            hi = max([hi, *xs])
        ax.plot([0, hi], [0, hi], "k:", lw=1, label="certified = attack")
        ax.set_xlabel(f"PGD attack radius ({NORM_NAME[norm]}, upper bound)")
        ax.set_ylabel("certified radius (lower bound)")
        ax.set_title(f"{NORM_NAME[norm]}: every model, image and target", fontsize=9)
        ax.legend(fontsize=7)
    return plotting.save(fig, out / "certified_vs_attack")
