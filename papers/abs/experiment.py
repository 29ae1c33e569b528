"""abs_mnist: analysis by synthesis (Schott et al., ICLR 2019) against the paper's
baselines -- a vanilla CNN, the same CNN on binarised inputs, a nearest-neighbour
classifier and a Madry-style PGD-trained CNN -- under L2, L-inf and L0 attacks.

Per model: clean accuracy on the first ``eval_images`` test images; on the first
``attack_images`` of them, every attack of the suite: PGD with a per-sample budget
found by bisection, transfer from the vanilla CNN, the boundary attack,
salt-and-pepper then the pointwise attack, AutoAttack at the L2 and L-inf
thresholds on the baselines, and for the ABS models Latent Descent.
Every adversarial any attack finds is re-checked on the model itself (for ABS: the
full model with its 8,000-latent bank and 50 Adam steps, after the attack ran on a
cheaper copy; a candidate that does not fool the full model is pushed further
along its own direction, up to twice as far, before it is given up).  Then, on the
full model, each sample's best L2 and L-inf adversarials are shortened by
bisection along their line from x, and sparsified into L0 adversarials (the k
largest changes saturated, k found by bisection; our addition, since the pointwise
attack's adversarials on the cheap ABS copy do not survive on the full model).  Per
sample and norm, the smallest perturbation over all verified adversarials is the
model's minimal adversarial distance; accuracy at the paper's thresholds (L2 1.5,
L-inf 0.3, L0 12 pixels) and the median follow from it.  Also: distal
adversarials, the ABS L2 lower bounds, and ABS's inference speed.
"""

from __future__ import annotations

import functools
import math

import gin
import torch

from common import attacks as A
from common import decision_attacks as D
from common import robustness as R
from common.adversarial import madry_train, mnist_arrays
from common.autoattack import run_autoattack
from common.context import RunContext
from common.device import WallTimer
from common.train import batches, count_parameters, cross_entropy_loss, to_device, train_epoch
from papers.abs import figures
from papers.abs import method as M
from registry import Paper, register

PAPER = Paper(
    title="Towards the first adversarially robust neural network model on MNIST",
    authors="Lukas Schott, Jonas Rauber, Matthias Bethge and Wieland Brendel",
    venue="ICLR 2019", arxiv="1805.09190", code="https://github.com/bethgelab/AnalysisBySynthesis")

MODELS = ("cnn", "binary_cnn", "madry", "nn", "binary_abs", "abs")
NORMS = ("l2", "linf", "l0")


@gin.configurable(module="abs")
def setup(train_subset=0, eval_images=10000, attack_images=1000, nn_bank=0, examples=8):
    """Training images (0 = all 60,000, else a fixed random subset); test images: clean
    accuracy on the first ``eval_images``, attacks on the first ``attack_images``; the
    nearest-neighbour bank (0 = all training images, else the first ``nn_bank``)."""
    return dict(train_subset=train_subset, eval_images=eval_images, attack_images=attack_images,
                nn_bank=nn_bank, examples=examples)


@gin.configurable(module="abs")
def train(vae_steps=5000, vae_batch_per_class=128, vae_lr=3e-3, vae_lr_drop=0.7, beta=1.0, cnn_epochs=10,
          cnn_lr=1e-3,
          madry_epochs=83, madry_width=1.0, madry_lr=1e-4, madry_steps=40, madry_step_size=0.01,
          madry_warmup_epochs=0, madry_train_subset=0):
    """VAEs: Adam steps on class-balanced batches (lr / 3 after the fraction
    ``vae_lr_drop`` of them); the CNN; the Madry baseline (Madry's recipe through
    madry_mnist's training function)."""
    return dict(vae_steps=vae_steps, vae_batch_per_class=vae_batch_per_class, vae_lr=vae_lr,
                vae_lr_drop=vae_lr_drop, beta=beta,
                cnn_epochs=cnn_epochs, cnn_lr=cnn_lr, madry_epochs=madry_epochs, madry_width=madry_width,
                madry_lr=madry_lr, madry_steps=madry_steps, madry_step_size=madry_step_size,
                madry_warmup_epochs=madry_warmup_epochs, madry_train_subset=madry_train_subset)


@gin.configurable(module="abs")
def inference(n_samples=8000, steps=50, lr=0.05, radius=5.0, binary_slope=10.0,
              binary_scales=M.REFERENCE_BINARY_SCALES, alpha=M.REFERENCE_ALPHA, eta=M.REFERENCE_ETA,
              attack_samples=8000, attack_steps=5, query_samples=8000):
    """ABS inference (the paper's 8,000 latents + 50 Adam steps of 0.05, ball 5), the
    cheaper copies used *inside* attacks: ``attack_samples``/``attack_steps`` for
    gradient attacks and Latent Descent, ``query_samples`` with no steps for the
    decision-based attacks and for judging success inside the PGD budget search;
    their adversarials are re-checked on the full model."""
    return dict(n_samples=n_samples, steps=steps, lr=lr, radius=radius, binary_slope=binary_slope,
                binary_scales=tuple(binary_scales), alpha=alpha, eta=eta, attack_samples=attack_samples,
                attack_steps=attack_steps, query_samples=query_samples)


@gin.configurable(module="abs")
def attacks(l2_max=5.0, linf_max=0.5, pgd_search=8, pgd_steps=50, boundary_steps=5000, sp_steps=1000,
            pointwise_passes=10, latent_coarse=51, latent_fine=10, extend=(1.0, 1.1, 1.25, 1.5, 2.0),
            refine_steps=8, sparsify_steps=10, decision_on_abs=True, autoattack="standard",
            autoattack_on_abs=False, thresholds=(("l2", 1.5), ("linf", 0.3), ("l0", 12.0)),
            distal_images=20, distal_steps=100, distal_lr=1.0, distal_momentum=0.95):
    """The attack suite (module docstring) and the paper's thresholds.  PGD: per
    sample, bisection over its budget in [0, ``l2_max``] / [0, ``linf_max``]
    (``pgd_search`` halvings after one run at the maximum); ``refine_steps``:
    bisection steps on the full model along each sample's best L2 / L-inf
    adversarial; ``sparsify_steps``: bisection steps over the number of pixels of
    the sparsified attack (L0); ``decision_on_abs``: run the decision-based attacks
    (boundary, salt-and-pepper + pointwise) on the ABS models too; ``autoattack``: a
    ``common.autoattack`` version run at the L2 and L-inf thresholds on the baselines
    (and with ``autoattack_on_abs`` on the ABS models' gradient copies), its
    adversarials entering each sample's best over attacks (None: not run)."""
    return dict(l2_max=l2_max, linf_max=linf_max, pgd_search=pgd_search, pgd_steps=pgd_steps,
                boundary_steps=boundary_steps, sp_steps=sp_steps, pointwise_passes=pointwise_passes,
                latent_coarse=latent_coarse, latent_fine=latent_fine, extend=tuple(extend),
                refine_steps=refine_steps, sparsify_steps=sparsify_steps, decision_on_abs=decision_on_abs,
                autoattack=autoattack, autoattack_on_abs=autoattack_on_abs,
                thresholds=dict(thresholds),
                distal_images=distal_images, distal_steps=distal_steps, distal_lr=distal_lr,
                distal_momentum=distal_momentum)


# ------------------------------------------------------------------ training


def train_vaes(ctx: RunContext, data: dict, cfg: dict) -> M.ClassVAEs:
    vaes = M.ClassVAEs().to(ctx.device)
    opt = torch.optim.Adam(vaes.parameters(), lr=cfg["vae_lr"])
    gen = ctx.generator("vae/batches")
    by_class = [to_device(data["x_train"][data["y_train"] == k], device=ctx.device) for k in range(M.N_CLASSES)]
    state = {"history": []}
    chunk = max(1, cfg["vae_steps"] // 10)  # a checkpoint every tenth of training
    loop = ctx.resumable("vaes", {"vaes": vaes, "opt": opt, "gen": gen}, state)
    bar = ctx.progress(total=cfg["vae_steps"], desc="class VAEs (steps)")
    rounds = math.ceil(cfg["vae_steps"] / chunk)
    for r in loop.epochs(rounds):
        steps = min(chunk, cfg["vae_steps"] - r * chunk)
        lr = cfg["vae_lr"] / (3.0 if r * chunk >= cfg["vae_lr_drop"] * cfg["vae_steps"] else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = M.train_vaes(vaes, by_class, opt, steps, cfg["vae_batch_per_class"], gen, cfg["beta"],
                            ctx.device, autocast=ctx.autocast)
        state["history"].append({"step": r * chunk + steps, "neg_elbo": loss})
        ctx.log(f"[vaes] step {r * chunk + steps}/{cfg['vae_steps']}: -ELBO per image {loss:.2f}")
        bar.update(steps)
    bar.close()
    vaes.eval()
    ctx.save_json("vae_history", state["history"])
    return vaes


def train_cnn(ctx: RunContext, data: dict, cfg: dict) -> M.VanillaCNN:
    model = M.VanillaCNN().to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["cnn_lr"])
    order = ctx.generator("cnn/order")
    loop = ctx.resumable("cnn", {"model": model, "opt": opt, "order": order})
    x, y = to_device(data["x_train"], data["y_train"], device=ctx.device)
    for epoch in loop.epochs(cfg["cnn_epochs"]):
        stats = train_epoch(model, batches(x, y, batch_size=128, shuffle=True, generator=order), opt,
                            cross_entropy_loss, autocast=ctx.autocast)
        ctx.log(f"[cnn] epoch {epoch + 1}/{cfg['cnn_epochs']}: loss {stats['train_loss']:.4f}")
    return model.eval()


def train_madry(ctx: RunContext, data: dict, cfg: dict):
    """The Madry et al. baseline: ``common.adversarial.madry_train`` (Madry's network
    and PGD training, as madry_mnist trains it) with this profile's recipe."""
    sub = cfg["madry_train_subset"]
    train_data = data if not sub else {**data, "x_train": data["x_train"][:sub], "y_train": data["y_train"][:sub]}
    monitor = (data["x_test"][-500:], data["y_test"][-500:])
    model, history = madry_train(ctx, "adversarial", train_data, monitor, epochs=cfg["madry_epochs"],
                                 width=cfg["madry_width"], batch_size=50, lr=cfg["madry_lr"], eps=0.3,
                                 steps=cfg["madry_steps"], step_size=cfg["madry_step_size"],
                                 random_start=True, warmup_epochs=cfg["madry_warmup_epochs"])
    ctx.save_json("madry_history", history)
    return model.eval()


# ------------------------------------------------------------------ attacks


def _first_adversarial(check, x, y, candidates):
    """Per sample, the first candidate (in order) that ``check`` misclassifies; x where none."""
    out, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for cand in candidates:
        rows = (~done).nonzero().flatten()
        if len(rows) == 0:
            break
        hit = R.predict(check, cand[rows], 200) != y[rows]
        out[rows[hit]] = cand[rows[hit]]
        done[rows[hit]] = True
    return out


def pgd_search(attack_model, check_model, x, y, norm, eps_max, search_steps, steps, generator):
    """PGD (step 2.5 eps / steps, random start) against ``attack_model`` with a
    per-sample budget found by bisection on [0, eps_max] (``common.robustness.
    minimal_eps``); success is judged on ``check_model``.  Per sample the adversarial
    at the smallest budget that worked (x where none did)."""
    def attack(_model, xs, ys, eps):
        return A.pgd(attack_model, xs, ys, eps, norm=norm, steps=steps, step_size=2.5 * eps / steps,
                     generator=generator, batch_size=500)

    _, adv = R.minimal_eps(check_model, x, y, attack, eps_max=eps_max, search_steps=search_steps,
                           batch_size=200, return_adversarials=True)
    return adv


def verify(model, x, y, adv, factors):
    """Re-check adversarials on ``model``: x + f (adv - x), for the first factor f that
    fools it (f = 1 first); x (no adversarial) where none does."""
    moved = (adv != x).flatten(1).any(1)
    cands = [torch.where(moved[:, None, None, None], (x + f * (adv - x)).clamp(0, 1), x) for f in factors]
    return _first_adversarial(model, x, y, cands)


@torch.no_grad()
def sparsify(model, x, y, adv, steps):
    """An L0 attack built on a dense adversarial (ours, not the paper's): saturate the
    k pixels where |adv - x| is largest (to 1 where adv > x, to 0 below) and bisect,
    per sample, on k in [1, 784] in log scale for the smallest k that ``model``
    misclassifies.  x where even every moved pixel saturated does not fool."""
    out = x.clone()
    rows = (adv != x).flatten(1).any(1).nonzero().flatten()
    if len(rows) == 0:
        return out
    flat, yr = x[rows].flatten(1), y[rows]
    delta = adv[rows].flatten(1) - flat
    n, p = flat.shape
    rank = torch.empty_like(delta, dtype=torch.long)
    rank.scatter_(1, delta.abs().argsort(1, descending=True), torch.arange(p, device=x.device).expand(n, -1))
    saturated, moved = (delta > 0).to(flat.dtype), delta != 0

    def candidate(log2k):  # (n,) log2 of the pixel counts -> images
        keep = (rank < (2 ** log2k).ceil()[:, None]) & moved
        return torch.where(keep, saturated, flat).view(n, *x.shape[1:])

    lo = torch.zeros(n, device=x.device)  # one pixel: assumed not to fool
    hi = torch.full((n,), math.log2(p), device=x.device)
    ok = R.predict(model, candidate(hi), 200) != yr  # every moved pixel saturated
    for _ in range(steps):
        mid = (lo + hi) / 2
        fooled = R.predict(model, candidate(mid), 200) != yr
        hi, lo = torch.where(fooled, mid, hi), torch.where(fooled, lo, mid)
    best = candidate(hi)  # hi fooled at some step, or is the all-pixels candidate checked above
    out[rows[ok]] = best[ok]
    return out


def attack_suite(ctx: RunContext, name: str, models: dict, x, y, cnn, cfg: dict) -> tuple[dict, dict]:
    """All attacks on one model (module docstring).  ``models``: ``full`` (verdicts),
    ``gradient`` (gradient attacks), ``query`` (decision-based attacks).  Returns, per
    attack, the verified adversarials."""
    full, grad_m, query_m = models["full"], models["gradient"], models["query"]
    gen = ctx.generator(f"{name}/attacks")
    found, timing = {}, {}

    def run(label, fn):
        with WallTimer(x.device) as t:
            found[label] = fn()
        timing[label] = t.seconds
        ctx.log(f"[{name}] {label}: {timing[label]:.1f} s")

    for norm in ("l2", "linf"):
        eps_max, search = cfg[f"{norm}_max"], cfg["pgd_search"]
        run(f"pgd_{norm}", lambda: pgd_search(grad_m, query_m, x, y, norm, eps_max, search, cfg["pgd_steps"], gen))
        if name != "cnn":
            run(f"transfer_{norm}",
                lambda: pgd_search(cnn, query_m, x, y, norm, eps_max, search, cfg["pgd_steps"], gen))
    if cfg["decision_on_abs"] or not isinstance(full, M.ABS):
        run("boundary", lambda: D.boundary_attack(query_m, x, y, steps=cfg["boundary_steps"], generator=gen))
        run("pointwise", lambda: D.pointwise(query_m, x, y, init_steps=cfg["sp_steps"],
                                             max_passes=cfg["pointwise_passes"], generator=gen))
    if cfg["autoattack"] is not None and (cfg["autoattack_on_abs"] or not isinstance(full, M.ABS)):
        for norm in ("l2", "linf"):  # at the paper's thresholds; verified below like every attack
            run(f"autoattack_{norm}", lambda: run_autoattack(
                grad_m, x, y, cfg["thresholds"][norm], norm=norm, version=cfg["autoattack"],
                seed=ctx.seed_for(f"{name}/autoattack/{norm}")).x_adv)
    if isinstance(full, M.ABS):
        run("latent_descent", lambda: M.latent_descent(grad_m, x, y, cfg["latent_coarse"], cfg["latent_fine"]))
    labels = list(found)
    with WallTimer(x.device) as t:
        stacked = torch.cat([found[k] for k in labels])
        xs, ys = x.repeat(len(labels), 1, 1, 1), y.repeat(len(labels))
        verified = verify(full, xs, ys, stacked, cfg["extend"]).split(len(x))
    ctx.log(f"[{name}] verification on the full model: {t.seconds:.1f} s")
    return {k: v for k, v in zip(labels, verified)}, timing


def minimal_distances(x, clean_wrong, found: dict) -> tuple[dict, dict, dict]:
    """Per norm: per-sample distances per attack (0 where the model already errs on x,
    inf where the attack found nothing), the best over attacks, and the best
    adversarial image.  ``found`` holds verified adversarials (x where none)."""
    names = list(found)
    advs = torch.stack([found[k] for k in names])  # (attacks, N, ...)
    moved = (advs != x).flatten(2).any(2)
    per_attack, best, best_adv = {}, {}, {}
    for norm in NORMS:
        d = R.norms((advs - x).flatten(0, 1).float(), norm).view(len(names), len(x))
        d = torch.where(moved, d, torch.full_like(d, math.inf))
        d = torch.where(clean_wrong, torch.zeros_like(d), d)
        best[norm], arg = d.min(0)
        best_adv[norm] = advs[arg, torch.arange(len(x))]
        per_attack[norm] = dict(zip(names, d))
    return per_attack, best, best_adv


# ------------------------------------------------------------------ distal adversarials


def distal_adversarials(grad_model, full_model, probs, n, cfg, generator, device):
    """Uniform noise optimised (SGD with momentum on the model's log-probability of a
    target class, clipped to [0, 1]) until p(target) >= 0.9 or ``distal_steps``;
    returns the images, targets and the *full* model's p(target)."""
    target = torch.arange(n, device=device) % M.N_CLASSES
    x = torch.rand(n, 1, 28, 28, generator=generator).to(device)
    v = torch.zeros_like(x)
    for _ in range(cfg["distal_steps"]):
        xr = x.clone().requires_grad_(True)
        p = probs(grad_model(xr))[torch.arange(n), target]
        done = p.detach() >= 0.9
        if done.all():
            break
        (g,) = torch.autograd.grad(p.clamp_min(1e-30).log().sum(), xr)
        v = cfg["distal_momentum"] * v + g
        x = torch.where(done[:, None, None, None], x, (x + cfg["distal_lr"] * v).clamp(0, 1)).detach()
    with torch.no_grad():
        p_full = probs(full_model(x))
    return x.cpu(), target.cpu(), p_full[torch.arange(n), target].cpu(), p_full.argmax(1).cpu()


# ------------------------------------------------------------------ the run


@register("abs_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.inference_figure, figures.accuracy_vs_perturbation, figures.smallest_adversarials,
                   figures.distal, figures.lower_bounds])
def run(ctx: RunContext) -> dict:
    """ABS vs CNN, binary CNN, nearest neighbour and Madry et al. on MNIST under L2, L-inf, L0."""
    scfg, tcfg, icfg, acfg = setup(), train(), inference(), attacks()
    dev = ctx.device
    data = mnist_arrays(ctx, scfg["train_subset"])
    n_eval, n_att = min(scfg["eval_images"], 10000), min(scfg["attack_images"], scfg["eval_images"])
    x_eval, y_eval = data["x_test"][:n_eval].to(dev), data["y_test"][:n_eval].to(dev)
    x, y = x_eval[:n_att], y_eval[:n_att]
    ctx.log(f"MNIST: clean accuracy on the first {n_eval} test images, attacks on the first {n_att}")

    vaes = train_vaes(ctx, data, tcfg)
    cnn = train_cnn(ctx, data, tcfg)
    madry = train_madry(ctx, data, tcfg)
    bank = data["x_train"] if not scfg["nn_bank"] else data["x_train"][:scfg["nn_bank"]]
    bank_y = data["y_train"] if not scfg["nn_bank"] else data["y_train"][:scfg["nn_bank"]]
    nn_model = M.NearestNeighbour(bank, bank_y).to(dev).eval()

    kw = dict(lr=icfg["lr"], beta=tcfg["beta"], radius=icfg["radius"], binary_slope=icfg["binary_slope"])
    abs_models = {}
    for name, binary in (("abs", False), ("binary_abs", True)):
        scales = icfg["binary_scales"] if binary else None
        full = M.ABS(vaes, n_samples=icfg["n_samples"], steps=icfg["steps"], binary=binary,
                     class_scales=scales, **kw).to(dev).eval()
        abs_models[name] = {"full": full, "gradient": full.cheap(icfg["attack_samples"], icfg["attack_steps"]),
                            "query": full.cheap(icfg["query_samples"], 0)}
    models = {"cnn": {"full": cnn}, "binary_cnn": {"full": M.Binarized(cnn, icfg["binary_slope"]).eval()},
              "madry": {"full": madry}, "nn": {"full": nn_model}, **abs_models}
    for m in models.values():
        m.setdefault("gradient", m["full"])
        m.setdefault("query", m["full"])

    metrics = {}
    # clean accuracy, and ABS's inference speed
    with WallTimer(dev) as t:
        abs_models["abs"]["full"].bank()
    metrics["abs/bank_decode_s"] = t.seconds
    for name, m in models.items():
        res = ctx.once(f"{name}/clean", lambda: _clean(m, x_eval, y_eval, x))
        metrics.update({f"{name}/{k}": v for k, v in res.items()})
        ctx.log(f"[{name}] clean accuracy {res['clean']:.2f}% on {n_eval} images"
                + (f"; {res['images_per_s']:.1f} images/s (full), {res['images_per_s_attack']:.1f} (attack copy)"
                   if "images_per_s" in res else ""))
    metrics["eval_images"], metrics["attack_images"] = n_eval, n_att
    for name in ("cnn", "madry"):
        metrics[f"{name}/params"] = count_parameters(models[name]["full"])

    # attacks
    distances, examples = {}, {"x": x[:scfg["examples"]].cpu(), "y": y[:scfg["examples"]].cpu()}
    for name in MODELS:
        m = models[name]
        res = ctx.once(f"{name}/attacks", lambda: _attack_model(ctx, name, m, x, y, cnn, acfg, scfg))
        distances[name] = res.pop("distances")
        for norm in NORMS:
            examples[f"{name}/{norm}"] = torch.tensor(res.pop(f"examples_{norm}"))
        metrics.update({f"{name}/{k}": v for k, v in res.items()})
        ctx.log(f"[{name}] " + ", ".join(f"{k} {res[k]:.3g}" for k in
                                          ("acc_l2", "acc_linf", "acc_l0", "median_l2", "median_linf", "median_l0")))

    # lower bounds (ABS), distal adversarials
    lb = ctx.once("abs/lower_bound", lambda: M.l2_lower_bound(models["abs"]["full"], x, y).tolist())
    lb_t, best_l2 = torch.tensor(lb), torch.tensor(distances["abs"]["l2"])
    correct = best_l2 > 0
    metrics["abs/median_lower_bound_l2"] = R.median(lb_t[correct]) if correct.any() else math.nan
    metrics["abs/bound_below_attacks"] = 100.0 * (lb_t[correct] <= best_l2[correct] + 1e-6).float().mean().item()
    distal = {}
    for name in ("cnn", "madry", "abs"):
        m = models[name]
        probs = (functools.partial(M.offset_softmax, alpha=icfg["alpha"], eta=icfg["eta"]) if name == "abs"
                 else (lambda lg: lg.softmax(1)))
        xd, td, pd, pred = distal_adversarials(m["gradient"], m["full"], probs, acfg["distal_images"], acfg,
                                               ctx.generator(f"{name}/distal"), dev)
        distal[name] = {"x": xd, "target": td, "p": pd, "pred": pred}
        metrics[f"{name}/distal_confident"] = 100.0 * (pd >= 0.9).float().mean().item()
        metrics[f"{name}/distal_median_p"] = pd.median().item()
        ctx.log(f"[{name}] distal adversarials: {metrics[f'{name}/distal_confident']:.0f}% reach p >= 0.9 "
                f"(median p(target) {metrics[f'{name}/distal_median_p']:.3f})")
    ctx.save_tensors("distal", distal)
    ctx.save_tensors("examples", examples)
    ctx.save_tensors("inference_example", _inference_example(models["abs"]["full"], x_eval, y_eval, icfg))
    ctx.save_json("distances", {"models": distances, "lower_bound_l2": lb})
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "inference": icfg, "attacks": acfg})
    return metrics


def _clean(m: dict, x_eval, y_eval, x_attack) -> dict:
    full = m["full"]
    with WallTimer(x_eval.device) as t:  # synchronised wall-clock (queued GPU work included)
        pred = R.predict(full, x_eval, 200)
    out = {"clean": 100.0 * (pred == y_eval).float().mean().item()}
    if isinstance(full, M.ABS):
        out["images_per_s"] = len(x_eval) / t.seconds
        with WallTimer(x_attack.device) as t, torch.enable_grad():
            # a forward and backward pass, as inside a gradient attack
            xr = x_attack.clone().requires_grad_(True)
            m["gradient"](xr).sum().backward()
        out["images_per_s_attack"] = len(x_attack) / t.seconds
        with WallTimer(x_attack.device) as t:
            R.predict(m["query"], x_attack, 200)
        out["images_per_s_query"] = len(x_attack) / t.seconds
    return out


def _attack_model(ctx, name, m, x, y, cnn, acfg, scfg) -> dict:
    found, timing = attack_suite(ctx, name, m, x, y, cnn, acfg)
    clean_right = R.predict(m["full"], x, 200) == y  # one full-model pass on the clean images
    per_attack, best, best_adv = minimal_distances(x, ~clean_right, found)
    # on the full model: bisect along each sample's best L2 and L-inf adversarial, and
    # sparsify both into L0 adversarials
    with WallTimer(x.device) as t:
        srcs = torch.cat([torch.where((clean_right & torch.isfinite(best[norm]))[:, None, None, None],
                                      best_adv[norm], x) for norm in ("l2", "linf")])
        xx, yy = x.repeat(2, 1, 1, 1), y.repeat(2)
        refined = D.line_search(m["full"], xx, yy, srcs, steps=acfg["refine_steps"])
        found["refine_l2"], found["refine_linf"] = refined.split(len(x))
    timing["refine"] = t.seconds
    with WallTimer(x.device) as t:
        found["sparsify_l2"], found["sparsify_linf"] = sparsify(m["full"], xx, yy, refined,
                                                                acfg["sparsify_steps"]).split(len(x))
    timing["sparsify"] = t.seconds
    ctx.log(f"[{name}] refinement on the full model: {timing['refine']:.1f} s; sparsified: {timing['sparsify']:.1f} s")
    per_attack, best, best_adv = minimal_distances(x, ~clean_right, found)
    th = acfg["thresholds"]
    out = {"clean_attacked": 100.0 * clean_right.float().mean().item()}
    for norm in NORMS:
        out[f"acc_{norm}"] = R.accuracy_at(best[norm], th[norm])
        out[f"median_{norm}"] = R.median(best[norm])
        for k, d in per_attack[norm].items():
            out[f"attack_median_{norm}/{k}"] = R.median(d)
        out[f"examples_{norm}"] = best_adv[norm][:scfg["examples"]].cpu().tolist()
    out["attack_seconds"] = sum(timing.values())
    out["distances"] = {norm: best[norm].cpu().tolist() for norm in NORMS}
    return out


@torch.no_grad()
def _inference_example(abs_model: M.ABS, x, y, icfg) -> dict:
    """Figure 1's material: one test image per class, its ten class reconstructions,
    scores and class probabilities."""
    idx = torch.stack([(y == k).nonzero()[0, 0] for k in range(M.N_CLASSES) if (y == k).any()])[:4]
    out = abs_model.infer(x[idx])
    p = M.offset_softmax(out["logits"], icfg["alpha"], icfg["eta"])
    return {"x": x[idx].cpu(), "y": y[idx].cpu(), "rec": out["rec"].cpu(), "logits": out["logits"].cpu(),
            "p": p.cpu()}
