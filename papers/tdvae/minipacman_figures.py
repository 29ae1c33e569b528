"""Figures of tdvae_minipacman, each regenerated from a run's saved results.

Observation windows are drawn with their three channels as colours: red = ghost, green =
food, blue = wall (so black is an empty corridor, yellow food under the ghost); Pacman is
the white dot in the centre."""

from __future__ import annotations

from common import plotting

NAMES = {"tdvae": "TD-VAE (sequential)", "filtering": "filtering", "mean_field": "mean-field"}
COLORS = {"tdvae": "#1b9e77", "filtering": "#d95f02", "mean_field": "#7570b3"}


def _rgb(window):
    """(3, H, W) wall/food/ghost in [0, 1] -> (H, W, 3) RGB image (red ghost, green food, blue wall)."""
    return window[[2, 1, 0]].permute(1, 2, 0).clamp(0, 1).numpy()


def _window(ax, window, title=None, fontsize=6):
    ax.imshow(_rgb(window), interpolation="nearest")
    c = window.shape[-1] // 2
    ax.plot([c], [c], "o", color="white", ms=2.5)
    ax.set_xticks([]), ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)


def scores(record, out):
    """Test NLL (importance-sampled) and -ELBO per model, nats per time step: lines are means
    over seeds, dots single seeds; lower is better (the paper's ordering: TD-VAE < filtering
    < mean-field)."""
    res = record.result("minipacman_scores")
    models, seeds = res["models"], res["seeds"]
    fig, axes = plotting.subplots(1, 2, figsize=(9, 3.6))
    panels = [("nll", "importance-sampled NLL"), ("neg_elbo", "negative ELBO")]
    for ax, (score, label) in zip(axes, panels):
        for i, m in enumerate(models):
            vals = [res["scores"][f"s{s}/{m}"][score] for s in seeds]
            ax.hlines(sum(vals) / len(vals), i - 0.3, i + 0.3, color=COLORS.get(m), lw=2.5)
            ax.plot([i + 0.12 * (j - (len(vals) - 1) / 2) for j in range(len(vals))], vals, "o",
                    color=COLORS.get(m), ms=5, mec="k", mew=0.5)
        allv = [res["scores"][f"s{s}/{m}"][score] for s in seeds for m in models]
        lo, hi = min(allv), max(allv)
        pad = max(0.5 * (hi - lo), 0.02 * abs(hi) + 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([NAMES.get(m, m) for m in models], fontsize=8)
        ax.set_ylabel(f"test {label} (nats / step)")
    fig.suptitle(f"mini-Pacman, {len(seeds)} seed(s), {res['length']}-step sequences; independent-bit "
                 f"baseline {res['baseline_marginal_nll']:.2f} nats / step", fontsize=9)
    return plotting.save(fig, out / "minipacman_scores")


def observations(record, out):
    """Example test sequences: the full maze (walls, food at the start, Pacman's path from
    the circle to the square, the ghost's positions as crosses) and the 5 x 5 windows the
    models see, one per time step."""
    ex = record.result("minipacman_examples")
    obs, pac, ghost, food, walls = ex["obs"], ex["pac"], ex["ghost"], ex["food"], ex["walls"]
    rows, T = min(4, obs.shape[0]), obs.shape[1]
    fig, axes = plotting.subplots(rows, T + 1, figsize=(0.62 * T + 3.2, 1.45 * rows), squeeze=False,
                                  gridspec_kw={"width_ratios": [4.5] + [1] * T})
    for i in range(rows):
        ax = axes[i][0]
        ax.imshow(walls.float().numpy(), cmap="Blues", vmin=0, vmax=1.6, interpolation="nearest")
        fr, fc = food[i].nonzero(as_tuple=True)
        ax.plot(fc.numpy(), fr.numpy(), ".", color="#c9a400", ms=2)
        ax.plot(pac[i, :, 1].numpy(), pac[i, :, 0].numpy(), "-", color="k", lw=1.2)
        ax.plot(pac[i, 0, 1], pac[i, 0, 0], "o", color="k", ms=4)
        ax.plot(pac[i, -1, 1], pac[i, -1, 0], "s", color="k", ms=4)
        ax.plot(ghost[i, :, 1].numpy(), ghost[i, :, 0].numpy(), "x", color="#d62728", ms=3)
        ax.set_xticks([]), ax.set_yticks([])
        for t in range(T):
            _window(axes[i][t + 1], obs[i, t], f"t={t + 1}" if i == 0 else None)
    fig.suptitle("mini-Pacman test sequences: maze and path (left), observed windows "
                 "(red ghost, green food, blue wall, white Pacman)", fontsize=9)
    return plotting.save(fig, out / "minipacman_observations")


def rollouts(record, out):
    """TD-VAE (first seed) rollouts: z ~ p_B(b_t) after the first observations, then steps of
    p_T, decoded to window probabilities, against the observed continuation."""
    ex, cfg = record.result("minipacman_examples"), record.result("config")
    obs, pred, t0 = ex["obs"], ex["rollout"], cfg["rollout_from"]
    n, samples, J = min(2, pred.shape[0]), pred.shape[1], pred.shape[2]
    cols = t0 + J
    fig, axes = plotting.subplots(n * (samples + 1), cols, figsize=(0.62 * cols, 0.7 * n * (samples + 1)),
                                  squeeze=False)
    for i in range(n):
        top = i * (samples + 1)
        for t in range(cols):
            _window(axes[top][t], obs[i, t], f"t={t + 1}" if i == 0 else None)
            if t >= t0:
                axes[top][t].patch.set_alpha(0.4)
            for s in range(samples):
                ax = axes[top + 1 + s][t]
                if t < t0:
                    ax.axis("off")
                else:
                    _window(ax, pred[i, s, t - t0])
        axes[top][0].set_ylabel(f"seq {i + 1}\nobserved", fontsize=6)
        for s in range(samples):
            axes[top + 1 + s][t0].set_ylabel(f"rollout {s + 1}", fontsize=6)
    fig.suptitle(f"TD-VAE rollouts from the belief after {t0} observations (rows under each sequence); "
                 "top rows: the actual windows", fontsize=8)
    return plotting.save(fig, out / "minipacman_rollouts")
