"""stadv_mnist: spatially transformed adversarial examples on MNIST (Xiao et al.,
ICLR 2018, Table 1, Fig. 2 and a Table-2 analogue).

1. Train models A, B, C (Table 4; ``method.make_model``) with Adam on cross entropy.
2. Table 1: on the first ``per_class`` correctly classified test images of each digit,
   targeted stAdv (``common.attacks.stadv``, tau = 0.05, kappa = 0, per-sample L-BFGS)
   towards every target != label; success = the prediction equals the target, over
   all pairs, plus the share of images with at least one successful target.  The
   first image per digit with its nine adversarials is Fig. 2's 10 x 10 grid.
3. Sensitivity (on ``sweep_model``, the first ``sweep_pairs`` pairs): success vs tau,
   and the open choices (diagonal neighbourhood, U[0, 1) initialisation, eps in the
   square root) one at a time.
4. Table-2 analogue: a PGD-trained network (``common.adversarial``, L-inf eps 0.3),
   attacked untargeted on its first correctly classified test images by FGSM and
   PGD-L-inf (eps 0.3) and by untargeted stAdv; success = misclassification for all.
"""

from __future__ import annotations

import functools
import time

import gin
import torch

from common import attacks as A
from common.adversarial import adversarial_train, linf_pgd, madry_loss, mnist_arrays, warmup_eps
from common.context import RunContext
from common.train import accuracy, count_parameters, cross_entropy_loss, to_device
from papers.stadv import figures
from papers.stadv import method as M
from registry import Paper, register

PAPER = Paper(
    title="Spatially transformed adversarial examples",
    authors="Chaowei Xiao, Jun-Yan Zhu, Bo Li, Warren He, Mingyan Liu and Dawn Song",
    venue="ICLR 2018", arxiv="1801.02612", code="")


@gin.configurable(module="stadv")
def setup(models=("A", "B", "C"), train_subset=(("A", 0), ("B", 0), ("C", 0)), per_class=10,
          test_images=10000, chunk=256):
    """Models trained and attacked; ``train_subset``: per model, the number of training
    images (0: all 60k; a subset is a fixed random one, the same for every seed);
    ``per_class``: correctly classified test images per digit attacked (x 9 targets);
    ``test_images``: the first test images used (clean accuracy, attacked images)."""
    return dict(models=tuple(models), train_subset=dict(train_subset), per_class=per_class,
                test_images=test_images, chunk=chunk)


@gin.configurable(module="stadv")
def train(epochs=10, batch_size=64, lr=1e-3):
    """Natural training of A, B, C (Adam, cross entropy)."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr)


@gin.configurable(module="stadv")
def attack(tau=0.05, kappa=0.0, neighbourhood="4", eps=1e-8, init="zero", max_iter=1000,
           history=10, warm_start=0.1, warm_iter=200):
    """The paper's tau and kappa; our choices for the open ones (common.attacks notes).
    ``warm_start``/``warm_iter``: the second L-BFGS start (``warm_iter`` iterations at
    warm_start * tau first), per image the lower paper objective of the two; None: the
    single zero-flow start."""
    return dict(tau=tau, kappa=kappa, neighbourhood=neighbourhood, eps=eps, init=init,
                max_iter=max_iter, history=history, warm_start=warm_start, warm_iter=warm_iter)


@gin.configurable(module="stadv")
def sensitivity(sweep_model="B", sweep_pairs=90, taus=(0.0005, 0.005, 0.05, 0.5),
                ablations=(("warm_start", None), ("neighbourhood", "diagonal"), ("init", "uniform"),
                           ("eps", 1e-4))):
    """Success vs tau and one-at-a-time ablations of the open choices."""
    return dict(sweep_model=sweep_model, sweep_pairs=sweep_pairs, taus=tuple(taus),
                ablations=tuple(tuple(a) for a in ablations))


@gin.configurable(module="stadv")
def defended(arch="A", train_subset=0, epochs=10, eps=0.3, steps=40, step_size=0.01,
             warmup_epochs=0, images=1000, pgd_steps=40, pgd_step_size=0.01, stadv_max_iter=None):
    """The PGD-trained network of the Table-2 analogue (Madry's eps 0.3) and its attacks."""
    return dict(arch=arch, train_subset=train_subset, epochs=epochs, eps=eps, steps=steps,
                step_size=step_size, warmup_epochs=warmup_epochs, images=images,
                pgd_steps=pgd_steps, pgd_step_size=pgd_step_size, stadv_max_iter=stadv_max_iter)


def subset(data: dict, n: int) -> dict:
    if not n:
        return data
    keep = torch.randperm(len(data["x_train"]), generator=torch.Generator().manual_seed(0))[:n]
    return {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}


def train_model(ctx: RunContext, name: str, data: dict, cfg: dict):
    model = M.make_model(name).to(ctx.device)
    return adversarial_train(ctx, name, model, data, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                             lr=cfg["lr"], epoch_loss=lambda epoch: (cross_entropy_loss, {}),
                             monitor=lambda m: {}, generators={"order": ctx.generator(f"{name}/order")})


def run_stadv(model, x, y, target, acfg: dict, chunk: int, generator=None, **override) -> dict:
    kw = {**acfg, **override}
    t0 = time.perf_counter()
    adv, info = A.stadv(model, x, y, target=target, tau=kw["tau"], kappa=kw["kappa"],
                        neighbourhood=kw["neighbourhood"], eps=kw["eps"], init=kw["init"],
                        max_iter=kw["max_iter"], history=kw["history"], batch_size=chunk,
                        generator=generator, warm_start=kw["warm_start"], warm_iter=kw["warm_iter"],
                        return_info=True)
    info["seconds"] = time.perf_counter() - t0
    info["adv"] = adv
    return info


def table1(ctx: RunContext, name: str, model, data: dict, scfg: dict, acfg: dict) -> dict:
    x, y = to_device(data["x_test"], data["y_test"], device=ctx.device)
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    sel = M.per_class_images(pred, y, scfg["per_class"])
    img, tgt = M.all_pairs(y[sel])
    info = run_stadv(model, x[sel][img], y[sel][img], tgt, acfg, scfg["chunk"],
                     ctx.generator(f"{name}/init"))
    summary = M.success_summary(info["success"], img, len(sel))
    res = {"images": sel.tolist(), "labels": y[sel].tolist(), "pair_image": img.tolist(),
           "target": tgt.tolist(), "success": info["success"].tolist(), "pred": info["pred"].tolist(),
           "flow_loss": info["flow_loss"].tolist(), "iterations": info["iterations"].tolist(),
           "status": info["status"].tolist(), "seconds": info["seconds"],
           "second_start_won": info["second"].tolist() if "second" in info else None,
           "attacks_per_second": len(tgt) / info["seconds"], **summary}
    # Fig. 2: the first image of each digit and its nine adversarials; a flow for the quiver
    seen, firsts = set(), []
    for i, lab in enumerate(y[sel].tolist()):
        if lab not in seen:
            seen.add(lab)
            firsts.append(i)
    keep = torch.isin(img.cpu(), torch.tensor(firsts))
    ctx.save_tensors(f"examples_{name}", {
        "x": x[sel][firsts].cpu(), "labels": y[sel][firsts].cpu(),
        "adv": info["adv"][keep.to(info["adv"].device)].cpu(),
        "flow": info["flow"][keep.to(info["flow"].device)].cpu(),
        "pair_image": img[keep.to(img.device)].cpu(), "target": tgt[keep.to(tgt.device)].cpu(),
        "pred": info["pred"][keep.to(info["pred"].device)].cpu()})
    ctx.log(f"[{name}] stAdv targeted: success {summary['success_rate']:.2f}% of {len(tgt)} pairs, "
            f"{summary['image_any_success']:.1f}% of images with >= 1; {res['attacks_per_second']:.2f} attacks/s")
    return res


def sweep(ctx: RunContext, model, data: dict, t1: dict, scfg: dict, acfg: dict, sens: dict) -> dict:
    """Success vs tau and the ablations on the first ``sweep_pairs`` pairs of Table 1."""
    dev = ctx.device
    sel = torch.tensor(t1["images"], device=dev)
    img = torch.tensor(t1["pair_image"], device=dev)[:sens["sweep_pairs"]]
    tgt = torch.tensor(t1["target"], device=dev)[:sens["sweep_pairs"]]
    x, y = data["x_test"].to(dev)[sel][img], data["y_test"].to(dev)[sel][img]
    out = {"tau": {}, "ablation": {}}
    n = len(tgt)
    for tau in sens["taus"]:
        if tau == acfg["tau"]:  # the Table 1 run itself (per-sample results do not depend on the batch)
            r = {"success_rate": 100.0 * sum(t1["success"][:n]) / n,
                 "flow_loss": sum(t1["flow_loss"][:n]) / n, "iterations": sum(t1["iterations"][:n]) / n}
        else:
            info = run_stadv(model, x, y, tgt, acfg, scfg["chunk"], tau=tau)
            r = {"success_rate": 100.0 * info["success"].float().mean().item(),
                 "flow_loss": info["flow_loss"].mean().item(),
                 "iterations": info["iterations"].float().mean().item()}
        out["tau"][str(tau)] = r
        ctx.log(f"[sweep] tau {tau}: success {out['tau'][str(tau)]['success_rate']:.1f}%")
    for key, value in sens["ablations"]:
        info = run_stadv(model, x, y, tgt, acfg, scfg["chunk"], ctx.generator(f"ablation/{key}"),
                         **{key: value})
        out["ablation"][f"{key}={value}"] = {"success_rate": 100.0 * info["success"].float().mean().item(),
                                             "flow_loss": info["flow_loss"].mean().item()}
        ctx.log(f"[sweep] {key}={value}: success {out['ablation'][f'{key}={value}']['success_rate']:.1f}%")
    return out


def table2(ctx: RunContext, data: dict, dcfg: dict, acfg: dict, chunk: int) -> tuple[dict, dict]:
    """PGD-train the defended network, then FGSM / PGD / untargeted stAdv on it."""
    key = f"{dcfg['arch']}_pgd"
    model = M.make_model(dcfg["arch"]).to(ctx.device)
    gens = {"order": ctx.generator(f"{key}/order"), "attack": ctx.generator(f"{key}/attack")}

    def epoch_loss(epoch):
        e = warmup_eps(epoch, dcfg["eps"], dcfg["warmup_epochs"])
        step = dcfg["step_size"] * e / dcfg["eps"]
        return (functools.partial(madry_loss, attack=linf_pgd(e, dcfg["steps"], step, True, gens["attack"])),
                {"train_eps": e})

    model, history = adversarial_train(ctx, key, model, subset(data, dcfg["train_subset"]),
                                       epochs=dcfg["epochs"], batch_size=64, lr=1e-3,
                                       epoch_loss=epoch_loss, monitor=lambda m: {}, generators=gens)
    x, y = to_device(data["x_test"][:2 * dcfg["images"]], data["y_test"][:2 * dcfg["images"]],
                     device=ctx.device)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:dcfg["images"]], y[ok][:dcfg["images"]]

    def rate(x_adv):
        with torch.no_grad():
            return 100.0 * (model(x_adv).argmax(1) != y).float().mean().item()

    res = {"images": len(y)}
    res["fgsm_success"] = rate(A.fgsm(model, x, y, dcfg["eps"]))
    res["pgd_success"] = rate(A.pgd(model, x, y, dcfg["eps"], steps=dcfg["pgd_steps"],
                                    step_size=dcfg["pgd_step_size"], generator=ctx.generator(f"{key}/pgd")))
    over = {} if dcfg["stadv_max_iter"] is None else {"max_iter": dcfg["stadv_max_iter"]}
    info = run_stadv(model, x, y, None, acfg, chunk, **over)
    res["stadv_success"] = 100.0 * info["success"].float().mean().item()
    res["stadv_flow_loss"] = info["flow_loss"].mean().item()
    res["clean"] = accuracy(model, *to_device(data["x_test"], data["y_test"], device=ctx.device))
    ctx.log(f"[{key}] clean {res['clean']:.2f}%; untargeted success: FGSM {res['fgsm_success']:.1f}%, "
            f"PGD {res['pgd_success']:.1f}%, stAdv {res['stadv_success']:.1f}%")
    return res, history


@register("stadv_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.targeted_grid, figures.flow_quiver, figures.success_vs_tau])
def run(ctx: RunContext) -> dict:
    """Targeted stAdv on MNIST models A, B, C; tau sensitivity; a PGD-trained model."""
    torch.set_grad_enabled(True)
    scfg, tcfg, acfg, sens, dcfg = setup(), train(), attack(), sensitivity(), defended()
    data = mnist_arrays(ctx)
    data["x_test"], data["y_test"] = data["x_test"][:scfg["test_images"]], data["y_test"][:scfg["test_images"]]
    metrics, histories, results = {}, {}, {}
    models = {}
    for name in scfg["models"]:
        model, histories[name] = train_model(ctx, name, subset(data, scfg["train_subset"].get(name, 0)), tcfg)
        models[name] = model
        metrics[f"{name}/clean"] = accuracy(model, *to_device(data["x_test"], data["y_test"], device=ctx.device))
        metrics[f"{name}/params"] = count_parameters(model)
        ctx.log(f"[{name}] clean accuracy {metrics[f'{name}/clean']:.2f}%")
        res = ctx.once(f"{name}/table1", lambda: table1(ctx, name, model, data, scfg, acfg))
        results[name] = res
        for k in ("success_rate", "image_any_success", "image_all_success", "attacks_per_second"):
            metrics[f"{name}/{k}"] = res[k]
    metrics["min_success_rate"] = min(metrics[f"{n}/success_rate"] for n in scfg["models"])
    sm = sens["sweep_model"]
    sw = ctx.once("sensitivity", lambda: sweep(ctx, models[sm], data, results[sm], scfg, acfg, sens))
    for tau, r in sw["tau"].items():
        metrics[f"tau/{tau}/success_rate"] = r["success_rate"]
    for k, r in sw["ablation"].items():
        metrics[f"ablation/{k}/success_rate"] = r["success_rate"]
    base = sw["tau"].get(str(acfg["tau"]))
    if base is not None:
        metrics["ablation/base/success_rate"] = base["success_rate"]
    t2, histories["defended"] = table2(ctx, data, dcfg, acfg, scfg["chunk"])
    for k, v in t2.items():
        metrics[f"defended/{k}"] = v
    ctx.save_json("table1", results)
    ctx.save_json("sensitivity", {**sw, "model": sm, "tau_paper": acfg["tau"]})
    ctx.save_json("defended", t2)
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "attack": acfg, "sensitivity": sens,
                             "defended": dcfg})
    return metrics
