"""Figures for unrestricted_adversarial_mnist, each regenerated from a run's saved
results: the targeted grid (source x target) against the PGD-trained classifier with
the oracle's verdict on every image (the paper's MNIST figure, where the border showed
the human verdict), the AC-GAN's class-conditional samples with their quality numbers,
and the success rates per target and search."""

from __future__ import annotations

import math

from common import plotting

GREEN, RED, GREY = "#1b9e77", "#d62728", "#bbbbbb"


def _num(m: dict, key: str) -> float:
    v = m.get(key)
    return math.nan if v is None else v


def _key(name: str) -> str:
    return name.replace("/", "__")


def targeted_grid(record, out, target: str = "madry"):
    """Row = source class, column = target class: the first fooling candidate of the
    targeted search against ``target`` (the PGD-trained CNN); border green where the
    oracle labels it as the source class (a proxy success), red otherwise, with the
    oracle's label; grey empty cells: no candidate of that pair fooled.  Diagonal:
    the unattacked start g(z0, s) of the pair's first candidate."""
    res = record.result("searches")
    key = _key(f"{target}/targeted")
    if key not in res:
        key = next((k for k in res if k.endswith("__targeted")), None)
    if key is None:  # no target was attacked
        fig, ax = plotting.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no targeted search in this run", ha="center")
        return plotting.save(fig, out / "targeted_grid")
    s = res[key]
    src, tgt, fooled, orc = s["source"], s["target"], s["fooled"], s["oracle"]
    fig, axes = plotting.subplots(10, 10, figsize=(9.2, 9.8), constrained_layout=False)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.89, bottom=0.01, wspace=0.08, hspace=0.28)
    for a in range(10):
        for b in range(10):
            ax = axes[a][b]
            ax.set_xticks([])
            ax.set_yticks([])
            idx = ((src == a) & (tgt == b)).nonzero().flatten() if a != b else (src == a).nonzero().flatten()[:1]
            color, label = GREY, ""
            img = None
            if a == b and len(idx):
                img = s["x0"][idx[0], 0]
                color, label = "#444444", "start"
            elif len(idx):
                hit = idx[fooled[idx]]
                if len(hit):
                    i = hit[0]
                    img = s["x"][i, 0]
                    ok = int(orc[i]) == a
                    color, label = (GREEN if ok else RED), f"oracle {int(orc[i])}"
            if img is not None:
                ax.imshow(img.float().numpy() / 255, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow([[0.85]], cmap="gray", vmin=0, vmax=1)
            for sp in ax.spines.values():
                sp.set_edgecolor(color)
                sp.set_linewidth(2.5)
            ax.set_title(label, fontsize=6, pad=1.5, color=color if color != GREY else "black")
            if b == 0:
                ax.set_ylabel(f"source {a}", fontsize=7)
            if a == 0:
                ax.text(0.5, 1.45, f"target {b}", transform=ax.transAxes, ha="center", fontsize=7)
    m = record.metrics
    rate = _num(m, f"{target}/targeted/proxy_success")
    fool = _num(m, f"{target}/targeted/fool_rate")
    fig.suptitle(f"Targeted unrestricted adversarial examples vs the {target} CNN (rows: source, columns: "
                 f"target)\ngreen: the oracle (ensemble stand-in for humans) still sees the source; red: it does not.  "
                 f"Fooling {fool:.0f}% of attempts, proxy success {rate:.0f}% of fooling ones", fontsize=8.5, y=0.995)
    return plotting.save(fig, out / "targeted_grid")


def acgan_samples(record, out):
    """Ten class-conditional AC-GAN samples per class (row = conditioning label), with
    the sample-quality numbers: judge accuracy, per-class diversity, feature Fréchet
    distance (a proxy for FID, judge features) beside its real-data floor."""
    res = record.result("searches")["samples"]
    x, y = res["x"], res["y"]
    m = record.metrics
    fig, axes = plotting.subplots(10, 10, figsize=(6.4, 7.0), constrained_layout=False)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.88, bottom=0.01, wspace=0.05, hspace=0.05)
    for i in range(min(100, len(x))):
        ax = axes[i // 10][i % 10]
        ax.imshow(x[i, 0].float().numpy() / 255, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i % 10 == 0:
            ax.set_ylabel(str(int(y[i])), fontsize=7)
    fig.suptitle(f"AC-GAN samples ({_num(m, 'gan/iterations'):.0f} generator iterations)\n"
                 f"judge accuracy {_num(m, 'gan/judge_acc'):.1f}% (oracle {_num(m, 'gan/oracle_acc'):.1f}%), "
                 f"diversity min/mean {_num(m, 'gan/diversity_min'):.2f}/{_num(m, 'gan/diversity_mean'):.2f}, "
                 f"feature Fréchet {_num(m, 'gan/frechet'):.1f} (real floor {_num(m, 'gan/frechet_real'):.1f})",
                 fontsize=8)
    return plotting.save(fig, out / "acgan_samples")


def success_rates(record, out):
    """Per target: PGD-L-inf success (eps 0.3) against the unrestricted search's
    fool rate (share of attempts) and proxy success rate (share of fooling
    candidates the oracle labels as the source), per search mode."""
    m = record.metrics
    names = [n for n in ("plain", "madry", "certified") if f"{n}/clean" in m]
    modes = [md for md in ("targeted", "untargeted", "noise") if any(f"{n}/{md}/fool_rate" in m for n in names)]
    fig, ax = plotting.subplots(figsize=(1.8 + 2.2 * len(names), 3.8))
    width = 0.8 / (2 + 2 * len(modes))
    colors = plotting.plt().get_cmap("tab10")
    kinds = ["PGD L-inf 0.3", "PGD at the certified eps"] + [f"{md}: {w}" for md in modes
                                                             for w in ("fool rate", "proxy success")]
    for j, n in enumerate(names):
        bars = [("PGD L-inf 0.3", _num(m, f"{n}/pgd_success"))]
        if f"{n}/pgd_success_at_cert_eps" in m:
            bars.append(("PGD at the certified eps", _num(m, f"{n}/pgd_success_at_cert_eps")))
        for md in modes:
            bars += [(f"{md}: fool rate", _num(m, f"{n}/{md}/fool_rate")),
                     (f"{md}: proxy success", _num(m, f"{n}/{md}/proxy_success"))]
        for k, (label, v) in enumerate(bars):
            ax.bar(j + (k - len(bars) / 2) * width, v, width, color=colors(kinds.index(label)), label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title("Norm-bounded PGD vs unrestricted adversarial examples (oracle-judged)", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    keep = dict(zip(labels, handles))  # one entry per bar kind
    ax.legend(keep.values(), keep.keys(), fontsize=6.5, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return plotting.save(fig, out / "success_rates")
