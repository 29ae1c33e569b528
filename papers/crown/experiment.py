"""crown_mnist: certified lower bounds on the minimal adversarial distortion of MNIST
MLPs -- IBP, global Lipschitz, Fast-Lin, CROWN-Ada (ReLU) and CROWN-general (tanh,
sigmoid, arctan) -- beside an attack's upper bound, per model x norm x target
(Zhang et al., NeurIPS 2018, Tables 2-4 and the appendix's attack comparison).

Each MLP is trained here (Adam, cross entropy; one ReLU net by L-inf PGD training with
``common.adversarial``), then on the first ``images`` test images that it classifies
correctly (as the official generate_data skips misclassified ones) and for the three
official targets (runner-up, random, least likely), every method's certified radius is
found by ``method.certified_radius``, all images and targets in one batch, timed on one
thread.  The attack radius is the smallest eps at which targeted PGD (on the margin
loss, in the [0, 1] box) reaches the target, by ``common.robustness.minimal_eps``.
"""

from __future__ import annotations

import functools
import math
import time

import gin
import torch

from common import attacks as A
from common import robustness as R
from common.adversarial import adversarial_train, linf_pgd, madry_loss, mnist_arrays, warmup_eps
from common.context import RunContext
from common.train import accuracy, count_parameters, cross_entropy_loss, to_device
from papers.crown import figures
from papers.crown import method as M
from registry import Paper, register

PAPER = Paper(
    title="Efficient neural network robustness certification with general activation functions",
    authors="Huan Zhang, Tsui-Wei Weng, Pin-Yu Chen, Cho-Jui Hsieh and Luca Daniel",
    venue="NeurIPS 2018", arxiv="1811.00866", code="https://github.com/IBM/CROWN-Robustness-Certification")

TARGETS = ("runner_up", "random", "least_likely")


@gin.configurable(module="crown")
def setup(models=("relu_2x20", "relu_3x20", "relu_3x1024", "relu_3x1024_adv",
                  "tanh_3x20", "tanh_3x1024", "sigmoid_3x20", "sigmoid_3x1024",
                  "arctan_3x20", "arctan_3x1024"),
          images=100, norms=("linf", "l2", "l1"), train_subset=0, dtype="float32", chunk=512):
    """Models as <activation>_<layers>x<width>[_adv]; the first ``images`` test images
    (the correctly classified ones are certified); certification dtype."""
    return dict(models=tuple(models), images=images, norms=tuple(norms), train_subset=train_subset,
                dtype=dtype, chunk=chunk)


@gin.configurable(module="crown")
def train(epochs=10, batch_size=128, lr=1e-3, adv_epochs=10, adv_eps=0.3, adv_steps=40,
          adv_step_size=0.01, adv_warmup_epochs=0):
    """Natural training (Adam, cross entropy) and the PGD-trained ReLU net ("_adv";
    the official adv_retrain models: L-inf PGD at eps 0.3)."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, adv_epochs=adv_epochs, adv_eps=adv_eps,
                adv_steps=adv_steps, adv_step_size=adv_step_size, adv_warmup_epochs=adv_warmup_epochs)


@gin.configurable(module="crown")
def certify(eps0=0.005, steps=15, tol=1e-5, order_tol=2e-5):
    """The official search (start 0.005, at most 15 evaluations, bracket < 1e-5);
    ``order_tol``: two radii within it count as equal in the ordering checks (twice
    the search's precision)."""
    return dict(eps0=eps0, steps=steps, tol=tol, order_tol=order_tol)


@gin.configurable(module="crown")
def attack(steps=100, search_steps=14, restarts=1, eps_max=(("linf", 1.0), ("l2", 10.0), ("l1", 40.0))):
    """Targeted PGD on the target's margin, step 2.5 eps / steps; bisection on
    [0, eps_max] per norm (an upper bound on the minimal distortion)."""
    return dict(steps=steps, search_steps=search_steps, restarts=restarts, eps_max=dict(eps_max))


def parse(name: str) -> tuple[str, tuple[int, ...], bool]:
    parts = name.split("_")
    layers, width = (int(v) for v in parts[1].split("x"))
    return parts[0], (width,) * (layers - 1), name.endswith("_adv")


def train_model(ctx: RunContext, name: str, data: dict, cfg: dict, monitor: tuple):
    act, hidden, adv = parse(name)
    model = M.make_mlp(hidden, act).to(ctx.device)
    x_mon, y_mon = to_device(*monitor, device=ctx.device)
    if adv:
        gens = {"order": ctx.generator(f"{name}/order"), "attack": ctx.generator(f"{name}/attack")}

        def epoch_loss(epoch):
            e = warmup_eps(epoch, cfg["adv_eps"], cfg["adv_warmup_epochs"])
            step = cfg["adv_step_size"] * e / cfg["adv_eps"]
            attack_fn = linf_pgd(e, cfg["adv_steps"], step, True, gens["attack"])
            return functools.partial(madry_loss, attack=attack_fn), {"train_eps": e}

        return adversarial_train(ctx, name, model, data, epochs=cfg["adv_epochs"],
                                 batch_size=cfg["batch_size"], lr=cfg["lr"], epoch_loss=epoch_loss,
                                 monitor=lambda m: {"monitor_clean": accuracy(m, x_mon, y_mon)},
                                 generators=gens, describe=lambda r: f"clean {r['monitor_clean']:.1f}%")
    return adversarial_train(ctx, name, model, data, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                             lr=cfg["lr"], epoch_loss=lambda epoch: (cross_entropy_loss, {}),
                             monitor=lambda m: {"monitor_clean": accuracy(m, x_mon, y_mon)},
                             generators={"order": ctx.generator(f"{name}/order")},
                             describe=lambda r: f"clean {r['monitor_clean']:.1f}%")


def attack_radius(model, x, target, norm: str, cfg: dict, generator) -> torch.Tensor:
    steps = cfg["steps"]

    def pgd(m, xx, yy, e):
        return A.pgd(m, xx, yy, e, norm=norm, steps=steps, step_size=2.5 * e / steps, targeted=True,
                     loss="margin", restarts=cfg["restarts"], random_start=cfg["restarts"] > 1,
                     generator=generator)

    return R.minimal_eps(model, x, target, pgd, eps_max=cfg["eps_max"][norm],
                         search_steps=cfg["search_steps"], targeted=True)


def evaluate_model(ctx: RunContext, name: str, model, data: dict, scfg: dict, ccfg: dict,
                   acfg: dict) -> dict:
    """Every radius of one model, per norm, target and image (saved), and their means."""
    act, hidden, _ = parse(name)
    dtype = getattr(torch, scfg["dtype"])
    dev = ctx.device
    x, y = data["x_test"][:scfg["images"]].to(dev), data["y_test"][:scfg["images"]].to(dev)
    with torch.no_grad():
        logits = model(x)
    keep = logits.argmax(1) == y
    x, y, logits = x[keep], y[keep], logits[keep]
    tg = M.targets(logits, y, ctx.generator(f"{name}/targets"))
    n = len(y)
    xs = x.flatten(1).to(dtype).repeat(len(TARGETS), 1)
    ys = y.repeat(len(TARGETS))
    ts = torch.cat([tg[t] for t in TARGETS])
    C = M.margin_spec(ys, ts, dtype=dtype)
    net = M.MLP.from_module(model, act, dtype)
    methods = ["ibp", "fastlin", "crown"] if act == "relu" else ["ibp", "crown"]
    out = {"images": n, "targets": {t: tg[t].tolist() for t in TARGETS}, "radii": {}, "seconds": {}}
    for norm in scfg["norms"]:
        radii, secs = {}, {}
        for meth in methods:
            t0 = time.perf_counter()
            r = M.certified_radius(net, xs, C, norm, meth, eps0=ccfg["eps0"], steps=ccfg["steps"],
                                   tol=ccfg["tol"], chunk=scfg["chunk"])
            secs[meth] = (time.perf_counter() - t0) / len(xs)  # per image and target
            radii[meth] = r
        t0 = time.perf_counter()
        radii["lipschitz"] = M.global_lipschitz_radius(net, xs, C, norm)
        secs["lipschitz"] = (time.perf_counter() - t0) / len(xs)
        t0 = time.perf_counter()
        radii["attack"] = attack_radius(model, x.repeat(len(TARGETS), 1, 1, 1), ts, norm, acfg,
                                        ctx.generator(f"{name}/{norm}/attack")).to(dtype)
        secs["attack"] = (time.perf_counter() - t0) / len(xs)
        out["radii"][norm] = {k: [v.view(len(TARGETS), n)[i].tolist() for i in range(len(TARGETS))]
                              for k, v in radii.items()}
        out["seconds"][norm] = secs
        ctx.log(f"[{name}] {norm}: " + ", ".join(
            f"{k} {v.mean().item():.4f}" for k, v in radii.items()) + "; s/instance: "
            + ", ".join(f"{k} {v:.4f}" for k, v in secs.items()))
    return out


def summarise(name: str, res: dict, order_tol: float) -> tuple[dict, dict]:
    """Mean radius per norm x target x method, the CROWN/Fast-Lin improvement (% of
    the mean, as the paper's tables), and per-image ordering counts."""
    metrics, counts = {}, {"chain": [0, 0], "ibp_le_fastlin": [0, 0], "fastlin_le_crown": [0, 0],
                           "crown_le_attack": [0, 0], "certified_le_attack": [0, 0]}
    for norm, by_method in res["radii"].items():
        for i, t in enumerate(TARGETS):
            r = {k: torch.tensor(v[i], dtype=torch.float64) for k, v in by_method.items()}
            if len(r["attack"]) == 0:
                continue
            for k, v in r.items():
                metrics[f"{name}/{norm}/{t}/{k}"] = v.mean().item() if torch.isfinite(v).all() else math.inf
            le = lambda a, b: a <= b + order_tol  # noqa: E731
            chain = le(r["ibp"], r["crown"]) & le(r["crown"], r["attack"])
            if "fastlin" in r:
                metrics[f"{name}/{norm}/{t}/improvement"] = 100 * (r["crown"].mean() / r["fastlin"].mean() - 1).item()
                chain = le(r["ibp"], r["fastlin"]) & le(r["fastlin"], r["crown"]) & le(r["crown"], r["attack"])
                for key, ok in (("ibp_le_fastlin", le(r["ibp"], r["fastlin"])),
                                ("fastlin_le_crown", le(r["fastlin"], r["crown"]))):
                    counts[key][0] += int(ok.sum())
                    counts[key][1] += len(ok)
            sound = torch.stack([le(r[k], r["attack"]) for k in r if k != "attack"]).all(0)
            for key, ok in (("chain", chain), ("crown_le_attack", le(r["crown"], r["attack"])),
                            ("certified_le_attack", sound)):
                counts[key][0] += int(ok.sum())
                counts[key][1] += len(ok)
    return metrics, counts


@register("crown_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.relu_table, figures.general_table, figures.certified_vs_attack])
def run(ctx: RunContext) -> dict:
    """Fast-Lin vs CROWN-Ada vs CROWN-general vs IBP / global Lipschitz, beside attacks, on MNIST MLPs."""
    torch.set_grad_enabled(True)
    scfg, tcfg, ccfg, acfg = setup(), train(), certify(), attack()
    data = mnist_arrays(ctx, scfg["train_subset"])
    monitor = (data["x_test"][-1000:], data["y_test"][-1000:])
    metrics, histories, results = {}, {}, {}
    counts = {}
    for name in scfg["models"]:
        model, histories[name] = train_model(ctx, name, data, tcfg, monitor)
        metrics[f"{name}/clean"] = accuracy(model, *to_device(data["x_test"], data["y_test"], device=ctx.device))
        metrics[f"{name}/params"] = count_parameters(model)
        res = ctx.once(f"{name}/certify", lambda: evaluate_model(ctx, name, model, data, scfg, ccfg, acfg))
        results[name] = res
        m, c = summarise(name, res, ccfg["order_tol"])
        metrics.update(m)
        for k, (a, b) in c.items():
            counts.setdefault(k, [0, 0])
            counts[k][0] += a
            counts[k][1] += b
    for k, (a, b) in counts.items():
        metrics[f"order/{k}"] = a / b if b else math.nan
    imp = [v for k, v in metrics.items() if k.endswith("/improvement")]
    metrics["relu/improvement_min"] = min(imp) if imp else math.nan
    metrics["relu/improvement_max"] = max(imp) if imp else math.nan
    metrics["relu/improvement_mean"] = sum(imp) / len(imp) if imp else math.nan
    lip = [metrics[k] / metrics[k.replace("/lipschitz", "/crown")] for k in metrics
           if k.endswith("/lipschitz") and metrics[k.replace("/lipschitz", "/crown")] > 0]
    metrics["lipschitz_over_crown_max"] = max(lip) if lip else math.nan
    metrics["min_clean_accuracy"] = min(metrics[f"{n}/clean"] for n in scfg["models"])
    ctx.save_json("certification", results)
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "certify": ccfg, "attack": acfg})
    return metrics
