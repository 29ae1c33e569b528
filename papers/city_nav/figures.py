"""Figures for citynav_proccity, each regenerated from a run's saved results (cities
are rebuilt from their seeds: generation is deterministic): learning curves per agent
/ ablation, the courier city's map with evaluation trajectories, example first-person
views with landmarks, and the transfer curves."""

from __future__ import annotations

import numpy as np

from common import plotting

LABELS = {"goalnav": "GoalNav", "citynav": "CityNav (heading aux)", "citynav_noaux": "CityNav, no aux",
          "citynav_latlong": "CityNav, lat/long goals", "citynav_noshaping": "CityNav, no curriculum/shaping"}


def _city(record, seed):
    from papers.city_nav import city as C

    w = record.result("config")["world"]
    return C, C.make_city(seed, blocks=w["blocks"], block_m=w["block_m"], landmarks=w["landmarks"]), w


def learning_curves(record, out):
    """Goals reached per finished training episode against agent steps, per agent and
    ablation (the training goal range grows with the curriculum, shown on the right);
    evaluation on full-range goals in the legend."""
    res = record.result("results")["courier"]
    fig, axes = plotting.subplots(1, 2, figsize=(11, 4))
    for name, r in res.items():
        x = [p["frames"] for p in r["curve"]]
        axes[0].plot(x, [p["goals"] for p in r["curve"]], marker=".",
                     label=f"{LABELS.get(name, name)} (eval {r['eval']['goals']:.2f})")
        axes[1].plot(x, [p["max_goal_m"] for p in r["curve"]], label=LABELS.get(name, name))
    axes[0].set(xlabel="agent steps", ylabel="goals reached per episode", title="Courier task on ProcCity (stand-in)")
    axes[1].set(xlabel="agent steps", ylabel="max goal distance (m)", title="Curriculum")
    axes[0].legend(fontsize=7)
    return plotting.save(fig, out / "learning_curves")


def trajectories(record, out):
    """The courier city (streets, buildings, landmarks as stars) with the CityNav agent's
    evaluation paths of four environments (one colour each, every episode from its start,
    a circle); their goals as crosses."""
    results = record.result("results")
    C, city, _ = _city(record, results["cities"]["courier"])
    name = "citynav" if "citynav" in results["courier"] else next(iter(results["courier"]))
    paths = results["courier"][name]["eval"]["paths"]
    fig, ax = plotting.subplots(figsize=(6.5, 6.5))
    g = city.grid.shape[0] * city.res
    ext = [city.origin[0], city.origin[0] + g, city.origin[1], city.origin[1] + g]
    ax.imshow((city.grid.T > 0) * 0.5 + city.park.T * 0.2, origin="lower", extent=ext, cmap="Greys", vmin=0, vmax=1)
    for i, j in [(i, j) for i in range(city.n) for j in city.neighbours[i] if j > i]:
        ax.plot(*city.pos[[i, j]].T, color="0.6", lw=0.6)
    ax.scatter(*city.landmarks.T, c=city.landmark_colour, s=90, marker="*", edgecolors="k", zorder=5)
    cols = plotting.plt().cm.tab10.colors
    for k, path in enumerate(paths):
        nodes = np.array([p[0] for p in path])
        goals = sorted({p[1] for p in path})
        # a new episode restarts at a random node: break the line there (and mark the start)
        jump = np.flatnonzero(np.linalg.norm(np.diff(city.pos[nodes], axis=0), axis=1) > 15.0) + 1
        for seg in np.split(nodes, jump):
            ax.plot(*city.pos[seg].T, color=cols[k % 10], lw=1.4, alpha=0.85)
            ax.scatter(*city.pos[seg[0]], color=cols[k % 10], s=40, marker="o", zorder=6)
        ax.scatter(*city.pos[goals].T, color=cols[k % 10], s=50, marker="x", zorder=6)
    ax.set_title(f"{LABELS.get(name, name)}: evaluation paths (ProcCity seed {city.seed})", fontsize=9)
    ax.set_aspect("equal")
    return plotting.save(fig, out / "trajectories")


def views(record, out):
    """Example first-person views of the courier city from the pre-rendered cache: the
    16 headings at one node (landmarks stand above the roofs), and views at street ends
    with the red stop cue."""
    results = record.result("results")
    C, city, w = _city(record, results["cities"]["courier"])
    node = int(np.argmax(np.array([len(n) for n in city.neighbours])))
    stops = np.argwhere(city.stop)[:8]
    pairs = [(node, h) for h in range(C.HEADINGS)] + [tuple(s) for s in stops]
    imgs = C.render(city, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), size=w["view"])
    cols = 8
    rows = int(np.ceil(len(pairs) / cols))
    fig, axes = plotting.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows))
    for a in axes.flat:
        a.axis("off")
    for a, (n, h), im in zip(axes.flat, pairs, imgs):
        a.imshow(im.transpose(1, 2, 0))
        a.set_title(f"node {n}, {h * 22.5:.0f}°" + (" stop" if city.stop[n, h] else ""), fontsize=7)
    fig.suptitle("ProcCity first-person views (stand-in for Street View)", fontsize=9)
    return plotting.save(fig, out / "views")


def transfer_curves(record, out):
    """Learning curves on the held-out city: a fresh goal pathway on the frozen shared
    torso and policy LSTM of MultiCityNav pre-trained on k other cities (one line per
    k), against CityNav from scratch; right: the area under each curve against k."""
    res = record.result("results").get("transfer") or {}
    runs = res.get("runs", {})
    fig, axes = plotting.subplots(1, 2, figsize=(11, 4))
    cols = plotting.plt().cm.viridis(np.linspace(0.15, 0.85, max(len(runs), 1)))
    ks, aucs = [], []
    from papers.city_nav.experiment import auc
    for col, (k, r) in zip(cols, sorted(runs.items(), key=lambda kv: int(kv[0]))):
        c = r["frozen"]["curve"]
        ks.append(int(k))
        aucs.append(auc(c))
        axes[0].plot([p["frames"] for p in c], [p["goals"] for p in c], marker=".", color=col,
                     label=f"frozen, pre-trained on {k} cit{'y' if int(k) == 1 else 'ies'} (AUC {aucs[-1]:.2f})")
    if "scratch" in res:
        c = res["scratch"]["curve"]
        a = auc(c)
        axes[0].plot([p["frames"] for p in c], [p["goals"] for p in c], marker=".", color="C3",
                     label=f"from scratch (AUC {a:.2f})")
        axes[1].axhline(a, color="C3", ls="--", label="from scratch")
    axes[0].set(xlabel="agent steps on the held-out city", ylabel="goals reached per episode",
                title="Transfer to a held-out ProcCity (stand-in)")
    axes[0].legend(fontsize=7)
    axes[1].plot(ks, aucs, marker="o", color="C0", label="frozen shared modules")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(ks or [1])
    axes[1].set_xticklabels([str(k) for k in ks] or ["1"])
    axes[1].set(xlabel="pre-training cities (equal total steps)", ylabel="area under the learning curve",
                title="Transfer vs number of pre-training cities")
    axes[1].legend(fontsize=7)
    return plotting.save(fig, out / "transfer_curves")
