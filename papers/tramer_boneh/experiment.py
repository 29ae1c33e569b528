"""multi_perturbation_mnist: adversarial training against L-inf, L1 and L2 perturbations,
alone and together (Tramer & Boneh, NeurIPS 2019), on MNIST.

Six networks of one architecture: natural, Adv_inf, Adv_1, Adv_2 (one perturbation
type each) and Adv_avg, Adv_max (all three, the two strategies).  Each is attacked
with PGD L-inf (eps 0.3), SLIDE L1 (eps 10) and PGD L2 (eps 2); accuracy per norm and
against their union (a sample counts only if it survives every attack), and
accuracy-vs-eps curves per norm.  Optionally (the full profile) the L2 evaluation
adds Carlini-Wagner and the decision-based boundary attack, best over attacks per
sample, on a subset.
"""

from __future__ import annotations

import functools

import gin
import torch

from common import attacks as A
from common import decision_attacks as D
from common import robustness as R
from common.adversarial import MadryCNN, adversarial_train, mnist_arrays, multi_perturbation_loss
from common.autoattack import run_autoattack
from common.context import RunContext
from common.train import accuracy, count_parameters, cross_entropy_loss, to_device
from papers.tramer_boneh import figures
from papers.tramer_boneh import method as M
from registry import Paper, register

PAPER = Paper(
    title="Adversarial training and robustness for multiple perturbations",
    authors="Florian Tramer and Dan Boneh", venue="NeurIPS 2019", arxiv="1904.13000",
    code="https://github.com/ftramer/MultiRobustness")


@gin.configurable(module="tramer_boneh")
def setup(models=tuple(M.MODELS), train_subset=0, eval_images=1000, curve_images=1000,
          extra_images=0, monitor_images=500, width=1.0):
    """``extra_images`` > 0: also run C&W and the boundary attack (L2) on that many."""
    return dict(models=tuple(models), train_subset=train_subset, eval_images=eval_images,
                curve_images=curve_images, extra_images=extra_images,
                monitor_images=monitor_images, width=width)


@gin.configurable(module="tramer_boneh")
def train(epochs=10, batch_size=100, lr=1e-3, lr_drop_epoch=5, start_small=True,
          eps=(("linf", 0.3), ("l1", 10.0), ("l2", 2.0)), train_steps=10,
          train_step_size=(("linf", 0.01), ("l1", 1.0), ("l2", 0.1))):
    """Their MNIST config.json: 6,000 steps of 100 (10 epochs), lr 1e-3 -> 1e-4 at half,
    eps / 3 in the first epoch, 10-step attacks."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, lr_drop_epoch=lr_drop_epoch,
                start_small=start_small, eps=dict(eps), train_steps=train_steps,
                train_step_size=dict(train_step_size))


@gin.configurable(module="tramer_boneh")
def evaluate(eval_steps=100, eval_restarts=40, eval_l1_step=0.5, curve_steps=20, curve_restarts=1,
             curve_grid=(("linf", (0.0, 0.1, 0.2, 0.3, 0.4)), ("l1", (0.0, 5.0, 10.0, 15.0, 20.0)),
                         ("l2", (0.0, 1.0, 2.0, 3.0, 4.0))),
             cw_steps=1000, boundary_steps=5000, examples=6, autoattack="standard"):
    """Their eval_mnist_lps.py: 100 steps, 40 restarts, L1 step 0.5 (L-inf / L2 steps
    2.5 eps / 100); curves with a cheaper PGD.  ``autoattack``: a ``common.autoattack``
    version run at the L-inf and L2 budgets on the same images (metrics
    ``<norm>_autoattack``, ``<norm>_worst``: the per-image worst case with the PGD of
    that norm, and ``union_worst``; with ``extra_images``, ``union_best_worst``: also C&W and
    the boundary attack on that subset), or None to skip it."""
    return dict(eval_steps=eval_steps, eval_restarts=eval_restarts, eval_l1_step=eval_l1_step,
                curve_steps=curve_steps, curve_restarts=curve_restarts,
                curve_grid={n: tuple(g) for n, g in curve_grid}, cw_steps=cw_steps,
                boundary_steps=boundary_steps, examples=examples, autoattack=autoattack)


def train_model(ctx: RunContext, name: str, data: dict, cfg: dict, width: float, monitor) -> tuple:
    """Train one network with ``common.adversarial.adversarial_train``; resumable per epoch."""
    norms, strategy = M.MODELS[name]
    model = MadryCNN(width=width).to(ctx.device)
    gens = {"order": ctx.generator(f"{name}/order"), "attack": ctx.generator(f"{name}/attack")}
    x_mon, y_mon = to_device(*monitor, device=ctx.device)
    mon_attacks = M.training_attacks(M.NORMS, cfg, 1.0, ctx.generator(f"{name}/monitor"))

    def epoch_loss(epoch):
        scale = 1 / 3 if cfg["start_small"] and epoch == 0 else 1.0
        if not norms:
            return cross_entropy_loss, {"eps_scale": scale}
        attacks = M.training_attacks(norms, cfg, scale, gens["attack"])
        return (functools.partial(multi_perturbation_loss, attacks=attacks, strategy=strategy or "max"),
                {"eps_scale": scale})

    def watch(model):
        row = {"clean": accuracy(model, x_mon, y_mon)}
        for norm, atk in zip(M.NORMS, mon_attacks):
            ok = R.correct_under(model, x_mon, y_mon, lambda m, a, b, e: atk(m, a, b), None)
            row[norm] = 100.0 * ok.float().mean().item()
        return row

    return adversarial_train(
        ctx, name, model, data, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
        epoch_loss=epoch_loss, monitor=watch, generators=gens, lr_milestones=[cfg["lr_drop_epoch"]],
        describe=lambda r: f"clean {r['clean']:.1f}%, training attacks: "
                           + ", ".join(f"{n} {r[n]:.1f}%" for n in M.NORMS))


def evaluate_model(ctx: RunContext, name: str, model, data: dict, scfg: dict, tcfg: dict, ecfg: dict) -> dict:
    dev = ctx.device
    n = scfg["eval_images"]
    x, y = data["x_test"][:n].to(dev), data["y_test"][:n].to(dev)
    gen = ctx.generator(f"{name}/evaluation")
    attacks = M.evaluation_attacks(ecfg, gen)
    res = R.robust_accuracy(model, x, y, attacks, tcfg["eps"])
    out = {"clean": res["clean"], **{norm: res[norm] for norm in M.NORMS}, "union": res["union"]}
    aa_robust = None  # survives AutoAttack at every norm it covers (L-inf and L2)
    if ecfg["autoattack"] is not None:
        union_worst = res["correct"]["union"].clone()
        aa_robust = torch.ones_like(union_worst)
        for norm in ("linf", "l2"):
            aa = run_autoattack(model, x, y, tcfg["eps"][norm], norm=norm, version=ecfg["autoattack"],
                                seed=ctx.seed_for(f"{name}/autoattack/{norm}"))
            worst = res["correct"][norm] & aa.robust
            union_worst &= aa.robust
            aa_robust &= aa.robust
            out[f"{norm}_autoattack"] = 100.0 * aa.robust.float().mean().item()
            out[f"{norm}_worst"] = 100.0 * worst.float().mean().item()
            out[f"{norm}_autoattack_seconds"] = sum(aa.seconds.values())
            for component, acc in aa.accuracy.items():  # the cascade's running worst case
                if component != "clean":
                    out[f"{norm}_autoattack/{component}"] = acc
        out["union_worst"] = 100.0 * union_worst.float().mean().item()
    k = min(scfg["extra_images"], n)
    if k:  # C&W and the boundary attack, best over attacks per sample (L2)
        xs, ys, eps2 = x[:k], y[:k], tcfg["eps"]["l2"]
        d_pgd = torch.where(res["correct"]["l2"][:k], torch.inf, 0.0)  # 0 = broken at eps by PGD
        d_cw = R.distances(model, xs, ys, A.carlini_wagner_l2(model, xs, ys, steps=ecfg["cw_steps"]), "l2")
        d_bd = R.distances(model, xs, ys, D.boundary_attack(model, xs, ys, steps=ecfg["boundary_steps"],
                                                            generator=gen), "l2")
        best = R.best_over_attacks(d_pgd, d_cw, d_bd)
        out.update({"extra_images": k, "l2_pgd_subset": R.accuracy_at(d_pgd, eps2),
                    "l2_cw": R.accuracy_at(d_cw, eps2), "l2_boundary": R.accuracy_at(d_bd, eps2),
                    "l2_best": R.accuracy_at(best, eps2),
                    "l2_cw_median": R.median(d_cw), "l2_boundary_median": R.median(d_bd)})
        others = res["correct"]["linf"][:k] & res["correct"]["l1"][:k]
        out["union_best"] = 100.0 * (others & (best > eps2)).float().mean().item()
        if aa_robust is not None:  # and AutoAttack at L-inf and L2, on the same subset
            out["union_best_worst"] = 100.0 * (others & (best > eps2) & aa_robust[:k]).float().mean().item()
    ctx.log(f"[{name}] " + ", ".join(f"{key} {v:.1f}%" for key, v in out.items() if "median" not in key
                                     and key != "extra_images" and not key.endswith("seconds") and "/" not in key))
    m = scfg["curve_images"]
    curves = {}
    cfg_curve = {**ecfg, "eval_steps": ecfg["curve_steps"], "eval_restarts": ecfg["curve_restarts"],
                 "eval_l1_step": ecfg["eval_l1_step"] * ecfg["eval_steps"] / ecfg["curve_steps"]}
    curve_attacks = M.evaluation_attacks(cfg_curve, gen)
    for norm in M.NORMS:
        grid = ecfg["curve_grid"][norm]
        curves[norm] = {"eps": list(grid), "accuracy": R.robust_accuracy_curve(
            model, x[:m], y[:m], curve_attacks[norm], grid)}
    out["curves"] = curves
    return out


@torch.no_grad()
def example_grid(model, data: dict, tcfg: dict, ecfg: dict, device, generator) -> dict:
    """Test images and the three attacks' adversarials against one network."""
    n = ecfg["examples"]
    x, y = data["x_test"][:n].to(device), data["y_test"][:n].to(device)
    out = {"x": x.cpu(), "y": y.cpu(), "pred_clean": model(x).argmax(1).cpu()}
    attacks = M.evaluation_attacks({**ecfg, "eval_restarts": 1}, generator)
    for norm in M.NORMS:
        with torch.enable_grad():
            adv = attacks[norm](model, x, y, tcfg["eps"][norm])
        out[f"{norm}/adv"] = adv.cpu()
        out[f"{norm}/pred"] = model(adv).argmax(1).cpu()
    return out


@register("multi_perturbation_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.accuracy_table, figures.accuracy_vs_eps, figures.adversarial_examples,
                   figures.training_curves])
def run(ctx: RunContext) -> dict:
    """Adversarial training for L-inf, L1, L2 alone and together (avg / max strategies)."""
    scfg, tcfg, ecfg = setup(), train(), evaluate()
    data = mnist_arrays(ctx, scfg["train_subset"])
    monitor = (data["x_test"][-scfg["monitor_images"]:], data["y_test"][-scfg["monitor_images"]:])
    ctx.log(f"MNIST: {len(data['x_train'])} training images; evaluation on the first {scfg['eval_images']} test "
            f"images (curves: {scfg['curve_images']}; monitor: the last {scfg['monitor_images']})")
    metrics, histories, curves, examples = {}, {}, {}, {}
    for name in scfg["models"]:
        model, histories[name] = train_model(ctx, name, data, tcfg, scfg["width"], monitor)
        result = ctx.once(f"{name}/evaluation", lambda: evaluate_model(ctx, name, model, data, scfg, tcfg, ecfg))
        curves[name] = result.pop("curves")
        metrics.update({f"{name}/{k}": v for k, v in result.items()})
        metrics[f"{name}/params"] = count_parameters(model)
        if name == "adv_max" or (name == scfg["models"][-1] and not examples):
            examples = example_grid(model, data, tcfg, ecfg, ctx.device, ctx.generator("examples"))
            examples["model"] = name
    ctx.save_tensors("examples", {k: v for k, v in examples.items() if k != "model"})
    ctx.save_json("histories", histories)
    ctx.save_json("curves", curves)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "evaluate": ecfg,
                             "examples_model": examples.get("model")})
    return metrics
