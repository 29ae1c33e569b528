"""Figures for hiro_nav, regenerated from saved results: success rate vs environment
steps per method, mean over the seeds of the run's profile with a min-max band (the
Fig. 4 analogue), and a trained agent's trajectory in each world with its subgoals
(the Fig. 3 analogue)."""

from __future__ import annotations

import numpy as np

from common import plotting
from common.records import RunRecord
from papers.hiro import envs as E

LABEL = {"hiro": "HIRO", "nocorr": "HIRO, no off-policy correction", "flat": "flat TD3 (no HRL)",
         "pretrain": "HIRO, low level pre-trained, then frozen"}
COLOR = {"hiro": "C0", "nocorr": "C1", "flat": "C2", "pretrain": "C3"}


def _siblings(record):
    """The complete runs of the same experiment, profile and bindings beside ``record``
    (the seeds of its sweep), lowest seed first."""
    out = []
    for p in sorted(record.path.parent.iterdir()):
        if not (p / "run.json").exists():
            continue
        r = RunRecord.load(p)
        if (r.experiment == record.experiment and r.profile == record.profile and r.status == "complete"
                and r.bindings == record.bindings and (p / "results" / "training.json").exists()):
            out.append(r)
    seeds = {}
    for r in out:
        seeds.setdefault(r.seed, r)
    return [seeds[s] for s in sorted(seeds)] or [record]


def success_curves(record, out):
    """Success rate at the evaluation target vs environment steps, per method: mean over
    seeds (line) and min-max over seeds (band); one panel per environment."""
    runs = _siblings(record)
    trains = [r.result("training") for r in runs]
    envs = list(dict.fromkeys(k.split("/")[0] for k in trains[0]))
    fig, axes = plotting.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for method in LABEL:
            key = f"{env}/{method}"
            if key not in trains[0]:
                continue
            steps = np.array([p["steps"] for p in trains[0][key]["curve"]])
            ys = np.array([[p["success"] for p in t[key]["curve"]] for t in trains])
            ax.plot(steps, ys.mean(0), color=COLOR[method], label=LABEL[method])
            ax.fill_between(steps, ys.min(0), ys.max(0), color=COLOR[method], alpha=0.2)
        ax.set_title(f"point-mass {env}" if record.profile != "full" else f"Ant {env}")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate (final step)")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{len(runs)} seed(s): mean, band = min-max over seeds", fontsize=9)
    return plotting.save(fig, out / "success_curves")


def _walls(ax, layout: str):
    spec = E.LAYOUTS[layout]
    free = {tuple(c) for c in spec["free"]}
    xs = [c[0] for c in free]
    ys = [c[1] for c in free]
    for i in range(min(xs) - 1, max(xs) + 2):
        for j in range(min(ys) - 1, max(ys) + 2):
            if (i, j) not in free:
                ax.add_patch(plotting.plt().Rectangle((i - 0.5, j - 0.5), 1, 1, color="0.55"))
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    return spec


def trajectories(record, out):
    """One evaluation episode of each trained method in each world, from the seed whose
    final evaluation succeeded most (ties: the lowest seed; named in each title): the
    path (line), HIRO's subgoals as absolute positions (crosses, joined to where they
    were set), the target (star) and its success disc; Push also shows the block's
    start and end squares."""
    runs = _siblings(record)
    trains = {r.seed: r.result("training") for r in runs}
    train, seed_of = {}, {}
    for key in trains[min(trains)]:
        seed = max(sorted(trains), key=lambda s: (trains[s][key]["curve"][-1]["success"], -s))
        train[key], seed_of[key] = trains[seed][key], seed
    envs = list(dict.fromkeys(k.split("/")[0] for k in train))
    methods = [m for m in LABEL if any(f"{e}/{m}" in train for e in envs)]
    fig, axes = plotting.subplots(len(envs), len(methods), figsize=(3.3 * len(methods), 3.2 * len(envs)),
                                  squeeze=False)
    plt = plotting.plt()
    for row, env in zip(axes, envs):
        for ax, method in zip(row, methods):
            key = f"{env}/{method}"
            if key not in train or env not in E.LAYOUTS:
                ax.axis("off")
                continue
            spec = _walls(ax, env)
            traj = np.array(train[key]["trajectory"])
            tgt = spec["eval_target"]
            ax.add_patch(plt.Circle(tgt, 0.625, color="gold", alpha=0.35))
            ax.plot(*tgt, "*", color="darkorange", ms=12)
            if spec["block"] is not None:
                for b, style in ((traj[0, 2:4], ":"), (traj[-1, 2:4], "-")):
                    ax.add_patch(plt.Rectangle(b - 0.5, 1, 1, fill=False, ec="saddlebrown", ls=style, lw=1.5))
            ax.plot(traj[:, 0], traj[:, 1], color=COLOR[method], lw=1.5)
            ax.plot(traj[0, 0], traj[0, 1], "o", color="k", ms=4)
            sub = np.array(train[key].get("subgoals", []))
            if len(sub):
                c = len(traj) // len(sub) if len(sub) else 1
                for i, g in enumerate(sub):
                    p = traj[min(i * c, len(traj) - 1)]
                    ax.plot([p[0], g[0]], [p[1], g[1]], color="crimson", lw=0.6, alpha=0.6)
                ax.plot(sub[:, 0], sub[:, 1], "x", color="crimson", ms=5, label="subgoals")
            final = train[key]["curve"][-1]["success"]
            ax.set_title(f"{env}: {LABEL[method]}\n(seed {seed_of[key]}, final eval success {final:.2f})",
                         fontsize=8)
            ax.tick_params(labelsize=6)
    return plotting.save(fig, out / "trajectories")
