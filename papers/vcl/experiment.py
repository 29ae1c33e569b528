"""VCL experiments (Littwin & Wolf, NeurIPS 2018, arXiv 1811.08764).

- vcl_theory: §3 on toy data, with the VCL term alone: one affine + ELU unit
  (how its output histogram and kurtosis evolve), and a linear unit on a
  two-Gaussian mixture with equal and unequal priors (separate along LDA, or
  merge).
- vcl_cnn: the reference's ELU-11 with widths divided (cpu: Fashion-MNIST as a
  stand-in for CIFAR-10; full: CIFAR-10 with the reference recipe).  Three arms:
  no normalisation, batch norm, VCL.
- vcl_mlp: an ELU MLP on Fashion-MNIST (the paper's "FC networks" claim; its
  UCI tables are not available offline), the same three arms.

Recipe (reference train script): SGD with Nesterov momentum 0.9, lr 0.05 with
x0.2/x0.1 steps, batch 250, weight decay 1e-4 on weights (not biases or
betas), per-pixel mean/std standardisation, pad-4 crop and flip augmentation
on CIFAR-10.  VCL: n = 5 (the first 10 samples of each batch), gamma = 0.01,
betas per activation position, initialised at 1 (see method.py).  Every arm
starts from the same initial weights (the batch-norm arm adds its own BN
parameters) and sees the same batch order.
"""

from __future__ import annotations

import time

import gin
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.context import RunContext
from common.train import accuracy, batches, to_device, to_host, train_epoch
from papers.vcl import figures
from papers.vcl import method as M
from registry import Paper, register

PAPER = Paper(
    title="Regularizing by the variance of the activations' sample-variances",
    authors="Etai Littwin, Lior Wolf",
    venue="NeurIPS 2018", arxiv="1811.08764",
    code="https://github.com/avirambh/vcl_pytorch (n = 5, per-position beta, gamma, ELU-11 recipe)")

ARMS = ("none", "bn", "vcl")


@gin.configurable(module="vcl")
def regulariser(n=5, gamma=0.01, beta_init=1.0):
    """The reference's VCL settings."""
    return dict(n=n, gamma=gamma, beta_init=beta_init)


@gin.configurable(module="vcl")
def train(epochs=140, batch_size=250, lr=0.05, momentum=0.9, weight_decay=1e-4,
          milestones=(60, 100), gamma_lr=(0.2, 0.1), train_subset=0, augment=False,
          clip_grad_norm=None, eval_subset=2000, kurtosis_samples=1000):
    """The reference's recipe: lr 0.05 -> 0.01 at epoch 60 -> 1e-3 at 100 (its 1e-4 at 140
    is past the 140 epochs run here).  ``train_subset`` > 0 trains on that many images;
    ``eval_subset`` test images are scored after every epoch (the whole test set at
    the end); ``kurtosis_samples`` test images give the pre-activation statistics."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                weight_decay=weight_decay, milestones=tuple(milestones), gamma_lr=tuple(gamma_lr),
                train_subset=train_subset, augment=augment, clip_grad_norm=clip_grad_norm,
                eval_subset=eval_subset, kurtosis_samples=kurtosis_samples)


@gin.configurable(module="vcl")
def cnn(dataset="cifar10", divisor=1, dropout=M.ELU11_DROPOUT):
    return dict(dataset=dataset, divisor=divisor, dropout=tuple(dropout))


@gin.configurable(module="vcl")
def mlp(dataset="fashion_mnist", width=256, depth=6):
    return dict(dataset=dataset, width=width, depth=depth)


@gin.configurable(module="vcl")
def theory(steps=2000, pairs=256, lr=0.01, priors=(0.5, 0.1)):
    """Adam steps, sub-sample pairs per step, and the mixture priors (equal, unequal)."""
    return dict(steps=steps, pairs=pairs, lr=lr, priors=tuple(priors))


# ------------------------------------------------------------------ theory


@register("vcl_theory", paper=PAPER, data=("synthetic",), claims_file="claims_theory.toml",
          figures=[figures.elu_unit_histograms, figures.mixture_histograms, figures.mixture_angle])
def run_theory(ctx: RunContext) -> dict:
    """The VCL term alone on one ELU unit and on a two-Gaussian mixture (§3)."""
    cfg, reg = theory(), regulariser()
    n = reg["n"]
    elu = ctx.once("elu_unit", lambda: M.train_elu_unit(cfg["steps"], cfg["pairs"], cfg["lr"], n,
                                                        ctx.generator("elu_unit")))
    metrics = {}
    first, last = elu["snapshots"][0], elu["snapshots"][-1]
    for key in ("kurtosis", "bimodality", "saturated_fraction"):
        metrics[f"elu_unit/{key}_initial"] = first[key]
        metrics[f"elu_unit/{key}_final"] = last[key]
    metrics["elu_unit/a_final"], metrics["elu_unit/b_final"] = last["a"], last["b"]
    ctx.log(f"ELU unit: kurtosis {first['kurtosis']:.3f} -> {last['kurtosis']:.3f}, bimodality "
            f"{first['bimodality']:.3f} -> {last['bimodality']:.3f} (a {last['a']:.3f}, b {last['b']:.3f})")
    mix = {}
    for name, prior in zip(("equal", "unequal"), cfg["priors"]):
        res = ctx.once(f"mixture_{name}", lambda prior=prior, name=name: M.train_mixture_unit(
            prior, cfg["steps"], cfg["pairs"], cfg["lr"], n, ctx.generator(f"mixture_{name}")))
        res["prior"] = prior
        mix[name] = res
        s0, s1 = res["snapshots"][0], res["snapshots"][-1]
        for key in ("cos_lda", "cos_mean_diff", "separation_fraction", "kurtosis", "bimodality"):
            metrics[f"mixture_{name}/{key}_initial"] = s0[key]
            metrics[f"mixture_{name}/{key}"] = s1[key]
        metrics[f"mixture_{name}/bimodality_final"] = s1["bimodality"]
        ctx.log(f"mixture, prior {prior}: |cos(w, LDA)| {s0['cos_lda']:.3f} -> {s1['cos_lda']:.3f}, "
                f"separation {s0['separation_fraction']:.3f} -> {s1['separation_fraction']:.3f} "
                f"of the maximum, kurtosis {s1['kurtosis']:.3f}")
    ctx.save_json("theory", {"elu_unit": elu, "mixture": mix, "config": cfg, "n": n})
    return metrics


# ------------------------------------------------------------------ networks


def load_data(ctx: RunContext, dataset: str, cfg: dict) -> dict:
    """Per-pixel standardisation with the training set's mean and std (the reference's;
    the std floored at 0.1 of the [0, 1] range, for Fashion-MNIST's near-constant border)."""
    tr, te = ctx.dataset(dataset, train=True), ctx.dataset(dataset, train=False)
    x, y = tr.images, tr.labels
    if cfg["train_subset"]:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:cfg["train_subset"]]
        x, y = x[keep], y[keep]
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(0.1)
    return {"x": (x - mean) / std, "y": y, "x_test": (te.images - mean) / std, "y_test": te.labels}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Pad-4 random crop and horizontal flip, per image, vectorised (CIFAR-10 only)."""
    b, c, h, w = x.shape
    pad = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 9, (b,), generator=gen).to(x.device)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return pad.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def make_optimizer(model: nn.Module, vcl: M.VCL | None, cfg: dict):
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1] + (list(vcl.parameters()) if vcl else [])
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg["weight_decay"]},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg["lr"], momentum=cfg["momentum"], nesterov=True)
    factors = [1.0]
    for g in cfg["gamma_lr"]:
        factors.append(factors[-1] * g)

    def schedule(epoch):
        return factors[sum(epoch >= m for m in cfg["milestones"])]
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def layer_statistics(model: nn.Module, x: torch.Tensor, bins: int = 60) -> list[dict]:
    """Per hooked layer: the median over units of the per-unit kurtosis of the
    pre-activations (ELU inputs, eval mode) over the test images, and a histogram of
    the per-unit standardised pre-activations, pooled (their shape)."""
    out = []
    for pre in M.pre_activations(model, x):
        k = M.unit_kurtosis(pre)
        flat = pre.reshape(len(pre), -1).double()
        z = (flat - flat.mean(0)) / flat.std(0).clamp_min(1e-8)
        out.append({"kurtosis_median": k.median().item(), "kurtosis_mean": k.mean().item(),
                    "units": int(k.numel()),
                    "hist": torch.histc(z.float(), bins=bins, min=-5, max=5).tolist()})
    return out


def run_arm(ctx: RunContext, arm: str, build, data: dict, cfg: dict, reg: dict) -> dict:
    """Train one arm (resumable per epoch) and evaluate it."""
    torch.manual_seed(ctx.seed_for("init"))  # the same initial weights in every arm
    model = build("bn" if arm == "bn" else "none").to(ctx.device)
    vcl = None
    if arm == "vcl":
        vcl = M.VCL(model, data["x"][:2].to(ctx.device), n=reg["n"], gamma=reg["gamma"],
                    beta_init=reg["beta_init"]).to(ctx.device)
    opt, sched = make_optimizer(model, vcl, cfg)
    gen, aug_gen = ctx.generator("order"), ctx.generator("augment")
    objects = {"model": model, "opt": opt, "sched": sched, "gen": gen, "aug_gen": aug_gen}
    if vcl is not None:
        objects["vcl"] = vcl
    state = {"history": []}
    x, y = to_device(data["x"], data["y"], device=ctx.device)
    xe, ye = data["x_test"][:cfg["eval_subset"]], data["y_test"][:cfg["eval_subset"]]
    penalty: list = [None]

    def loss_fn(m, xb, yb):
        if cfg["augment"]:
            xb = augment(xb, aug_gen)
        loss = F.cross_entropy(m(xb), yb)
        if vcl is not None:
            term = vcl.collect()
            penalty[0] = term.detach() if penalty[0] is None else penalty[0] + term.detach()
            loss = loss + vcl.gamma * term
        return loss

    loop = ctx.resumable(arm, objects, state)
    for epoch in loop.epochs(cfg["epochs"]):
        t0, penalty[0] = time.time(), None
        stats = train_epoch(model, batches(x, y, batch_size=cfg["batch_size"], shuffle=True,
                                           generator=gen), opt, loss_fn, autocast=ctx.autocast,
                            clip_grad_norm=cfg["clip_grad_norm"], sync=False)
        steps = -(-len(y) // cfg["batch_size"])
        extra = {"vcl_penalty": penalty[0] / steps} if penalty[0] is not None else {}
        row = {"epoch": epoch + 1, **to_host({**stats, **extra}),
               "test_err_subset": 100.0 - accuracy(model, xe, ye), "lr": sched.get_last_lr()[0],
               "seconds": time.time() - t0}
        sched.step()
        state["history"].append(row)
        ctx.log(f"[{arm}] epoch {row['epoch']}: loss {row['train_loss']:.4f}, test error "
                f"(first {len(ye)}) {row['test_err_subset']:.2f}%"
                + (f", VCL term {row['vcl_penalty']:.4f}" if extra else "")
                + f" ({row['seconds']:.1f}s)")
    test_err = 100.0 - accuracy(model, data["x_test"], data["y_test"])
    layers = layer_statistics(model, data["x_test"][:cfg["kurtosis_samples"]].to(ctx.device))
    info = {"test_err": test_err, "layers": layers, "history": state["history"]}
    if vcl is not None:
        info["beta"] = {k: float(v) for k, v in vcl.beta_stats().items()}
        vcl.remove()
    ctx.log(f"[{arm}] test error {test_err:.2f}%, median pre-activation kurtosis per layer "
            + " ".join(f"{l['kurtosis_median']:.2f}" for l in layers))
    return info


def run_arms(ctx: RunContext, build, dataset: str, cfg: dict) -> dict:
    reg = regulariser()
    data = load_data(ctx, dataset, cfg)
    metrics, saved = {}, {}
    for arm in ARMS:
        info = run_arm(ctx, arm, build, data, cfg, reg)
        saved[arm] = info
        metrics[f"{arm}/test_err"] = info["test_err"]
        metrics[f"{arm}/train_loss"] = info["history"][-1]["train_loss"] if info["history"] else None
        for i, layer in enumerate(info["layers"]):
            metrics[f"{arm}/kurtosis/layer{i + 1}"] = layer["kurtosis_median"]
        metrics[f"{arm}/kurtosis_mean"] = (sum(l["kurtosis_median"] for l in info["layers"])
                                           / len(info["layers"]))
        for k, v in info.get("beta", {}).items():
            metrics[f"{arm}/{k}"] = v
    ctx.save_json("arms", {"arms": saved, "dataset": dataset, "train": cfg, "regulariser": reg})
    return metrics


@register("vcl_cnn", paper=PAPER, data=("fashion_mnist (cpu)", "cifar10 (full)"),
          claims_file="claims_cnn.toml", figures=[figures.test_error, figures.kurtosis_per_layer,
                                                  figures.preactivation_histograms])
def run_cnn(ctx: RunContext) -> dict:
    """ELU-11 (narrowed) with no normalisation, batch norm, or VCL."""
    arch, cfg = cnn(), train()
    probe = ctx.dataset(arch["dataset"], train=False)

    def build(norm):
        return M.ELUNet(in_channels=probe.images.shape[1], classes=len(probe.classes),
                        divisor=arch["divisor"], norm=norm, dropout=arch["dropout"])
    return run_arms(ctx, build, arch["dataset"], cfg)


@register("vcl_mlp", paper=PAPER, data=("fashion_mnist",), claims_file="claims_mlp.toml",
          figures=[figures.test_error, figures.kurtosis_per_layer, figures.preactivation_histograms])
def run_mlp(ctx: RunContext) -> dict:
    """An ELU MLP with no normalisation, batch norm, or VCL."""
    arch, cfg = mlp(), train()
    probe = ctx.dataset(arch["dataset"], train=False)

    def build(norm):
        return M.ELUMLP(in_features=probe.images[0].numel(), classes=len(probe.classes),
                        width=arch["width"], depth=arch["depth"], norm=norm)
    return run_arms(ctx, build, arch["dataset"], cfg)
