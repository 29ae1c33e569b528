"""madry_mnist: PGD adversarial training on MNIST (Madry et al., ICLR 2018) against
an undefended network of the same architecture.

Two networks are trained -- ``natural`` (cross entropy on clean images) and
``adversarial`` (cross entropy on L-inf PGD examples, eq. 2.1) -- and both are
evaluated with the mnist_challenge leaderboard's white-box attacks at eps = 0.3
(FGSM, PGD-40, PGD-100, PGD-100 on the CW loss, PGD-100 with random restarts), on
accuracy-vs-eps curves under L-inf and L2 PGD, and on a grid of adversarial
examples.  The full profile is the paper's recipe; the cpu profile a scaled one
(configs/cpu.gin lists what is scaled).
"""

from __future__ import annotations

import gin
import torch

from common import robustness as R
from common.adversarial import madry_train, mnist_arrays
from common.autoattack import run_autoattack
from common.context import RunContext
from common.train import count_parameters
from papers.madry import figures
from papers.madry import method as M
from registry import Paper, register

PAPER = Paper(
    title="Towards deep learning models resistant to adversarial attacks",
    authors="Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras and Adrian Vladu",
    venue="ICLR 2018", arxiv="1706.06083", code="https://github.com/MadryLab/mnist_challenge")

KINDS = ("natural", "adversarial")


@gin.configurable(module="madry")
def setup(train_subset=0, eval_images=10000, restart_images=10000, curve_images=1000,
          monitor_images=500, width=1.0):
    """Images used (0 = all training images; the first N test images), network width."""
    return dict(train_subset=train_subset, eval_images=eval_images, restart_images=restart_images,
                curve_images=curve_images, monitor_images=monitor_images, width=width)


@gin.configurable(module="madry")
def train(epochs=83, natural_epochs=83, batch_size=50, lr=1e-4, eps=0.3, steps=40, step_size=0.01,
          random_start=True, warmup_epochs=0):
    """Madry's MNIST recipe: 100,000 Adam steps of batch 50 (83 epochs), PGD-40 of 0.01."""
    return dict(epochs=epochs, natural_epochs=natural_epochs, batch_size=batch_size, lr=lr, eps=eps,
                steps=steps, step_size=step_size, random_start=random_start,
                warmup_epochs=warmup_epochs)


@gin.configurable(module="madry")
def evaluate(eps=0.3, steps=100, step_size=0.01, extra_steps=(40,), restarts=50,
             linf_grid=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4),
             l2_grid=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0), curve_steps=100, examples=10,
             autoattack="standard"):
    """The leaderboard's attacks (eps 0.3, PGD-100 of 0.01, 50 restarts; metrics ``pgd``,
    ``pgd_cw``, ``pgd_restarts``; ``pgd40`` for each extra step count) and the curves.
    ``autoattack``: a ``common.autoattack`` version (or plan) run on the same images
    (metrics ``autoattack`` and ``worst_case``, the per-image worst case over the
    leaderboard attacks and AutoAttack; ``autoattack/<component>`` the cascade's running
    accuracy, ``autoattack_seconds``), or None to skip it."""
    return dict(eps=eps, steps=steps, step_size=step_size, extra_steps=tuple(extra_steps),
                restarts=restarts, linf_grid=tuple(linf_grid), l2_grid=tuple(l2_grid),
                curve_steps=curve_steps, examples=examples, autoattack=autoattack)


def train_model(ctx: RunContext, kind: str, data: dict, cfg: dict, width: float,
                monitor: tuple) -> tuple[torch.nn.Module, list]:
    """Train one network with ``common.adversarial.madry_train``; resumable per epoch
    (a finished training only reloads)."""
    epochs = cfg["epochs"] if kind == "adversarial" else cfg["natural_epochs"]
    return madry_train(ctx, kind, data, monitor, adversarial=kind == "adversarial", epochs=epochs,
                       width=width, batch_size=cfg["batch_size"], lr=cfg["lr"], eps=cfg["eps"],
                       steps=cfg["steps"], step_size=cfg["step_size"], random_start=cfg["random_start"],
                       warmup_epochs=cfg["warmup_epochs"])


def evaluate_model(ctx: RunContext, kind: str, model, data: dict, setup_cfg: dict, cfg: dict) -> dict:
    """Leaderboard attacks, restarts (adversarial network), curves, example images."""
    dev, eps = ctx.device, cfg["eps"]
    n = setup_cfg["eval_images"]
    x, y = data["x_test"][:n].to(dev), data["y_test"][:n].to(dev)
    gen = ctx.generator(f"{kind}/evaluation")
    attacks = M.leaderboard_attacks(cfg["steps"], cfg["step_size"], cfg["extra_steps"], gen)
    res = R.robust_accuracy(model, x, y, attacks, eps)
    out = {"clean": res["clean"], **{name: res[name] for name in attacks}, "all_attacks": res["union"]}
    ctx.log(f"[{kind}] eps {eps}: " + ", ".join(f"{k} {v:.2f}%" for k, v in out.items()))
    if cfg["autoattack"] is not None:
        aa = run_autoattack(model, x, y, eps, norm="linf", version=cfg["autoattack"],
                            seed=ctx.seed_for(f"{kind}/autoattack"))
        out["autoattack"] = 100.0 * aa.robust.float().mean().item()
        out["worst_case"] = 100.0 * (res["correct"]["union"] & aa.robust).float().mean().item()
        out.update({f"autoattack/{name}": acc for name, acc in aa.accuracy.items() if name != "clean"})
        out["autoattack_seconds"] = sum(aa.seconds.values())
        ctx.log(f"[{kind}] AutoAttack: " + ", ".join(f"{k} {v:.2f}%" for k, v in aa.accuracy.items())
                + f" ({out['autoattack_seconds']:.0f} s); worst case over all attacks "
                f"{out['worst_case']:.2f}% (leaderboard attacks alone {out['all_attacks']:.2f}%)")
    if kind == "adversarial" and cfg["restarts"] > 1:
        m = min(setup_cfg["restart_images"], n)
        attack = M.restarts_attack(cfg["steps"], cfg["step_size"], cfg["restarts"], gen)
        restarted = R.correct_under(model, x[:m], y[:m], attack, eps)
        out["pgd_restarts"] = 100.0 * restarted.float().mean().item()
        out["pgd_same_images"] = 100.0 * res["correct"]["pgd"][:m].float().mean().item()
        out["restart_images"] = m
        ctx.log(f"[{kind}] PGD-{cfg['steps']} x {cfg['restarts']} restarts on {m} images: "
                f"{out['pgd_restarts']:.2f}% (single run on the same images {out['pgd_same_images']:.2f}%)")
    k = setup_cfg["curve_images"]
    curves = {}
    for norm, grid in (("linf", cfg["linf_grid"]), ("l2", cfg["l2_grid"])):
        acc = R.robust_accuracy_curve(model, x[:k], y[:k], M.curve_attack(norm, cfg["curve_steps"], gen), grid)
        curves[norm] = {"eps": list(grid), "accuracy": acc}
    out["curves"] = curves
    return out


@torch.no_grad()
def example_grid(models: dict, data: dict, cfg: dict, device, generator) -> dict:
    """The first test images, and PGD adversarials against each network at eps."""
    n = cfg["examples"]
    x, y = data["x_test"][:n].to(device), data["y_test"][:n].to(device)
    out = {"x": x.cpu(), "y": y.cpu()}
    attack = M.leaderboard_attacks(cfg["steps"], cfg["step_size"], (), generator)["pgd"]
    for kind, model in models.items():
        with torch.enable_grad():
            adv = attack(model, x, y, cfg["eps"])
        out[f"{kind}/adv"] = adv.cpu()
        out[f"{kind}/pred_clean"] = model(x).argmax(1).cpu()
        out[f"{kind}/pred_adv"] = model(adv).argmax(1).cpu()
    return out


@register("madry_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.accuracy_vs_eps, figures.adversarial_examples, figures.training_curves])
def run(ctx: RunContext) -> dict:
    """PGD adversarial training vs natural training on MNIST, leaderboard attacks at eps 0.3."""
    scfg, tcfg, ecfg = setup(), train(), evaluate()
    data = mnist_arrays(ctx, scfg["train_subset"])
    monitor = (data["x_test"][-scfg["monitor_images"]:], data["y_test"][-scfg["monitor_images"]:])
    ctx.log(f"MNIST: {len(data['x_train'])} training images; evaluation on the first "
            f"{scfg['eval_images']} test images (monitor: the last {scfg['monitor_images']})")
    metrics, histories, curves, models = {}, {}, {}, {}
    for kind in KINDS:
        model, histories[kind] = train_model(ctx, kind, data, tcfg, scfg["width"], monitor)
        models[kind] = model
        result = ctx.once(f"{kind}/evaluation", lambda: evaluate_model(ctx, kind, model, data, scfg, ecfg))
        curves[kind] = result.pop("curves")
        metrics.update({f"{kind}/{name}": value for name, value in result.items()})
        metrics[f"{kind}/params"] = count_parameters(model)
    ctx.save_tensors("examples", example_grid(models, data, ecfg, ctx.device, ctx.generator("examples")))
    ctx.save_json("histories", histories)
    ctx.save_json("curves", curves)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "evaluate": ecfg})
    return metrics
