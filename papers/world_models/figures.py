"""Figures for world_models_doom, each regenerated from a run's saved results: V's
reconstructions, a decoded dream rollout (strip + GIF), CMA-ES fitness per
generation, and the Table 2 analogue (virtual vs actual score per temperature)."""

from __future__ import annotations

import numpy as np

from common import plotting


def vae_reconstructions(record, out):
    """Eight collected frames (top) and V's reconstructions (bottom)."""
    s = record.result("vae_samples")
    frames, recon = s["frames"].numpy(), s["recon"].numpy()
    n = len(frames)
    fig, axes = plotting.subplots(2, n, figsize=(1.3 * n, 2.9))
    for i in range(n):
        for r, img in enumerate((frames[i], recon[i])):
            ax = axes[r, i]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, 0].set_ylabel("frame")
        axes[1, 0].set_ylabel("V(frame)")
    fig.suptitle("V: 64x64 frames and their reconstructions", fontsize=9)
    return plotting.save(fig, out / "vae_reconstructions", dpi=80)


def dream_rollout(record, out):
    """M's dream at tau 1.15 with the trained C, decoded by V: every 4th frame as a
    strip, and every frame as a small GIF (dream_rollout.gif)."""
    import imageio.v2 as imageio

    d = record.result("dream")
    frames = d["frames"].numpy()
    cfg = record.result("scores")["configs"][int(d["config"])]
    imageio.mimsave(out / "dream_rollout.gif", list(frames), duration=0.08, loop=0)
    show = frames[::4][:16]
    fig, axes = plotting.subplots(1, len(show), figsize=(1.1 * len(show), 1.5))
    axes = np.atleast_1d(axes)
    for i, (ax, img) in enumerate(zip(axes, show)):
        ax.imshow(img, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"t={4 * i}", fontsize=7)
    fig.suptitle(f"Dream rollout decoded by V (controller {cfg[0]}, tau {cfg[1]:g}; "
                 f"{len(frames)} steps)", fontsize=9)
    return plotting.save(fig, out / "dream_rollout", dpi=80)


def cma_progress(record, out):
    """CMA-ES in the dream: mean (line), best (dashed) and the population's spread
    (mean +- std, band) of the fitness per generation, one panel per controller."""
    hist = record.result("history")["cma"]
    names = list(hist)
    fig, axes = plotting.subplots(1, len(names), figsize=(2.8 * len(names), 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        h = hist[name]
        g = [r["gen"] + 1 for r in h]
        mean = np.array([r["mean"] for r in h])
        std = np.array([r["std"] for r in h])
        ax.fill_between(g, mean - std, mean + std, alpha=0.25)
        ax.plot(g, mean, label="mean")
        ax.plot(g, [r["best"] for r in h], "--", label="best")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("generation")
    axes[0].set_ylabel("dream return (steps survived)")
    axes[0].legend(fontsize=7)
    return plotting.save(fig, out / "cma_progress")


def table2(record, out):
    """Virtual (dream) vs actual (real game) score per temperature for the [z, c, h]
    controller, mean with bootstrap 95% CI; the ablations at their tau; the measured
    random policy as a band."""
    m = record.metrics
    configs = record.result("scores")["configs"]
    fig, ax = plotting.subplots(figsize=(6.4, 3.4))
    labels = [f"{k}\ntau {t:g}" for k, t in configs]
    x = np.arange(len(configs))
    for off, which, color in ((-0.18, "virtual", "#7570b3"), (0.18, "actual", "#d95f02")):
        mean = np.array([m[f"{k}/tau{t:g}/{which}_mean"] for k, t in configs])
        lo = np.array([m[f"{k}/tau{t:g}/{which}_ci_low"] for k, t in configs])
        hi = np.array([m[f"{k}/tau{t:g}/{which}_ci_high"] for k, t in configs])
        ax.bar(x + off, mean, 0.36, color=color, label=f"{which} (dream)" if which == "virtual" else "actual (game)")
        ax.errorbar(x + off, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="k", capsize=2, lw=0.8)
    r, rl, rh = m["random/actual_mean"], m["random/actual_ci_low"], m["random/actual_ci_high"]
    ax.axhspan(rl, rh, color="grey", alpha=0.3)
    ax.axhline(r, color="grey", lw=1, label=f"random policy ({r:.0f})")
    ax.axhline(750, color="green", lw=0.8, ls=":", label="solved (750)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("steps survived (mean, 95% CI)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Table 2 analogue: trained in the dream, scored in the dream and the game", fontsize=9)
    return plotting.save(fig, out / "table2")
