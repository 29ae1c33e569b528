"""SENN (Alvarez-Melis & Jaakkola, NeurIPS 2018): the accuracy / stability trade-off
over the robustness weight lambda, and the local Lipschitz estimate of SENN's
explanations beside post-hoc explainers of an unregularised classifier (§5, the
trade-off figure and the box plots of Lipschitz estimates).

- senn_mnist: MNIST with a learned conceptizer (5 concepts); post-hoc explainers
  on a plain CNN.
- senn_tabular: scikit-learn's bundled breast-cancer data (569 x 30, binary;
  ``sklearn.datasets.load_breast_cancer``, offline) with h(x) = x, standing in for
  the paper's UCI / COMPAS sets (not available offline); post-hoc explainers on a
  plain MLP.

For every lambda a SENN is trained (Adam; cross entropy + lambda L_theta, + the
reconstruction and sparsity terms for MNIST) and its test accuracy, stability
term and the local Lipschitz estimate of theta(x) (the relevances of the class
predicted at x) are measured on the same test inputs.  The explainer comparison
uses the SENN trained at ``compare_lambda`` and a plain classifier (no
regulariser) explained by gradient, gradient x input and integrated gradients
(common/saliency.py, differentiable: projected-gradient estimate) and by captum's
Lime, KernelShap and Occlusion (not differentiable: random-search estimate);
every explainer also gets the random-search and the discrete estimate.  Each
estimate is timed per image (one thread).
"""

from __future__ import annotations

import math
import time

import gin
import torch
import torch.nn.functional as F

from common import saliency as S
from common.context import RunContext
from common.train import accuracy, batches, predict, to_host, train_step
from papers.senn import figures
from papers.senn import method as M
from registry import Paper, register

PAPER = Paper(
    title="Towards robust interpretability with self-explaining neural networks",
    authors="David Alvarez-Melis and Tommi S. Jaakkola",
    venue="NeurIPS 2018", arxiv="1806.07538",
    code="https://github.com/dmelis/SENN (conceptizer, parametrizer, grad3 penalty, Lipschitz estimate)")

GRADIENT_BASED = ("gradient", "grad_x_input", "integrated_gradients")
CAPTUM = ("lime", "kernel_shap", "occlusion")
EXPLAINERS = ("senn",) + GRADIENT_BASED + CAPTUM


@gin.configurable(module="senn")
def setup(train_subset=0, test_subset=0, concepts=20, activation="silu", lambdas=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
          compare_lambda=1e-2, hidden=(64, 64)):
    """``train_subset`` > 0: a fixed random subset of the training images (MNIST);
    ``test_subset`` > 0: the first that many test images for the accuracies;
    ``concepts``: learned concepts (MNIST; 20 in the reference's arglist.py); ``activation`` of every net (smooth, so
    that gradient maps are differentiable in x); the lambda sweep; the SENN whose
    explanations are compared with the post-hoc explainers; tabular hidden widths."""
    return dict(train_subset=train_subset, test_subset=test_subset, concepts=concepts, activation=activation,
                lambdas=tuple(float(v) for v in lambdas), compare_lambda=float(compare_lambda),
                hidden=tuple(hidden))


@gin.configurable(module="senn")
def train(epochs=10, batch_size=128, lr=1e-3, weight_decay=0.0, recon=1.0, sparsity=1e-4,
          penalty_batch=0, posthoc_epochs=10):
    """Reference defaults (arglist.py: 10 epochs, batch 128, Adam 1e-3, sparsity
    1e-4); ``penalty_batch`` > 0 evaluates L_theta on the first that many samples of
    each batch only (an unbiased estimate of its batch mean, for cost)."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, recon=recon,
                sparsity=sparsity, penalty_batch=penalty_batch, posthoc_epochs=posthoc_epochs)


@gin.configurable(module="senn")
def lipschitz(eps=1.0, steps=20, restarts=4, sweep_images=100, images=50, random_samples=16,
              discrete_pool=200, discrete_eps=8.0, ig_steps=20, pgd_restarts_ig=4,
              lime_samples=200, shap_samples=200, occlusion_window=4, superpixel=4):
    """L2 ball of radius ``eps``; PGD ``steps`` x ``restarts``; ``sweep_images`` test
    inputs per lambda, ``images`` for the explainer comparison; ``random_samples``
    points for the random search; the discrete estimate over the first
    ``discrete_pool`` test inputs with radius ``discrete_eps``; Lime / KernelShap
    samples on ``superpixel`` x ``superpixel`` blocks (MNIST), Occlusion window."""
    return dict(eps=eps, steps=steps, restarts=restarts, sweep_images=sweep_images, images=images,
                random_samples=random_samples, discrete_pool=discrete_pool, discrete_eps=discrete_eps,
                ig_steps=ig_steps, pgd_restarts_ig=pgd_restarts_ig, lime_samples=lime_samples,
                shap_samples=shap_samples, occlusion_window=occlusion_window, superpixel=superpixel)


# ------------------------------------------------------------------ data


def mnist_data(ctx: RunContext, subset: int) -> dict:
    tr, te = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    x, y = tr.images, tr.labels
    if subset:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:subset]
        x, y = x[keep], y[keep]
    return {"x": x, "y": y, "x_test": te.images, "y_test": te.labels, "classes": 10}


def cancer_data(ctx: RunContext) -> dict:
    """Breast cancer (scikit-learn's bundled copy): a stratified 80/20 split fixed for
    every seed, features standardised by the training split's mean and std."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = torch.tensor(d.data, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in (0, 1):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[:round(0.2 * len(idx))]] = True
    mu, sd = x[~test].mean(0), x[~test].std(0)
    x = (x - mu) / sd
    return {"x": x[~test], "y": y[~test], "x_test": x[test], "y_test": y[test], "classes": 2,
            "feature_names": list(d.feature_names)}


# ------------------------------------------------------------------ training


def make_senn(kind: str, data: dict, scfg: dict) -> M.SENN:
    if kind == "mnist":
        k = scfg["concepts"]
        return M.SENN(M.ConvConceptizer(k, scfg["activation"]),
                      M.ConvParametrizer(k, data["classes"], scfg["activation"]))
    d = data["x"].shape[1]
    return M.SENN(M.IdentityConceptizer(),
                  M.MLPParametrizer(d, d, data["classes"], scfg["hidden"], scfg["activation"]))


def train_senn(ctx: RunContext, key: str, model: M.SENN, data: dict, lam: float, cfg: dict) -> list:
    """The visible epoch loop (resumable per epoch); one host sync per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = ctx.generator(f"{key}/order")
    state = {"history": []}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "gen": gen}, state)
    x, y = data["x"].to(ctx.device), data["y"].to(ctx.device)
    pb = cfg["penalty_batch"]

    def loss_fn(m, xb, yb):
        if lam > 0 and pb and pb < len(xb):  # L_theta on a sub-batch (cost), the rest plain
            pen, logits_p, h_p, _ = M.stability_penalty(m, xb[:pb])
            logits_r, h_r, _ = m.parts(xb[pb:])
            logits, h = torch.cat([logits_p, logits_r]), torch.cat([h_p, h_r])
            ce = F.cross_entropy(logits, yb)
            loss = ce + lam * pen
            rec = torch.zeros((), device=xb.device)
            if m.conceptizer.learnable:
                rec = F.mse_loss(m.conceptizer.decode(h), xb)
                loss = loss + cfg["recon"] * rec + cfg["sparsity"] * h.abs().sum(1).mean()
            return loss, {"ce": ce.detach(), "penalty": pen.detach(), "recon": rec.detach()}
        return M.senn_loss(m, xb, yb, lam, cfg["recon"], cfg["sparsity"])

    for epoch in loop.epochs(cfg["epochs"]):
        model.train()
        sums, n = None, 0
        for xb, yb in batches(x, y, batch_size=cfg["batch_size"], shuffle=True, generator=gen):
            loss, parts = train_step(model, opt, loss_fn, model, xb, yb)
            w = len(xb)
            cur = {"loss": loss.detach().double() * w, **{k: v.double() * w for k, v in parts.items()}}
            sums = cur if sums is None else {k: sums[k] + cur[k] for k in sums}
            n += w
        row = {"epoch": epoch + 1, **{k: v / n for k, v in to_host(sums).items()}}
        state["history"].append(row)
        ctx.log(f"[{key}] epoch {epoch + 1}: loss {row['loss']:.4f} ce {row['ce']:.4f} "
                f"penalty {row['penalty']:.4f} recon {row['recon']:.4f}")
    model.eval()
    return state["history"]


def train_plain(ctx: RunContext, key: str, model: torch.nn.Module, data: dict, cfg: dict) -> list:
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = ctx.generator(f"{key}/order")
    state = {"history": []}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "gen": gen}, state)
    x, y = data["x"].to(ctx.device), data["y"].to(ctx.device)
    for epoch in loop.epochs(cfg["posthoc_epochs"]):
        model.train()
        total = None
        for xb, yb in batches(x, y, batch_size=cfg["batch_size"], shuffle=True, generator=gen):
            loss = train_step(model, opt, lambda m, a, b: F.cross_entropy(m(a), b), model, xb, yb)
            total = loss.detach().double() * len(xb) if total is None else total + loss.detach().double() * len(xb)
        state["history"].append({"epoch": epoch + 1, "train_loss": to_host({"l": total})["l"] / len(x)})
    model.eval()
    return state["history"]


# ------------------------------------------------------------------ explainers


def senn_explainer(model: M.SENN) -> M.Explainer:
    """g(x) = theta(x)[:, :, t]: the relevance of every concept for class t."""
    return lambda x, t: model.parametrizer(x).gather(2, t.view(-1, 1, 1).expand(-1, model.parametrizer.k, 1))[..., 0]


def gradient_explainer(name: str, model, ig_steps: int) -> M.Explainer:
    def g(x, t):
        cg = x.requires_grad  # differentiable map when the estimator differentiates it
        if name == "gradient":
            return S.gradient(model, x, t, create_graph=cg)
        if name == "grad_x_input":
            return S.grad_x_input(model, x, t, create_graph=cg)
        return S.integrated_gradients(model, x, t, steps=ig_steps, create_graph=cg)
    return g


def captum_explainer(name: str, model, kind: str, lcfg: dict) -> M.Explainer:
    import warnings

    from captum.attr import KernelShap, Lime, Occlusion

    mask = None
    if kind == "mnist":  # superpixels: s x s blocks
        s = lcfg["superpixel"]
        side = 28 // s
        r = torch.arange(28) // s
        mask = (r[:, None] * side + r[None, :]).view(1, 1, 28, 28)

    def g(x, t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = x.detach()
            if name == "lime":
                return Lime(model).attribute(x, target=t, n_samples=lcfg["lime_samples"], feature_mask=mask,
                                             perturbations_per_eval=lcfg["lime_samples"]).detach()
            if name == "kernel_shap":
                return KernelShap(model).attribute(x, target=t, n_samples=lcfg["shap_samples"], feature_mask=mask,
                                                   perturbations_per_eval=lcfg["shap_samples"]).detach()
            w = lcfg["occlusion_window"]
            shape = (1, w, w) if kind == "mnist" else (1,)
            return Occlusion(model).attribute(x, target=t, sliding_window_shapes=shape, strides=shape,
                                              perturbations_per_eval=64).detach()
    return g


def explain_all(g: M.Explainer, x: torch.Tensor, t: torch.Tensor, chunk: int = 50) -> torch.Tensor:
    with torch.enable_grad():
        return torch.cat([g(xb, tb).detach() for xb, tb in zip(x.split(chunk), t.split(chunk))])


def estimate(ctx: RunContext, key: str, g: M.Explainer, x, t, pool_x, pool_t, lcfg: dict,
             pgd: bool, restarts: int | None = None) -> dict:
    """Every estimate for one explainer (lists per input), with seconds per input."""
    out, secs = {}, {}
    if pgd:
        t0 = time.perf_counter()
        out["pgd"] = M.lipschitz_pgd(g, x, t, lcfg["eps"], steps=lcfg["steps"],
                                     restarts=restarts or lcfg["restarts"],
                                     generator=ctx.generator(f"{key}/pgd")).tolist()
        secs["pgd"] = (time.perf_counter() - t0) / len(x)
    t0 = time.perf_counter()
    out["random"] = M.lipschitz_random(g, x, t, lcfg["eps"], samples=lcfg["random_samples"],
                                       generator=ctx.generator(f"{key}/random")).tolist()
    secs["random"] = (time.perf_counter() - t0) / len(x)
    t0 = time.perf_counter()
    expl = explain_all(g, pool_x, pool_t)
    est, count = M.lipschitz_discrete(expl, pool_x, lcfg["discrete_eps"])
    secs["discrete"] = (time.perf_counter() - t0) / len(pool_x)  # explanations + distances
    out["discrete"] = [v if math.isfinite(v) else None for v in est.tolist()]
    out["discrete_neighbours"] = count.tolist()
    return {"estimates": out, "seconds_per_image": secs}


def _median(v):
    v = torch.tensor([a for a in v if a is not None], dtype=torch.float64)
    return v.median().item() if len(v) else math.nan


# ------------------------------------------------------------------ the run


def run_experiment(ctx: RunContext, kind: str) -> dict:
    torch.set_grad_enabled(True)
    scfg, tcfg, lcfg = setup(), train(), lipschitz()
    if scfg["compare_lambda"] not in scfg["lambdas"]:
        raise ValueError(f"compare_lambda {scfg['compare_lambda']} is not in the sweep {scfg['lambdas']}")
    data = mnist_data(ctx, scfg["train_subset"]) if kind == "mnist" else cancer_data(ctx)
    dev = ctx.device
    x_test, y_test = data["x_test"].to(dev), data["y_test"].to(dev)
    if scfg["test_subset"]:
        x_test, y_test = x_test[:scfg["test_subset"]], y_test[:scfg["test_subset"]]
    metrics, sweep, histories, models = {}, {}, {}, {}

    # --- the lambda sweep
    xs = x_test[:lcfg["sweep_images"]]
    for lam in scfg["lambdas"]:
        key = f"senn/lambda_{lam:g}"
        torch.manual_seed(ctx.seed_for(f"{key}/init"))
        model = make_senn(kind, data, scfg).to(dev)
        histories[key] = train_senn(ctx, key, model, data, lam, tcfg)
        models[lam] = model

        def evaluate(model=model, key=key):
            acc = accuracy(model, x_test, y_test)
            pen = [M.stability_penalty(model, xb)[0].item() for xb in xs.split(50)]
            with torch.no_grad():
                logits, h, _ = model.parts(xs)
                rec = (F.mse_loss(model.conceptizer.decode(h), xs).item()
                       if model.conceptizer.learnable else 0.0)
            t = logits.argmax(1)
            t0 = time.perf_counter()
            lip = M.lipschitz_pgd(senn_explainer(model), xs, t, lcfg["eps"], steps=lcfg["steps"],
                                  restarts=lcfg["restarts"], generator=ctx.generator(f"{key}/pgd"))
            sec = (time.perf_counter() - t0) / len(xs)
            return {"test_acc": acc, "penalty": sum(pen) / len(pen), "recon": rec, "lipschitz": lip.tolist(),
                    "seconds_per_image": sec}

        res = ctx.once(f"{key}/evaluate", evaluate)
        sweep[f"{lam:g}"] = {**res, "lambda": lam}
        p = f"lambda_{lam:g}"
        metrics[f"{p}/test_acc"] = res["test_acc"]
        metrics[f"{p}/penalty"] = res["penalty"]
        metrics[f"{p}/recon_mse"] = res["recon"]
        metrics[f"{p}/lipschitz_median"] = _median(res["lipschitz"])
        ctx.log(f"[{key}] test acc {res['test_acc']:.2f}%, L_theta {res['penalty']:.4f}, "
                f"Lipschitz median {metrics[f'{p}/lipschitz_median']:.4f} ({res['seconds_per_image']:.3f} s/image)")
    from scipy.stats import spearmanr

    lams = list(scfg["lambdas"])
    meds = [metrics[f"lambda_{v:g}/lipschitz_median"] for v in lams]
    metrics["sweep/spearman_lambda_lipschitz"] = float(spearmanr(lams, meds)[0]) if len(lams) > 2 else math.nan
    acc0 = metrics["lambda_0/test_acc"]
    small = [v for v in lams if 0 < v <= 1e-2]
    metrics["sweep/max_acc_drop_small_lambda"] = (max(acc0 - metrics[f"lambda_{v:g}/test_acc"] for v in small)
                                                  if small else math.nan)
    metrics["sweep/seconds_per_image_senn_pgd"] = sum(s["seconds_per_image"] for s in sweep.values()) / len(sweep)

    # --- the post-hoc classifier
    torch.manual_seed(ctx.seed_for("posthoc/init"))
    plain = (M.CNN(scfg["activation"]) if kind == "mnist"
             else M.mlp(data["x"].shape[1], data["classes"], scfg["hidden"], scfg["activation"])).to(dev)
    histories["posthoc"] = train_plain(ctx, "posthoc", plain, data, tcfg)
    metrics["posthoc/test_acc"] = accuracy(plain, x_test, y_test)
    metrics["min_test_acc"] = min([metrics["posthoc/test_acc"]] + [metrics[f"lambda_{v:g}/test_acc"] for v in lams])

    # --- the explainer comparison
    senn = models[scfg["compare_lambda"]]
    x, pool_x = x_test[:lcfg["images"]], x_test[:lcfg["discrete_pool"]]
    results = {}
    for name in EXPLAINERS:
        model = senn if name == "senn" else plain
        t_all = predict(model, pool_x).argmax(1).to(dev)
        t_x = predict(model, x).argmax(1).to(dev)
        if name == "senn":
            g, pgd, restarts = senn_explainer(senn), True, None
        elif name in GRADIENT_BASED:
            g, pgd = gradient_explainer(name, plain, lcfg["ig_steps"]), True
            restarts = lcfg["pgd_restarts_ig"] if name == "integrated_gradients" else None
        else:
            g, pgd, restarts = captum_explainer(name, plain, kind, lcfg), False, None
        res = ctx.once(f"explainers/{name}", lambda: estimate(ctx, f"explainers/{name}", g, x, t_x,
                                                              pool_x, t_all, lcfg, pgd, restarts))
        results[name] = res
        for est, vals in res["estimates"].items():
            if est == "discrete_neighbours":
                continue
            metrics[f"explainers/{name}/median_{est}"] = _median(vals)
        for est, s in res["seconds_per_image"].items():
            metrics[f"seconds_per_image/{name}/{est}"] = s
        ctx.log(f"[{name}] medians: " + ", ".join(
            f"{e} {metrics[f'explainers/{name}/median_{e}']:.4f}" for e in res["estimates"] if e != "discrete_neighbours")
            + "; s/image: " + ", ".join(f"{e} {s:.4f}" for e, s in res["seconds_per_image"].items()))
    metrics["explainers/gradient_based_min_median_pgd"] = min(
        metrics[f"explainers/{n}/median_pgd"] for n in GRADIENT_BASED)
    metrics["explainers/discrete_with_neighbours"] = sum(
        c > 0 for c in results["senn"]["estimates"]["discrete_neighbours"]) / len(pool_x)

    # --- prototypes and relevances (figures)
    extra = {}
    with torch.no_grad():
        if kind == "mnist":
            h = torch.cat([senn.conceptizer(xb) for xb in data["x"].to(dev).split(1000)])
            top = h.topk(8, dim=0).indices.T  # k x 8
            extra["prototypes"] = data["x"][top.cpu()].squeeze(2)  # k x 8 x 28 x 28
        xr = x_test[:4]
        logits, h, theta = senn.parts(xr)
        t = logits.argmax(1)
        extra["relevance_inputs"] = xr.cpu()
        extra["relevance_theta"] = theta.gather(2, t.view(-1, 1, 1).expand(-1, theta.shape[1], 1))[..., 0].cpu()
        extra["relevance_concepts"] = h.cpu()
        extra["relevance_pred"] = t.cpu()
        extra["relevance_label"] = y_test[:4].cpu()
    ctx.save_tensors("examples", extra)
    ctx.save_json("sweep", sweep)
    ctx.save_json("explainers", {"results": results, "compare_lambda": scfg["compare_lambda"],
                                 "estimator": {n: ("pgd" if n == "senn" or n in GRADIENT_BASED else "random")
                                               for n in EXPLAINERS},
                                 "feature_names": data.get("feature_names")})
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "lipschitz": lcfg, "kind": kind})
    return metrics


@register("senn_mnist", paper=PAPER, data=("mnist",), claims_file="claims_mnist.toml",
          figures=[figures.tradeoff, figures.lipschitz_boxes, figures.prototypes, figures.relevances])
def run_mnist(ctx: RunContext) -> dict:
    """SENN on MNIST (learned concepts): the lambda trade-off and explainer stability."""
    return run_experiment(ctx, "mnist")


@register("senn_tabular", paper=PAPER, data=("scikit-learn breast cancer (bundled)",),
          claims_file="claims_tabular.toml",
          figures=[figures.tradeoff, figures.lipschitz_boxes, figures.relevances])
def run_tabular(ctx: RunContext) -> dict:
    """SENN on breast cancer (h(x) = x; stand-in for UCI / COMPAS): trade-off and stability."""
    return run_experiment(ctx, "tabular")
