"""sbn_table1 and sbn_simulation: tree probability estimation by subsplit Bayesian
networks (Zhang & Matsen, NeurIPS 2018), Table 1 and the simulation study (§6).

``sbn_table1``: for each of DS1-DS4 the ground truth is the pooled golden MCMC
runs; each of 10 short runs is fitted by SRF, CCD, SBN-SA, SBN-EM and
SBN-EM-alpha (alpha = 1e-4) and scored by KL(truth || estimate); Table 1 is
the mean over the 10 runs.  The protocol is that of zcrabbit/sbn
experiments/real-data.ipynb (EM: at most 1000 iterations, tolerance 1e-5).

``sbn_simulation``: all 10,395 unrooted topologies on 8 taxa get probabilities
from a symmetric Dirichlet(beta); K trees are drawn; the five estimators are
scored against the drawn distribution (its support: probabilities > 1e-20),
over beta in {0.001, ..., 0.032}, K in {500, ..., 8000}, 10 replicates, with
alpha = 50/K and at most 200 EM iterations (experiments/simulated-data.ipynb).
"""

from __future__ import annotations

import time

import gin
import numpy as np

from common.context import RunContext
from papers.sbn import data as D
from papers.sbn import figures
from papers.sbn import method as M
from papers.sbn import trees as tr
from registry import Paper, register

PAPER = Paper(
    title="Generalizing tree probability estimation via Bayesian networks",
    authors="Cheng Zhang and Frederick A. Matsen IV", venue="NeurIPS 2018", arxiv="1805.07834",
    code="https://github.com/zcrabbit/sbn (models.py, utils.py, experiments/*.ipynb)")


@gin.configurable(module="sbn")
def table1(datasets=D.DATASETS, golden_reps=10, short_reps=10, alpha=1e-4, maxiter=1000,
           max_trees=0, scatter_dataset="DS1"):
    """``max_trees`` > 0 truncates every file to its first trees (smoke only)."""
    return dict(datasets=tuple(datasets), golden_reps=golden_reps, short_reps=short_reps,
                alpha=alpha, maxiter=maxiter, max_trees=max_trees,
                scatter_dataset=scatter_dataset)


@gin.configurable(module="sbn")
def simulation(n_taxa=8, betas=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032),
               sample_sizes=(500, 1000, 2000, 4000, 8000), replicates=10, alpha_scale=50.0,
               maxiter=200, support_floor=1e-20):
    return dict(n_taxa=n_taxa, betas=tuple(betas), sample_sizes=tuple(sample_sizes),
                replicates=replicates, alpha_scale=alpha_scale, maxiter=maxiter,
                support_floor=support_floor)


# ------------------------------------------------------------------ Table 1


def fit_run(vocab, post: D.Posterior, rep: int, cfg: dict, keep: bool) -> dict:
    ids, w = post.runs[rep]
    t0 = time.time()
    out = M.evaluate_all(vocab, ids, w, post.truth_ids, post.truth_w, alpha=cfg["alpha"],
                         maxiter=cfg["maxiter"], keep_estimates=keep)
    out["seconds"] = time.time() - t0
    out["n_sampled_trees"] = int(len(ids))
    return out


@register("sbn_table1", paper=PAPER, data=("sbn (DS1-DS4 MrBayes .trprobs)",),
          figures=[figures.table1_vs_paper, figures.ds1_scatter, figures.em_traces])
def run_table1(ctx: RunContext) -> dict:
    """Table 1: KL to the golden-run posterior of SRF, CCD, SBN-SA, SBN-EM, SBN-EM-alpha on DS1-DS4."""
    cfg = table1()
    metrics, per_rep, traces = {}, {}, {}
    for ds in cfg["datasets"]:
        t0 = time.time()
        post = D.load(ds, ctx.data_dir, golden_reps=range(1, cfg["golden_reps"] + 1),
                      short_reps=range(1, cfg["short_reps"] + 1), max_trees=cfg["max_trees"])
        vocab = M.Vocab(post.trees)
        ctx.log(f"{ds}: {len(post.taxa)} taxa, {len(post.truth_ids)} ground-truth topologies, "
                f"{len(post.trees)} topologies in all, {vocab.n_pcsp} PCSPs "
                f"({time.time() - t0:.1f} s to read and encode)")
        rows = []
        for rep in range(len(post.runs)):
            keep = ds == cfg["scatter_dataset"] and rep == 0
            res = ctx.once(f"{ds}-rep{rep + 1}", lambda: fit_run(vocab, post, rep, cfg, keep))
            if keep:
                ctx.save_json("scatter", {"dataset": ds, "replicate": 1,
                                          "truth": post.truth_w.tolist(), **res.pop("estimates")})
            traces[f"{ds}-rep{rep + 1}"] = {"em": res.pop("em_loglik"),
                                            "em_alpha": res.pop("em_alpha_loglik")}
            rows.append(res)
            ctx.log(f"  {ds} run {rep + 1}: {res['n_sampled_trees']} trees; KL "
                    + " ".join(f"{m} {res[m]:.4f}" for m in M.METHODS)
                    + f"; EM {res['em_iters']}/{res['em_alpha_iters']} iterations, "
                      f"{res['seconds']:.1f} s")
        per_rep[ds] = rows
        for m in M.METHODS:
            vals = np.array([r[m] for r in rows])
            metrics[f"{ds}/{m}/kl"] = float(vals.mean())
            metrics[f"{ds}/{m}/kl_std"] = float(vals.std())
        metrics[f"{ds}/n_taxa"] = len(post.taxa)
        metrics[f"{ds}/n_truth_trees"] = int(len(post.truth_ids))
        metrics[f"{ds}/n_sampled_trees"] = float(np.mean([r["n_sampled_trees"] for r in rows]))
        metrics[f"{ds}/em_iters"] = float(np.mean([r["em_iters"] for r in rows]))
        metrics[f"{ds}/seconds_per_run"] = float(np.mean([r["seconds"] for r in rows]))
    ctx.save_json("table1", {"config": cfg, "per_replicate": per_rep, "methods": M.METHODS})
    ctx.save_json("em_traces", traces)
    return metrics


# --------------------------------------------------------------- simulation


def dirichlet(rng: np.random.Generator, beta: float, size: int) -> np.ndarray:
    """A symmetric Dirichlet(beta) draw, in log space: for beta ~ 1e-3 the gamma
    variates underflow (log G(b) = log G(b + 1) + log(U) / b)."""
    lg = np.log(rng.gamma(beta + 1.0, size=size)) + np.log(rng.random(size)) / beta
    p = np.exp(lg - lg.max())
    return p / p.sum()


def tree_space(n_taxa: int):
    taxa = [chr(ord("A") + i) for i in range(n_taxa)]
    newick = tr.all_unrooted_newick(taxa)
    trees = tr.Trees.from_newick(newick, {t: i for i, t in enumerate(taxa)}, n_taxa)
    return M.Vocab(trees)


def simulate_replicate(vocab, cfg: dict, rng: np.random.Generator) -> dict:
    """One replicate of the whole (beta, K) grid: KL[method][beta][K] and unique-tree counts."""
    n_all = len(vocab.trees)
    kl = {m: [[None] * len(cfg["sample_sizes"]) for _ in cfg["betas"]] for m in M.METHODS}
    uniq = [[0] * len(cfg["sample_sizes"]) for _ in cfg["betas"]]
    for i, beta in enumerate(cfg["betas"]):
        for j, K in enumerate(cfg["sample_sizes"]):
            p = dirichlet(rng, beta, n_all)
            truth = np.nonzero(p > cfg["support_floor"])[0]
            counts = rng.multinomial(K, p)
            ids = np.nonzero(counts)[0]
            res = M.evaluate_all(vocab, ids, counts[ids] / K, truth, p[truth],
                                 alpha=cfg["alpha_scale"] / K, maxiter=cfg["maxiter"])
            for m in M.METHODS:
                kl[m][i][j] = res[m]
            uniq[i][j] = int(len(ids))
    return {"kl": kl, "n_unique": uniq}


def _gmean(x) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(x)))))


@register("sbn_simulation", paper=PAPER, claims_file="claims_simulation.toml",
          figures=[figures.simulation_heatmaps,
                   figures.simulation_slices])
def run_simulation(ctx: RunContext) -> dict:
    """Simulation: KL of the five estimators on Dirichlet(beta) posteriors over all 8-taxon trees."""
    cfg = simulation()
    t0 = time.time()
    vocab = tree_space(cfg["n_taxa"])
    ctx.log(f"{len(vocab.trees)} unrooted topologies on {cfg['n_taxa']} taxa, {vocab.n_pcsp} "
            f"PCSPs ({time.time() - t0:.1f} s)")
    reps = []
    for r in ctx.progress(range(cfg["replicates"]), desc="replicates"):
        key = f"replicate{r + 1}"
        res = ctx.once(key, lambda: simulate_replicate(
            vocab, cfg, np.random.default_rng(ctx.seed_for(key))))
        reps.append(res)
        ctx.log(f"replicate {r + 1}/{cfg['replicates']} done ({time.time() - t0:.0f} s)")
    # mean over replicates per (beta, K) cell: the heat maps
    cell = {m: np.mean([rep["kl"][m] for rep in reps], axis=0) for m in M.METHODS}
    stack = np.stack([cell[m] for m in M.METHODS])  # (methods, beta, K)
    best = stack.argmin(0)
    metrics = {}
    for k, m in enumerate(M.METHODS):
        metrics[f"kl/{m}/all"] = _gmean(cell[m])
        metrics[f"kl/{m}/K_smallest"] = _gmean(cell[m][:, 0])
        metrics[f"kl/{m}/K_largest"] = _gmean(cell[m][:, -1])
        metrics[f"kl/{m}/diffuse_small_sample"] = float(cell[m][-1, 0])
        metrics[f"best_cells/{m}"] = float(np.mean(best == k))
    metrics["n_cells"] = int(best.size)
    metrics["replicates"] = len(reps)
    ctx.save_json("simulation", {"config": cfg, "methods": M.METHODS,
                                 "mean": {m: cell[m].tolist() for m in M.METHODS},
                                 "std": {m: np.std([rep["kl"][m] for rep in reps], axis=0).tolist()
                                         for m in M.METHODS},
                                 "n_unique": np.mean([rep["n_unique"] for rep in reps], 0).tolist()})
    return metrics
