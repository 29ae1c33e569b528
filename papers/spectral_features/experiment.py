"""spectral_features_mnist: spectral robust features on an MNIST subset (Garg, Sharan,
Zhang & Valiant, NeurIPS 2018), against a PCA direction and a trained network's
penultimate feature.

1. A random subset of ``n`` MNIST training images (a different one per seed), l2
   distances, T = the ``quantile`` of the pairwise distances; the graph is restricted to
   its largest connected component (``component = "largest"``, its size is a metric) or
   must be connected as a whole (``"all"``).  L = D - A, eigenpairs by dense float64
   eigh, cross-checked against sparse eigsh.
2. Features on the graph points, each normalised to mean 0 / variance 1 there: the
   spectral f = sqrt(n) v_2 (and v_3..), the first PCA direction of the pixels, a small
   MLP's penultimate layer along its top principal direction, random vectors.
3. The Rayleigh-quotient inequality (method.py) checked for every feature and every T of
   ``t_quantiles``; lambda_2, lambda_3 and their gap against T.
4. Worst-case change under l2 budgets ``eps`` at ``robust_points`` test images: the
   harmonic extension (b) by the exact prefix solver over membership patterns (an upper
   bound), the augmented-graph extension (a) at the patterns worst for (b) on
   ``augmented_points`` images (a search: a lower bound on its worst case over
   patterns), the eigengap (Davis-Kahan) inequality on every (a) pair; PCA exactly;
   the network by PGD (lower bound) and its global Lipschitz constant (upper bound).
5. Multinomial logistic regression on k spectral features (test points through the
   harmonic extension, nearest-training-point fallback where a test image has no
   neighbour within T) against the same on k PCA components.
"""

from __future__ import annotations

import math
import time

import gin
import numpy as np
import torch

from common.context import RunContext
from common.adversarial import adversarial_train
from common.train import accuracy, cross_entropy_loss, to_device
from papers.spectral_features import figures
from papers.spectral_features import method as M
from registry import Paper, register

PAPER = Paper(
    title="A spectral view of adversarially robust features",
    authors="Shivam Garg, Vatsal Sharan, Brian Hu Zhang and Gregory Valiant",
    venue="NeurIPS 2018", arxiv="1811.06609")


@gin.configurable(module="spectral_features")
def setup(n=5000, quantile=0.01, component="largest", t_quantiles=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
          k_values=(1, 2, 5, 10, 20, 50), test_points=10000, robust_points=500, augmented_points=20,
          eps=(0.1, 0.25, 0.5, 1.0, 2.0), augmented_eps=(0.1, 0.25, 0.5, 1.0), random_features=5,
          sparse_check=6):
    """Graph size and threshold (a quantile of the pairwise distances), the T grid of
    the eigenvalue figure, k for the classifiers, how many test images are classified /
    attacked / extended on the augmented graph, the l2 budgets."""
    return dict(n=n, quantile=quantile, component=component, t_quantiles=tuple(t_quantiles),
                k_values=tuple(k_values), test_points=test_points, robust_points=robust_points,
                augmented_points=augmented_points, eps=tuple(eps), augmented_eps=tuple(augmented_eps),
                random_features=random_features, sparse_check=sparse_check)


@gin.configurable(module="spectral_features")
def network(hidden=(256, 64), epochs=5, train_subset=20000, batch_size=128, lr=1e-3, pgd_steps=40):
    """The comparison network: an MLP (ReLU) whose last hidden layer is the penultimate
    feature; PGD steps for its worst-case change."""
    return dict(hidden=tuple(hidden), epochs=epochs, train_subset=train_subset, batch_size=batch_size,
                lr=lr, pgd_steps=pgd_steps)


# ------------------------------------------------------------------ pieces
def build_graph(X: np.ndarray, D: np.ndarray, q: float, component: str) -> dict:
    T = M.quantile_threshold(D, q)
    A = M.adjacency(D, T)
    keep = M.largest_component(A) if component == "largest" else np.arange(len(A))
    A = A[np.ix_(keep, keep)]
    return {"T": T, "keep": keep, "A": A, "L": M.laplacian(A), "E": M.edges(A)}


def train_network(ctx: RunContext, cfg: dict, x: torch.Tensor, y: torch.Tensor):
    layers, d = [], 784
    for h in cfg["hidden"]:
        layers += [torch.nn.Linear(d, h), torch.nn.ReLU()]
        d = h
    body = torch.nn.Sequential(torch.nn.Flatten(), *layers)
    model = torch.nn.Sequential(body, torch.nn.Linear(d, 10))
    model, _ = adversarial_train(ctx, "net", model.to(ctx.device), {"x_train": x, "y_train": y},
                                 epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                 epoch_loss=lambda epoch: (cross_entropy_loss, {}), monitor=lambda m: {},
                                 generators={"order": ctx.generator("net/order")})
    return model, body, [m for m in body if isinstance(m, torch.nn.Linear)]


def penultimate(body, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([body(c) for c in x.split(2000)]).double().numpy()


def feature_checks(G: dict, g: dict, lam2: float) -> dict:
    """For each named feature (normalised over the graph's points): Rayleigh quotient
    inequality, RMS and max edge change against the spectral lower bound."""
    n, E = len(G["A"]), G["E"]
    bound = M.spectral_lower_bound(lam2, n, len(E))
    out = {"bound": bound, "features": {}}
    for name, vec in g.items():
        energy = float(M.dirichlet_energy(vec, E))
        rms, mx = (float(v) for v in M.edge_changes(vec, E))
        out["features"][name] = {"energy": energy, "n_lambda2": n * lam2, "rms": rms, "max": mx,
                                 "mean": float(vec.mean()), "var": float(vec.var())}
    return out


def judge_checks(chk: dict, rel: float = 1e-9) -> tuple[int, int, int, int]:
    """(energy >= n lambda_2, rms >= bound, max >= bound), each counted, and the total."""
    e_ok = r_ok = m_ok = tot = 0
    b = chk["bound"]
    for f in chk["features"].values():
        tot += 1
        e_ok += f["energy"] >= f["n_lambda2"] * (1 - rel) - 1e-12
        r_ok += f["rms"] >= b * (1 - rel) - 1e-12
        m_ok += f["max"] >= b * (1 - rel) - 1e-12
    return e_ok, r_ok, m_ok, tot


def robustness_b(f: np.ndarray, Dt: np.ndarray, T: float, eps_list) -> dict:
    """Extension (b) at the test images and its exact worst case over membership
    patterns per eps (upper bound on the realisable worst case)."""
    F0, has = M.harmonic_extension(f, Dt <= T)
    rows = {}
    for e in eps_list:
        core, flip = M.flippable(Dt, T, e)
        hi, lo = M.prefix_extremes(f, core, flip)
        ok = has & np.isfinite(hi)
        change = np.maximum(hi - F0, F0 - lo)
        rows[str(e)] = {"mean": float(change[ok].mean()), "median": float(np.median(change[ok])),
                        "max": float(change[ok].max()), "points": int(ok.sum()),
                        "flippable_mean": float(flip[ok].sum(1).mean())}
    return {"values": F0[has].tolist(), "covered": float(has.mean()), "has": has.tolist(), "by_eps": rows}


def robustness_a(ctx: RunContext, G: dict, v2: np.ndarray, lam2: float, f: np.ndarray, Dt: np.ndarray,
                 eps_list) -> dict:
    """Extension (a) at test images: the value, and the change at the two membership
    patterns that are worst for (b) (a search), with the eigengap inequality between
    the base augmented graph and each perturbed one."""
    A, T = G["A"], G["T"]
    points, dk = [], []
    for p in ctx.progress(range(len(Dt)), desc="augmented"):
        d = Dt[p]
        nbr = d <= T
        if not nbr.any():
            continue
        base = M.augmented_feature(A, v2, nbr)
        row = {"index": p, "value": base["value"], "harmonic": float(f[nbr].mean()),
               "lam2": base["lam2"], "lam3": base["lam3"], "by_eps": {}}
        for e in eps_list:
            core, flip = M.flippable(d, T, e)
            worst = 0.0
            for sign in (1.0, -1.0):
                pat = M.prefix_patterns(f, core, flip, sign)
                if (pat == nbr).all():
                    continue
                new = M.augmented_feature(A, v2, pat)
                worst = max(worst, abs(new["value"] - base["value"]))
                chk = M.davis_kahan(base["L"], base["v2"], base["lam2"], new["L"], new["v2"], new["lam3"])
                chk["holds"] = None if chk["bound"] is None else bool(chk["sin"] <= chk["bound"] * (1 + 1e-9) + 1e-12)
                dk.append(chk)
            row["by_eps"][str(e)] = worst
        points.append(row)
    return {"points": points, "davis_kahan": dk}


def classify(F_tr, y_tr, F_te, y_te) -> float:
    mu, sd = F_tr.mean(0), F_tr.std(0) + 1e-12
    W, b = M.logistic_regression(torch.from_numpy((F_tr - mu) / sd), y_tr, 10)
    pred = (torch.from_numpy((F_te - mu) / sd) @ W + b).argmax(1)
    return 100.0 * (pred == y_te).double().mean().item()


# ------------------------------------------------------------------ the run
@register("spectral_features_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.worst_case_vs_eps, figures.eigenvalues_vs_T, figures.bound_vs_measured,
                   figures.accuracy_vs_k])
def run(ctx: RunContext) -> dict:
    """Spectral features of an MNIST l2 threshold graph: robustness, lower bound, accuracy."""
    torch.set_grad_enabled(True)
    cfg, ncfg = setup(), network()
    train_set, test_set = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    pick = torch.randperm(len(train_set.images), generator=ctx.generator("subset"))
    Xg = train_set.images[pick[:cfg["n"]]]
    yg = train_set.labels[pick[:cfg["n"]]]
    Xte, yte = test_set.images[:cfg["test_points"]], test_set.labels[:cfg["test_points"]]
    Xnp = Xg.flatten(1).double().numpy()
    metrics, timing = {}, {}

    # 1. the graph at the main T, dense and sparse eigensolvers
    D = M.distances(Xg, Xg)
    G = build_graph(Xnp, D, cfg["quantile"], cfg["component"])
    keep, n, kmax = G["keep"], len(G["keep"]), max(cfg["k_values"])
    t0 = time.perf_counter()
    lam, V = M.eigs(G["L"], min(kmax + 1, n))
    timing["dense_eigh_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lam_s, V_s = M.eigs(G["L"], cfg["sparse_check"], solver="sparse")
    timing["sparse_eigsh_s"] = time.perf_counter() - t0
    ks = cfg["sparse_check"]
    metrics["eig/dense_vs_sparse_max_dlambda"] = float(np.abs(lam[:ks] - lam_s).max())
    metrics["eig/dense_vs_sparse_min_abs_cos"] = float(np.abs((V[:, 1:ks] * V_s[:, 1:ks]).sum(0)).min())
    lam2, lam3 = float(lam[1]), float(lam[2])
    F = M.spectral_features(V, min(kmax, n - 1))
    metrics.update({"graph/T": G["T"], "graph/n_component": n, "graph/fraction_kept": n / cfg["n"],
                    "graph/edges": len(G["E"]), "graph/lambda2": lam2, "graph/lambda3": lam3,
                    "graph/gap": lam3 - lam2,
                    "graph/v2_localisation": float(n * (V[:, 1] ** 4).sum()),
                    "norm/max_abs_mean": float(np.abs(F.mean(0)).max()),
                    "norm/max_abs_var_minus_1": float(np.abs(F.var(0) - 1).max())})
    ctx.log(f"[graph] T {G['T']:.3f}, component {n}/{cfg['n']}, |E| {len(G['E'])}, "
            f"lambda2 {lam2:.4g}, lambda3 {lam3:.4g}; dense {timing['dense_eigh_s']:.2f}s, "
            f"sparse {timing['sparse_eigsh_s']:.2f}s")
    f, v2 = F[:, 0], V[:, 1]

    # 2. comparison features on the graph points
    Xc = Xnp[keep]
    mu_pix, P = M.pca(Xc, kmax)
    proj = (Xc - mu_pix) @ P[0]
    pca_std = float(proj.std())
    net, body, lins = train_network(ctx, ncfg, *_net_data(train_set, ncfg, ctx))
    metrics["net/clean_accuracy"] = accuracy(net, Xte, yte)
    H = penultimate(body, Xg[keep])
    Hc = H - H.mean(0)
    u = np.linalg.svd(Hc, full_matrices=False)[2][0]
    h_proj = H @ u
    net_feat = M.PenultimateFeature(body, torch.from_numpy(u).float(), float(h_proj.mean()), float(h_proj.std()))
    rng = np.random.default_rng(ctx.seed_for("random_features"))
    R = rng.standard_normal((len(Xnp), cfg["random_features"]))

    def features_on(idx):
        g = {"spectral": None, "pca": M.normalise((Xnp[idx] - mu_pix) @ P[0]),
             "network": M.normalise(H_all[idx] @ u)}
        for r in range(cfg["random_features"]):
            g[f"random{r}"] = M.normalise(R[idx, r])
        return g

    H_all = penultimate(body, Xg)
    # 3. the Rayleigh-quotient inequality at every T of the grid (and the main T)
    sweep = []
    counts = np.zeros(4, int)
    for q in sorted(set(cfg["t_quantiles"]) | {cfg["quantile"]}):
        Gq = G if q == cfg["quantile"] else build_graph(Xnp, D, q, cfg["component"])
        nq = len(Gq["keep"])
        if nq < 4:
            continue
        wq, Vq = (lam[:3], V[:, :3]) if Gq is G else M.eigs(Gq["L"], 3)
        g = features_on(Gq["keep"])
        g["spectral"] = math.sqrt(nq) * Vq[:, 1]
        chk = feature_checks(Gq, g, float(wq[1]))
        counts += judge_checks(chk)
        spec = chk["features"]["spectral"]
        sweep.append({"quantile": q, "T": Gq["T"], "n": nq, "edges": len(Gq["E"]), "lambda2": float(wq[1]),
                      "lambda3": float(wq[2]), **chk,
                      "spectral_rel_gap": abs(spec["energy"] - spec["n_lambda2"]) / max(spec["n_lambda2"], 1e-300)})
    metrics["checks/energy_ge_n_lambda2"] = counts[0] / counts[3]
    metrics["checks/rms_ge_bound"] = counts[1] / counts[3]
    metrics["checks/max_ge_bound"] = counts[2] / counts[3]
    metrics["checks/spectral_energy_rel_error"] = max(s["spectral_rel_gap"] for s in sweep)
    metrics["checks/feature_T_pairs"] = int(counts[3])
    main = next(s for s in sweep if s["quantile"] == cfg["quantile"])
    metrics["bound/main_T"] = main["bound"]
    for name in ("spectral", "pca", "network", "random0"):
        metrics[f"bound/{name}_rms_over_bound"] = main["features"][name]["rms"] / main["bound"]

    # 4. worst-case change under l2 budgets
    Xr = Xte[:cfg["robust_points"]]
    Dt = M.distances(Xr, Xg[keep])
    rob_b = ctx.once("robust_b", lambda: robustness_b(f, Dt, G["T"], cfg["eps"]))
    w_norm = float(np.linalg.norm(P[0]))
    Xr_t = Xr.float()
    pgd, lip = {}, M.lipschitz_upper(lins, net_feat.u, net_feat.std)
    has = torch.tensor(rob_b["has"])  # the images that have a neighbour within T, as for (b)
    for e in cfg["eps"]:
        ch = M.pgd_feature_change(net_feat, Xr_t, e, steps=ncfg["pgd_steps"])[has]
        pgd[str(e)] = {"mean": ch.mean().item(), "median": ch.median().item(), "max": ch.max().item()}
        metrics[f"robust/eps{e}/spectral_b_upper"] = rob_b["by_eps"][str(e)]["mean"]
        metrics[f"robust/eps{e}/pca_exact"] = float(M.linear_worst_case(P[0], pca_std, e))
        metrics[f"robust/eps{e}/network_pgd_lower"] = pgd[str(e)]["mean"]
        metrics[f"robust/eps{e}/network_lipschitz_upper"] = lip * e
    metrics["robust/harmonic_coverage"] = rob_b["covered"]
    t0 = time.perf_counter()
    rob_a = ctx.once("robust_a", lambda: robustness_a(ctx, G, v2, lam2, f, Dt[:cfg["augmented_points"]],
                                                     cfg["augmented_eps"]))
    timing["augmented_s"] = time.perf_counter() - t0
    pts = rob_a["points"]
    for e in cfg["augmented_eps"]:
        metrics[f"robust/eps{e}/spectral_a_search"] = float(np.mean([p["by_eps"][str(e)] for p in pts]))
    va = np.array([p["value"] for p in pts])
    vb = np.array([p["harmonic"] for p in pts])
    metrics["ext/a_vs_b_max_abs_diff"] = float(np.abs(va - vb).max())
    metrics["ext/a_vs_b_corr"] = float(np.corrcoef(va, vb)[0, 1]) if len(va) > 2 else math.nan
    dk = [c for c in rob_a["davis_kahan"] if c["holds"] is not None]
    metrics["checks/davis_kahan"] = float(np.mean([c["holds"] for c in dk])) if dk else math.nan
    metrics["checks/davis_kahan_pairs"] = len(dk)
    metrics["checks/davis_kahan_max_ratio"] = max((c["sin"] / c["bound"] for c in dk if c["bound"] > 0),
                                                  default=math.nan)

    # 5. classifiers on k spectral features vs k PCA components
    Dte = M.distances(Xte, Xg[keep])
    F_te, covered = M.harmonic_extension(F, Dte <= G["T"], Dte)
    y_tr, y_te = yg[torch.from_numpy(keep)], yte
    Z_tr, Z_te = (Xc - mu_pix) @ P.T, (Xte.flatten(1).double().numpy() - mu_pix) @ P.T
    acc = {}
    for k in cfg["k_values"]:
        kk = min(k, F.shape[1])  # a tiny (smoke) graph may have fewer
        acc[k] = {"spectral": classify(F[:, :kk], y_tr, F_te[:, :kk], y_te),
                  "pca": classify(Z_tr[:, :kk], y_tr, Z_te[:, :kk], y_te)}
        metrics[f"acc/spectral_k{k}"], metrics[f"acc/pca_k{k}"] = acc[k]["spectral"], acc[k]["pca"]
        ctx.log(f"[classify] k={k}: spectral {acc[k]['spectral']:.1f}%, PCA {acc[k]['pca']:.1f}%")
    metrics["acc/test_coverage"] = float(covered.mean())

    ctx.save_json("graph_sweep", sweep)
    ctx.save_json("robustness", {"eps": list(cfg["eps"]), "augmented_eps": list(cfg["augmented_eps"]),
                                 "spectral_b": rob_b["by_eps"], "network_pgd": pgd, "network_lipschitz": lip,
                                 "pca_w_norm": w_norm, "pca_std": pca_std, "spectral_a": pts,
                                 "davis_kahan": rob_a["davis_kahan"]})
    ctx.save_json("accuracy", {str(k): v for k, v in acc.items()})
    ctx.save_json("timing", timing)
    ctx.save_json("config", {"setup": cfg, "network": ncfg})
    return metrics


def _net_data(train_set, ncfg, ctx):
    x, y = train_set.images, train_set.labels
    if ncfg["train_subset"]:
        sel = torch.randperm(len(x), generator=ctx.generator("net/subset"))[:ncfg["train_subset"]]
        x, y = x[sel], y[sel]
    return to_device(x, y, device="cpu")
