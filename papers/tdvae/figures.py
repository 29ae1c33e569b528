"""Figures for the TD-VAE experiments, each regenerated from a run's saved results."""

from __future__ import annotations

import math

from common import plotting


def oscillator_rollouts(record, out):
    """Figure 4: observations up to t1, then jumpy rollouts (jump dt, then 20 steps of 1)
    against the noiseless continuation of the true oscillator."""
    res, cfg = record.result("oscillator"), record.result("config")
    t1, roll, jumps = cfg["t1"], cfg["roll"], cfg["jumps"]
    rows = min(4, res["x"].shape[0])
    fig, axes = plotting.subplots(rows, len(jumps), figsize=(5.5 * len(jumps), 1.9 * rows), squeeze=False,
                                  sharey=True)
    for j, dt in enumerate(jumps):
        pred, truth = res[f"dt{dt}/pred"], res[f"dt{dt}/truth"]
        t_roll = list(range(t1 + dt, t1 + dt + roll + 1))
        for i in range(rows):
            ax = axes[i][j]
            ax.plot(range(1, t1 + 1), res["x"][i, :t1], color="0.5", lw=0.8, label="observed x_1..x_60")
            ax.plot(range(t1 + 1, t1 + dt + roll + 1), res["x"][i, t1:t1 + dt + roll], color="0.8", lw=0.8,
                    label="future observations (unseen)")
            ax.plot(t_roll, truth[i], color="k", lw=1.5, label="noiseless truth")
            for s in range(pred.shape[1]):
                ax.plot(t_roll, pred[i, s], color="#d95f02", lw=1, alpha=0.8,
                        label="rollout samples" if s == 0 else None)
            ax.axvline(t1, color="#1b9e77", ls=":", lw=1)
            if i == 0:
                ax.set_title(f"jump dt = {dt} from t1 = {t1}, then {roll} steps of 1")
    axes[-1][0].set_xlabel("time step")
    axes[0][0].legend(fontsize=7, loc="lower left", ncol=2)
    return plotting.save(fig, out / "oscillator_rollouts")


def oscillator_errors(record, out):
    """Distributions of the rollouts' fitted relative frequency / amplitude error and phase
    error, dt = 20 vs dt = 100."""
    res, cfg = record.result("oscillator"), record.result("config")
    names = [("relative frequency error", 0, [0.1]), ("relative amplitude error", 1, [0.1]),
             ("phase error (rad)", 2, [math.pi / 2])]
    fig, axes = plotting.subplots(1, 3, figsize=(13, 3.4))
    colors = {cfg["jumps"][0]: "#1b9e77", cfg["jumps"][-1]: "#7570b3"}
    for ax, (name, k, refs) in zip(axes, names):
        for dt in cfg["jumps"]:
            e = res[f"dt{dt}/errors"][k].numpy()
            ax.hist(e, bins=30, range=(0, math.pi if k == 2 else 0.5), alpha=0.55, color=colors.get(dt),
                    label=f"dt = {dt} (median {float(sorted(e)[len(e) // 2]):.3f})")
        for r in refs:
            ax.axvline(r, color="k", ls=":", lw=1)
        ax.set_xlabel(name)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("rollouts")
    fig.suptitle("dotted: the 10% claim threshold (frequency, amplitude); the mean error of a random phase", fontsize=9)
    return plotting.save(fig, out / "oscillator_errors")


def oscillator_latent_probe(record, out):
    """What the belief b_t1, the latent's mean and a latent sample encode of position,
    velocity and frequency (held-out R^2 of linear maps): a latent whose samples lost the
    frequency cannot roll out the right one."""
    m = record.metrics
    if "probe/b_omega_r2" not in m:
        return None  # a run from before the probe existed
    keys = ("pos", "u", "omega")
    labels = {"pos": "position", "u": "velocity / omega", "omega": "frequency omega"}
    fig, ax = plotting.subplots(figsize=(6.5, 3.6))
    width = 0.27
    sources = (("b", "#1b9e77", "LSTM belief b_t1"), ("z", "#d95f02", "mean of p_B(z | b_t1)"),
               ("zs", "#7570b3", "a sample z ~ p_B(z | b_t1): what rollouts use"))
    for j, (name, color, label) in enumerate(sources):
        vals = [max(m[f"probe/{name}_{k}_r2"], 0.0) for k in keys]
        bars = ax.bar([i + (j - (len(sources) - 1) / 2) * width for i in range(len(keys))], vals, width,
                      color=color, label=label)
        for bar, k in zip(bars, keys):
            ax.text(bar.get_x() + width / 2, bar.get_height() + 0.02, f"{m[f'probe/{name}_{k}_r2']:.2f}",
                    ha="center", fontsize=8)
    ax.set_xticks(range(len(keys)), [labels[k] for k in keys])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("held-out linear R^2 (clipped at 0)")
    ax.legend(fontsize=8, loc="upper right")
    return plotting.save(fig, out / "oscillator_latent_probe")


def training_loss(record, out):
    """Training loss (negative bound, per chunk mean) of every model trained in the run."""
    hist = record.result("history")
    fig, ax = plotting.subplots(figsize=(6, 3.6))
    for name, rows in hist.items():
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name)
    ax.set_xlabel("update")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "training_loss")


def probe_accuracy(record, out):
    """Section 5.3: linear-probe accuracy of the final frequency from the belief before the
    last segment, TD-VAE vs next-step prediction, per gap and LSTM size (points: seeds)."""
    res = record.result("probe")
    rows, cfg = res["results"], res["config"]
    fig, axes = plotting.subplots(1, len(cfg["gaps"]), figsize=(4.6 * len(cfg["gaps"]), 3.6), squeeze=False,
                                  sharey=True)
    style = {"tdvae": ("TD-VAE", "#d95f02", -0.12), "next_step": ("next-step prediction", "#7570b3", 0.12)}
    for ax, gap in zip(axes[0], cfg["gaps"]):
        for kind, (name, color, off) in style.items():
            for i, d in enumerate(cfg["d_beliefs"]):
                accs = [r["accuracy"] for r in rows if r["gap"] == gap and r["d_belief"] == d and r["model"] == kind]
                ax.scatter([i + off] * len(accs), accs, color=color, s=14, alpha=0.6)
                ax.plot([i + off - 0.08, i + off + 0.08], [sum(accs) / len(accs)] * 2, color=color, lw=2,
                        label=name if i == 0 else None)
        ax.axhline(50, color="0.6", ls=":", lw=1)
        ax.set_xticks(range(len(cfg["d_beliefs"])))
        ax.set_xticklabels([f"LSTM {d}" for d in cfg["d_beliefs"]])
        ax.set_title(f"middle segment {gap} steps")
    axes[0][0].set_ylabel("probe accuracy (%)")
    axes[0][0].legend(fontsize=8)
    return plotting.save(fig, out / "probe_accuracy")


def moving_mnist_rollouts(record, out):
    """Figure 3: observed frames, then rollouts from the belief (steps of 1; jumps of 2)."""
    res, cfg = record.result("moving_mnist"), record.result("config")
    n_seq = min(3, res["x"].shape[0])
    obs, roll = cfg["observe"], cfg["roll"]
    samples = min(2, res["jump1/pred"].shape[1])
    rows_per = 1 + 2 * samples
    cols = max(obs, roll)
    fig, axes = plotting.subplots(n_seq * rows_per, cols, figsize=(0.75 * cols, 0.8 * n_seq * rows_per))
    for ax in axes.flat:
        ax.axis("off")
    for s in range(n_seq):
        base = s * rows_per
        d = "right" if int(res["direction"][s]) > 0 else "left"
        for t in range(obs):
            axes[base][t].imshow(res["x"][s, t].view(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axes[base][0].set_title(f"digit {int(res['label'][s])} moving {d}: observed x_1..x_{obs}", fontsize=7,
                                loc="left")
        for j, jump in enumerate((1, 2)):
            for k in range(samples):
                r = base + 1 + j * samples + k
                for t in range(roll):
                    axes[r][t].imshow(res[f"jump{jump}/pred"][s, k, t].view(28, 28), cmap="gray_r", vmin=0, vmax=1)
                axes[r][0].set_title(f"rollout sample {k + 1}, jumps of {jump}", fontsize=7, loc="left")
    return plotting.save(fig, out / "moving_mnist_rollouts")
