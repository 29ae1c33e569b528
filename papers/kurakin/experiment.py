"""kurakin_mnist: one-step adversarial training with mixed batches and label leaking
(Kurakin, Goodfellow & Bengio, ICLR 2017), on MNIST.

Four networks of the same architecture: natural training, and Algorithm 1 (k of m
examples replaced, weight lambda, per-example eps from a truncated normal) with
three one-step attacks: FGSM on the true label, FGSM on the model's predicted label,
and step l.l.  Each epoch records clean and FGSM (true-label) accuracy on held-out
test images; at the end every network meets one-step attacks (true label, predicted
label, step l.l.) and iterative ones (BIM, PGD) over a grid of eps.
"""

from __future__ import annotations

import functools

import gin
import torch

from common import robustness as R
from common.adversarial import MadryCNN, adversarial_train, mixed_batch_loss, mnist_arrays
from common.autoattack import run_autoattack
from common.context import RunContext
from common.train import accuracy, count_parameters, cross_entropy_loss, to_device
from papers.kurakin import figures
from papers.kurakin import method as M
from registry import Paper, register

PAPER = Paper(
    title="Adversarial machine learning at scale",
    authors="Alexey Kurakin, Ian Goodfellow and Samy Bengio", venue="ICLR 2017",
    arxiv="1611.01236")


@gin.configurable(module="kurakin")
def setup(models=tuple(M.TRAINING), train_subset=0, eval_images=10000, iterative_images=1000,
          monitor_images=2000, width=1.0):
    return dict(models=tuple(models), train_subset=train_subset, eval_images=eval_images,
                iterative_images=iterative_images, monitor_images=monitor_images, width=width)


@gin.configurable(module="kurakin")
def train(epochs=20, batch_size=32, k=16, lam=0.3, lr=1e-3, eps_max=0.3, eps_sigma=0.15):
    """Algorithm 1's m = 32, k = 16, lambda = 0.3; eps ~ N(0, sigma) truncated to
    [0, eps_max] (the paper's 16 and 8 grey levels, scaled to MNIST's eps 0.3).  The
    paper's optimiser (RMSProp 0.045 for Inception v3 on ImageNet) does not carry over
    to an MNIST CNN: Adam 1e-3 for 20 epochs is our choice for the full profile."""
    return dict(epochs=epochs, batch_size=batch_size, k=k, lam=lam, lr=lr, eps_max=eps_max,
                eps_sigma=eps_sigma)


@gin.configurable(module="kurakin")
def evaluate(eps_grid=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3), iterative_steps=None, examples=8,
             autoattack="standard"):
    """``iterative_steps`` None: BIM with Kurakin's rule (one grey level per step).
    ``autoattack``: a ``common.autoattack`` version run at the largest eps on the
    iterative-attack images (metrics ``autoattack_<eps>`` and ``worst_<eps>``, the
    per-image worst case over BIM, PGD and AutoAttack), or None to skip it."""
    return dict(eps_grid=tuple(eps_grid), iterative_steps=iterative_steps, examples=examples,
                autoattack=autoattack)


def train_model(ctx: RunContext, name: str, data: dict, cfg: dict, width: float, monitor) -> tuple:
    """Train one network with ``common.adversarial.adversarial_train``; resumable per
    epoch.  History: clean and FGSM accuracy per epoch."""
    model = MadryCNN(width=width).to(ctx.device)
    gens = {w: ctx.generator(f"{name}/{w}") for w in ("order", "eps", "pick")}
    method = M.TRAINING[name]
    if method is None:
        loss_fn = cross_entropy_loss
    else:
        attack = M.one_step_attack(method[0], cfg["eps_max"], cfg["eps_sigma"], gens["eps"])
        loss_fn = functools.partial(mixed_batch_loss, attack=attack, k=cfg["k"], lam=cfg["lam"],
                                    label=method[1] or "true", generator=gens["pick"])

    x_mon, y_mon = to_device(*monitor, device=ctx.device)
    fgsm = M.evaluation_attacks()["fgsm"]

    def watch(model):
        adv_ok = R.correct_under(model, x_mon, y_mon, fgsm, cfg["eps_max"])
        return {"clean": accuracy(model, x_mon, y_mon), "fgsm": 100.0 * adv_ok.float().mean().item()}

    return adversarial_train(
        ctx, name, model, data, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
        epoch_loss=lambda epoch: (loss_fn, {}), monitor=watch, generators=gens,
        describe=lambda r: f"clean {r['clean']:.2f}%, FGSM(eps {cfg['eps_max']}) {r['fgsm']:.2f}%")


def evaluate_model(ctx: RunContext, name: str, model, data: dict, scfg: dict, cfg: dict) -> dict:
    """One-step attacks on ``eval_images``, iterative ones on ``iterative_images``."""
    dev = ctx.device
    x, y = data["x_test"][:scfg["eval_images"]].to(dev), data["y_test"][:scfg["eval_images"]].to(dev)
    attacks = M.evaluation_attacks(cfg["iterative_steps"], ctx.generator(f"{name}/evaluation"))
    clean = R.predict(model, x) == y
    out = {"clean": 100.0 * clean.float().mean().item()}
    top = max(cfg["eps_grid"])
    iterative_at_top = None
    for attack in ("fgsm", "fgsm_pred", "step_ll", "bim", "pgd"):
        n = scfg["eval_images"] if attack in ("fgsm", "fgsm_pred", "step_ll") else scfg["iterative_images"]
        for eps in cfg["eps_grid"]:
            ok = R.correct_under(model, x[:n], y[:n], attacks[attack], eps, clean=clean[:n])
            out[f"{attack}_{eps:g}"] = 100.0 * ok.float().mean().item()
            if attack in ("bim", "pgd") and eps == top:
                iterative_at_top = ok if iterative_at_top is None else iterative_at_top & ok
    m = scfg["iterative_images"]
    out["clean_iterative_images"] = accuracy(model, x[:m], y[:m])
    if cfg["autoattack"] is not None:
        aa = run_autoattack(model, x[:m], y[:m], top, norm="linf", version=cfg["autoattack"],
                            seed=ctx.seed_for(f"{name}/autoattack"))
        out[f"autoattack_{top:g}"] = 100.0 * aa.robust.float().mean().item()
        out[f"worst_{top:g}"] = 100.0 * (iterative_at_top & aa.robust).float().mean().item()
        out["autoattack_seconds"] = sum(aa.seconds.values())
    ctx.log(f"[{name}] clean {out['clean']:.2f}%; at eps {top:g}: " + ", ".join(
        f"{a} {out[f'{a}_{top:g}']:.2f}%" for a in ("fgsm", "fgsm_pred", "step_ll", "bim", "pgd")))
    return out


@torch.no_grad()
def example_grid(models: dict, data: dict, eps: float, n: int, device) -> dict:
    """FGSM (true label) examples at eps against each network, with its predictions."""
    x, y = data["x_test"][:n].to(device), data["y_test"][:n].to(device)
    out = {"x": x.cpu(), "y": y.cpu(), "eps": eps}
    fgsm = M.evaluation_attacks()["fgsm"]
    for name, model in models.items():
        with torch.enable_grad():
            adv = fgsm(model, x, y, eps)
        out[f"{name}/adv"] = adv.cpu()
        out[f"{name}/pred_clean"] = model(x).argmax(1).cpu()
        out[f"{name}/pred_adv"] = model(adv).argmax(1).cpu()
    return out


@register("kurakin_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.accuracy_over_training, figures.accuracy_vs_eps, figures.fgsm_examples])
def run(ctx: RunContext) -> dict:
    """One-step adversarial training (FGSM, FGSM on predictions, step l.l.) and label leaking."""
    scfg, tcfg, ecfg = setup(), train(), evaluate()
    data = mnist_arrays(ctx, scfg["train_subset"])
    monitor = (data["x_test"][-scfg["monitor_images"]:], data["y_test"][-scfg["monitor_images"]:])
    ctx.log(f"MNIST: {len(data['x_train'])} training images; one-step attacks on the first {scfg['eval_images']} "
            f"test images, iterative on the first {scfg['iterative_images']}; per-epoch monitor on "
            f"the last {scfg['monitor_images']}")
    metrics, histories, models = {}, {}, {}
    for name in scfg["models"]:
        model, histories[name] = train_model(ctx, name, data, tcfg, scfg["width"], monitor)
        models[name] = model
        result = ctx.once(f"{name}/evaluation", lambda: evaluate_model(ctx, name, model, data, scfg, ecfg))
        metrics.update({f"{name}/{k}": v for k, v in result.items()})
        metrics[f"{name}/params"] = count_parameters(model)
    ctx.save_tensors("examples", example_grid(models, data, tcfg["eps_max"], ecfg["examples"], ctx.device))
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "evaluate": ecfg})
    return metrics
