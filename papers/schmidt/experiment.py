"""Schmidt et al. (NeurIPS 2018, arXiv 1804.11285) experiments.

- robust_sample_complexity_theory: the Gaussian and Bernoulli models (method.py) in
  closed form: standard and l_inf-robust error against n for several d, the n at
  which the robust error reaches 50% (n50) against d, and the linear vs thresholded
  rule in the Bernoulli model.
- robust_sample_complexity_mnist: a small CNN trained on MNIST subsets of n images,
  with standard training and with PGD adversarial training at eps 0.1 / 0.2 / 0.3,
  each with and without input binarisation; every model is scored by one fixed
  attack (PGD-20, random start, on the same 1,000 test images) at every n.
"""

from __future__ import annotations

import functools
import math
import time

import gin
import torch
import torch.nn.functional as F

from common import attacks as A
from common.adversarial import evaluating
from common.context import RunContext
from common.train import accuracy, predict, to_device, train_steps
from papers.schmidt import figures
from papers.schmidt import method as M
from registry import Paper, register

PAPER = Paper(
    title="Adversarially robust generalization requires more data",
    authors="Ludwig Schmidt, Shibani Santurkar, Dimitris Tsipras, Kunal Talwar, Aleksander Madry",
    venue="NeurIPS 2018", arxiv="1804.11285",
    code="none used (no official code was consulted; closed forms and training are ours)")


# ---------------------------------------------------------------- theory


@gin.configurable(module="schmidt")
def theory(dims=(100, 400, 1600, 6400, 25600), ns=None, eps=0.5, draws=200,
           bernoulli_dims=(100, 400, 1600, 6400), bernoulli_eps_over_tau=0.5, bernoulli_ns=None):
    """Gaussian model: theta* = 1, sigma = d^(1/4), l_inf budget ``eps``, ``draws``
    training sets per (d, n).  Bernoulli model: tau = d^(-1/4), eps = ``bernoulli_eps_over_tau``
    * tau.  ``ns``: the n grid (default: 40 geometric points from 1 to 1024)."""
    grid = sorted({max(1, round(v)) for v in torch.logspace(0, math.log10(1024), 40).tolist()})
    return dict(dims=tuple(dims), ns=tuple(ns or grid), eps=eps, draws=draws,
                bernoulli_dims=tuple(bernoulli_dims), bernoulli_eps_over_tau=bernoulli_eps_over_tau,
                bernoulli_ns=tuple(bernoulli_ns or grid))


@register("robust_sample_complexity_theory", paper=PAPER, data=("synthetic",),
          claims_file="claims_theory.toml",
          figures=[figures.gaussian_curves, figures.n50_against_d, figures.bernoulli_curves])
def run_theory(ctx: RunContext) -> dict:
    """Closed-form error curves of the Gaussian and Bernoulli models (§2-§4)."""
    cfg = theory()
    gen = ctx.generator("gaussian")
    gauss = {}
    for d in ctx.progress(cfg["dims"], desc="gaussian d"):
        gauss[str(d)] = M.gaussian_errors(d, cfg["ns"], cfg["eps"], cfg["draws"], gen)
    bern = {}
    for d in cfg["bernoulli_dims"]:
        tau = d ** -0.25
        res = M.bernoulli_errors(d, cfg["bernoulli_ns"], tau, cfg["bernoulli_eps_over_tau"] * tau)
        bern[str(d)] = {**res, "tau": tau, "eps": cfg["bernoulli_eps_over_tau"] * tau}
    ctx.save_json("theory", {"config": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in cfg.items()},
                             "gaussian": gauss, "bernoulli": bern})

    metrics = {}
    dims = list(cfg["dims"])
    n50 = [M.crossing(gauss[str(d)]["n"], gauss[str(d)]["robust"]) for d in dims]
    n50_std = [M.crossing(gauss[str(d)]["n"], gauss[str(d)]["standard"], 0.05) for d in dims]
    for d, a, b in zip(dims, n50, n50_std):
        metrics[f"gaussian/d{d}/n50_robust"] = a
        metrics[f"gaussian/d{d}/n05_standard"] = b
        metrics[f"gaussian/d{d}/standard_error_n1"] = gauss[str(d)]["standard"][0]
    metrics["gaussian/n50_slope"] = M.loglog_slope(dims, n50)
    metrics["gaussian/n05_standard_slope"] = M.loglog_slope(dims, n50_std)
    std_n1 = [gauss[str(d)]["standard"][0] for d in dims]
    metrics["gaussian/standard_error_n1_spread"] = max(std_n1) - min(std_n1)

    bdims = list(cfg["bernoulli_dims"])
    lin = [M.crossing(bern[str(d)]["n"], bern[str(d)]["robust_linear"]) for d in bdims]
    thr = [M.crossing(bern[str(d)]["n"], bern[str(d)]["robust_thresholded"]) for d in bdims]
    for d, a, b in zip(bdims, lin, thr):
        metrics[f"bernoulli/d{d}/n50_robust_linear"] = a
        metrics[f"bernoulli/d{d}/n50_robust_thresholded"] = b
    lin05 = [M.crossing(bern[str(d)]["n"], bern[str(d)]["robust_linear"], 0.05) for d in bdims]
    thr05 = [M.crossing(bern[str(d)]["n"], bern[str(d)]["robust_thresholded"], 0.05) for d in bdims]
    for d, a, b in zip(bdims, lin05, thr05):
        metrics[f"bernoulli/d{d}/n05_robust_linear"] = a
        metrics[f"bernoulli/d{d}/n05_robust_thresholded"] = b
    metrics["bernoulli/n05_linear_slope"] = M.loglog_slope(bdims, lin05)
    metrics["bernoulli/n05_thresholded_slope"] = M.loglog_slope(bdims, thr05)
    metrics["bernoulli/n05_ratio_largest_d"] = lin05[-1] / thr05[-1]
    metrics["bernoulli/n50_linear_slope"] = M.loglog_slope(bdims, lin)
    return metrics


# ---------------------------------------------------------------- MNIST


@gin.configurable(module="schmidt")
def mnist(sizes=(500, 1000, 2000, 5000, 10000), eps=(0.1, 0.2, 0.3), binarize=True,
          batch_size=50, lr=1e-3, min_steps=250, min_epochs=2, ramp_fraction=0.5,
          train_pgd_steps=5, eval_pgd_steps=20, eval_images=1000, width=16, hidden=100):
    """Training subsets of ``sizes`` images (nested: the first n of one fixed shuffle of
    the 60k training set, the same for every seed), Adam(``lr``), batch ``batch_size``,
    max(``min_steps``, ``min_epochs`` epochs) updates per model (a fixed budget, no
    early stopping).  PGD training: ``train_pgd_steps`` steps of size 2.5 eps / steps
    from a random start, eps ramped linearly from 0 over the first ``ramp_fraction`` of
    the updates.  Evaluation: PGD-``eval_pgd_steps`` (step 2.5 eps / steps, random
    start, one restart) on the first ``eval_images`` test images, the same attack for
    every model and n; binarised models are attacked through the straight-through
    gradient of the threshold (BPDA)."""
    return dict(sizes=tuple(sizes), eps=tuple(eps), binarize=binarize, batch_size=batch_size,
                lr=lr, min_steps=min_steps, min_epochs=min_epochs, ramp_fraction=ramp_fraction,
                train_pgd_steps=train_pgd_steps, eval_pgd_steps=eval_pgd_steps,
                eval_images=eval_images, width=width, hidden=hidden)


def _pgd(eps, steps, generator):
    return functools.partial(A.pgd, eps=eps, norm="linf", steps=steps, step_size=2.5 * eps / steps,
                             random_start=True, generator=generator)


def train_model(ctx, key: str, x, y, cfg: dict, *, binarize: bool, eps: float | None) -> torch.nn.Module:
    """One small CNN on (x, y): standard training (``eps`` None) or PGD training at ``eps``."""
    torch.manual_seed(ctx.seed_for(f"{key}/init"))
    model = M.SmallCNN(binarize=binarize, width=cfg["width"], hidden=cfg["hidden"]).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    order, noise = ctx.generator(f"{key}/order"), ctx.generator(f"{key}/attack")
    n = len(x)
    steps = max(cfg["min_steps"], math.ceil(cfg["min_epochs"] * n / cfg["batch_size"]))
    ramp = max(1, int(cfg["ramp_fraction"] * steps))
    perm = torch.randperm(n, generator=order)
    pos = [0]

    def next_batch():
        nonlocal perm
        if pos[0] + cfg["batch_size"] > n:
            perm, pos[0] = torch.randperm(n, generator=order), 0
        idx = perm[pos[0]:pos[0] + cfg["batch_size"]]
        pos[0] += cfg["batch_size"]
        return to_device(x[idx], y[idx], device=ctx.device)

    def step_fn(step):
        xb, yb = next_batch()
        if eps is not None:
            e = eps * min(1.0, (step + 1) / ramp)
            with evaluating(model):
                xb = _pgd(e, cfg["train_pgd_steps"], noise)(model, xb, yb).detach()
        return F.cross_entropy(model(xb), yb), {}

    train_steps(model, opt, step_fn, steps, autocast=ctx.autocast)
    model.eval()
    return model


def evaluate(ctx, key: str, model, x, y, eps_list, steps: int) -> dict:
    """Clean accuracy and PGD accuracy (%) at each eps on (x, y)."""
    x, y = to_device(x, y, device=ctx.device)
    clean = predict(model, x).argmax(1) == y.cpu()
    out = {"clean": 100.0 * clean.float().mean().item()}
    for e in eps_list:
        x_adv = _pgd(e, steps, ctx.generator(f"{key}/eval/{e}"))(model, x, y)
        ok = clean & (predict(model, x_adv).argmax(1) == y.cpu())
        out[f"robust_eps{e}"] = 100.0 * ok.float().mean().item()
    return out


@register("robust_sample_complexity_mnist", paper=PAPER, data=("mnist",),
          claims_file="claims_mnist.toml",
          figures=[figures.mnist_curves, figures.mnist_binarisation])
def run_mnist(ctx: RunContext) -> dict:
    """Standard and robust test accuracy against the training-set size (§5, MNIST)."""
    cfg = mnist()
    train_set, test_set = ctx.dataset("mnist", train=True), ctx.dataset("mnist", train=False)
    shuffle = torch.randperm(len(train_set.images), generator=torch.Generator().manual_seed(0))
    x_all, y_all = train_set.images[shuffle], train_set.labels[shuffle]
    x_te, y_te = test_set.images[:cfg["eval_images"]], test_set.labels[:cfg["eval_images"]]
    arms = [("standard", False, None)] + [(f"at{e}", False, e) for e in cfg["eps"]]
    if cfg["binarize"]:
        arms += [("bin_standard", True, None)] + [(f"bin_at{e}", True, e) for e in cfg["eps"]]

    results: dict = {}
    bar = ctx.progress(total=len(cfg["sizes"]) * len(arms), desc="models")
    for n in cfg["sizes"]:
        for arm, binarize, eps in arms:
            key = f"n{n}/{arm}"

            def fit_and_score(n=n, binarize=binarize, eps=eps, key=key):
                t0 = time.time()
                model = train_model(ctx, key, x_all[:n], y_all[:n], cfg, binarize=binarize, eps=eps)
                trained = time.time() - t0
                scores = evaluate(ctx, key, model, x_te, y_te,
                                  cfg["eps"] if eps is None else (eps,), cfg["eval_pgd_steps"])
                scores["train_acc"] = accuracy(model, *to_device(x_all[:n], y_all[:n], device=ctx.device))
                return {**scores, "train_seconds": trained, "eval_seconds": time.time() - t0 - trained}

            results[key] = ctx.once(key, fit_and_score)
            r = results[key]
            ctx.log(f"[{key}] clean {r['clean']:.1f}%, "
                    + ", ".join(f"{k} {v:.1f}%" for k, v in r.items() if k.startswith("robust"))
                    + f" ({r['train_seconds']:.0f}+{r['eval_seconds']:.0f} s)")
            bar.update(1)
    bar.close()
    ctx.save_json("mnist", {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                            "results": results})
    return mnist_metrics(results, cfg)


def mnist_metrics(results: dict, cfg: dict) -> dict:
    """Flat metrics: every accuracy, and per eps the summaries the claims judge."""
    metrics = {f"{key}/{k}": v for key, r in results.items() for k, v in r.items()
               if not k.endswith("seconds")}
    sizes = list(cfg["sizes"])
    std_err = [100.0 - results[f"n{n}/standard"]["clean"] for n in sizes]
    metrics["standard/error_slope"] = M.loglog_slope(sizes, std_err)
    metrics["largest_n/at_clean_min"] = min(results[f"n{sizes[-1]}/at{e}"]["clean"] for e in cfg["eps"])
    metrics["largest_n/standard/clean"] = results[f"n{sizes[-1]}/standard"]["clean"]
    for e in cfg["eps"]:
        rob = [results[f"n{n}/at{e}"][f"robust_eps{e}"] for n in sizes]
        std = [results[f"n{n}/standard"]["clean"] for n in sizes]
        metrics[f"eps{e}/robust_below_standard"] = sum(r < s for r, s in zip(rob, std)) / len(sizes)
        metrics[f"eps{e}/robust_error_slope"] = M.loglog_slope(sizes, [100.0 - r for r in rob])
        metrics[f"eps{e}/robust_gain"] = rob[-1] - rob[0]
        metrics[f"eps{e}/standard_gain"] = std[-1] - std[0]
        if cfg["binarize"]:
            for name, n in (("smallest_n", sizes[0]), ("second_n", sizes[1]), ("largest_n", sizes[-1])):
                metrics[f"eps{e}/{name}/binarisation_gain"] = (
                    results[f"n{n}/bin_at{e}"][f"robust_eps{e}"] - results[f"n{n}/at{e}"][f"robust_eps{e}"])
    return metrics
