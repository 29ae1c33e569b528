"""sparse_fourier_l0_mnist / sparse_fourier_l0_fashion: the L0-robust sparse DCT
defence of Bafna, Murtagh & Vyas (NeurIPS 2018, §5 experiments) on MNIST and
Fashion-MNIST.

Per dataset: the same small CNN is trained on the full images and on the top-k DCT
projections for every k; the top-k models are attacked on their raw (undefended)
input by JSMA and C&W-L0 (``common.l0_attacks``), with a budget of ``pixels`` changed
pixels -- the paper's threat model, where the attacker does not know the defence --
and each adversarial image is then classified (i) as is (undefended), (ii) after the
plain top-k projection, (iii) after IHT with t = the budget, and (iv) after IHT with a
mis-specified t.  An adaptive attack (JSMA through IHT, BPDA) is run as an extension
beyond the paper's threat model.  A synthetic phase diagram checks IHT's exact
recovery of k-sparse DCT signals under t arbitrary spikes.
"""

from __future__ import annotations

import gin
import torch

from common import l0_attacks as L0
from common.context import RunContext
from common.adversarial import adversarial_train
from common.train import accuracy, count_parameters, cross_entropy_loss, predict
from papers.sparse_fourier import figures
from papers.sparse_fourier import method as M
from registry import Paper, register

PAPER = Paper(
    title="Thwarting adversarial examples: an L0-robust sparse Fourier transform",
    authors="Mitali Bafna, Jack Murtagh and Nikhil Vyas",
    venue="NeurIPS 2018", arxiv="1812.05013")

DATASETS = {"sparse_fourier_l0_mnist": "mnist", "sparse_fourier_l0_fashion": "fashion_mnist"}


@gin.configurable(module="sparse_fourier")
def setup(ks=(40, 80, 150), train_subset=0, clean_images=10000, iters=20):
    """Top-k sizes, training subset (0: all 60k), test images for clean accuracy,
    IHT iterations."""
    return dict(ks=tuple(ks), train_subset=train_subset, clean_images=clean_images, iters=iters)


@gin.configurable(module="sparse_fourier")
def train(epochs=10, batch_size=64, lr=1e-3, width=(16, 32, 100)):
    """Adam, cross entropy; SmallCNN channels / hidden units."""
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, width=tuple(width))


@gin.configurable(module="sparse_fourier")
def attack(pixels=40, jsma_images=1000, cw_images=200, cw_steps=100, cw_rounds=20, cw_shrink=0.2,
           cw_const_tries=3, t_misspecified=(10, 80), bpda_k=80, bpda_images=200,
           bpda_backward=("identity", "projection"), examples=6):
    """L0 budget ``pixels`` (JSMA: gamma = pixels / 784; C&W-L0: an adversarial that
    changes more is no attack); images attacked per model; IHT's mis-specified t;
    the adaptive (BPDA) JSMA on the top-``bpda_k`` model."""
    return dict(pixels=pixels, jsma_images=jsma_images, cw_images=cw_images, cw_steps=cw_steps,
                cw_rounds=cw_rounds, cw_shrink=cw_shrink, cw_const_tries=cw_const_tries,
                t_misspecified=tuple(t_misspecified), bpda_k=bpda_k, bpda_images=bpda_images,
                bpda_backward=tuple(bpda_backward), examples=examples)


@gin.configurable(module="sparse_fourier")
def synthetic(grid=(5, 10, 20, 40, 80, 160, 320), trials=20, iters=50, spike=10.0, small_kt=400):
    """Phase diagram: k and t over ``grid``, ``trials`` float64 signals per cell, exact
    recovery = relative error < 1e-6; ``small_kt``: the k t below which the claim
    expects exact recovery every time."""
    return dict(grid=tuple(grid), trials=trials, iters=iters, spike=spike, small_kt=small_kt)


def load_data(ctx: RunContext, name: str, subset: int) -> dict:
    tr, te = ctx.dataset(name, train=True), ctx.dataset(name, train=False)
    x, y = tr.images, tr.labels
    if subset:  # a fixed subset, the same for every seed
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:subset]
        x, y = x[keep], y[keep]
    return {"x_train": x, "y_train": y, "x_test": te.images, "y_test": te.labels}


def train_model(ctx: RunContext, key: str, x: torch.Tensor, y: torch.Tensor, cfg: dict):
    model = M.SmallCNN(*cfg["width"]).to(ctx.device)
    model, _ = adversarial_train(ctx, key, model, {"x_train": x, "y_train": y}, epochs=cfg["epochs"],
                                 batch_size=cfg["batch_size"], lr=cfg["lr"],
                                 epoch_loss=lambda epoch: (cross_entropy_loss, {}), monitor=lambda m: {},
                                 generators={"order": ctx.generator(f"{key}/order")})
    return model


def defended_accuracies(model, x_adv, y, k: int, pixels: int, t_alt, iters: int) -> dict:
    """Accuracy (%) of the top-k model on adversarial images: as is, after the plain
    projection, after IHT with t = pixels and with each mis-specified t."""
    out = {"undefended": accuracy(model, x_adv, y), "projection": accuracy(model, M.project_topk(x_adv, k), y),
           "iht": accuracy(model, M.iht_image(x_adv, k, pixels, iters), y)}
    for t in t_alt:
        out[f"iht_t{t}"] = accuracy(model, M.iht_image(x_adv, k, t, iters), y)
    return out


def attack_model(ctx: RunContext, key: str, model, k: int, x, y, acfg: dict, iters: int) -> dict:
    """JSMA and C&W-L0 on the raw input of the top-k model; accuracies with and
    without recovery, L0 statistics, and a few triplets for the figure."""
    res, examples = {}, {}
    n_pix = x[0].numel()
    targets = (y + torch.randint(1, 10, y.shape, generator=ctx.generator(f"{key}/targets"))) % 10
    runs = {"jsma": lambda xs, ys, ts: L0.jsma(model, xs, ts, theta=1.0, gamma=acfg["pixels"] / n_pix),
            "cw_l0": lambda xs, ys, ts: L0.carlini_wagner_l0(
                model, xs, ys, steps=acfg["cw_steps"], rounds=acfg["cw_rounds"], shrink=acfg["cw_shrink"],
                const_tries=acfg["cw_const_tries"], max_pixels=acfg["pixels"])}
    sizes = {"jsma": acfg["jsma_images"], "cw_l0": acfg["cw_images"]}
    for name, fn in runs.items():
        n = sizes[name]
        xs, ys, ts = x[:n], y[:n], targets[:n]
        adv = fn(xs, ys, ts)
        l0 = L0.l0_norm(adv, xs).float()
        r = defended_accuracies(model, adv, ys, k, acfg["pixels"], acfg["t_misspecified"], iters)
        right = predict(model, xs).argmax(1) == ys.cpu()
        fooled = predict(model, adv).argmax(1) != ys.cpu()
        r.update(images=n, clean_raw=accuracy(model, xs, ys), l0_mean=l0.mean().item(), l0_max=l0.max().item(),
                 success=100.0 * (fooled & right).sum().item() / max(1, right.sum().item()))
        res[name] = r
        m = acfg["examples"]
        examples[name] = {"original": xs[:m].cpu(), "adversarial": adv[:m].cpu(),
                          "recovered": M.iht_image(adv[:m], k, acfg["pixels"], iters).cpu(),
                          "label": ys[:m].cpu(), "pred_adv": predict(model, adv[:m]).argmax(1),
                          "pred_rec": predict(model, M.iht_image(adv[:m], k, acfg["pixels"], iters)).argmax(1)}
        ctx.log(f"[{key}] {name} on {n}: " + ", ".join(f"{a} {b:.1f}" for a, b in r.items()))
    return res, examples


def bpda_attack(ctx: RunContext, model, k: int, x, y, acfg: dict, iters: int) -> dict:
    """Extension: JSMA against classifier(IHT(.)) with BPDA gradients; the defended
    accuracy on its output (forward through IHT, t = pixels)."""
    n = acfg["bpda_images"]
    xs, ys = x[:n], y[:n]
    targets = (ys + torch.randint(1, 10, ys.shape, generator=ctx.generator("bpda/targets"))) % 10
    out = {}
    for mode in acfg["bpda_backward"]:
        defended = M.Defended(model, k, acfg["pixels"], iters, bpda=mode).eval()
        adv = L0.jsma(defended, xs, targets, theta=1.0, gamma=acfg["pixels"] / xs[0].numel())
        out[mode] = {"iht": accuracy(model, M.iht_image(adv, k, acfg["pixels"], iters), ys),
                     "undefended": accuracy(model, adv, ys),
                     "l0_mean": L0.l0_norm(adv, xs).float().mean().item(), "images": n}
        ctx.log(f"[bpda-{mode}] k={k}: " + ", ".join(f"{a} {b:.1f}" for a, b in out[mode].items()))
    return out


def phase_diagram(ctx: RunContext, side: int, cfg: dict) -> dict:
    """Exact-recovery rate of IHT on synthetic exactly k-sparse DCT images + t spikes."""
    gen = ctx.generator("synthetic")
    rate = {}
    for k in cfg["grid"]:
        for t in cfg["grid"]:
            x, e = M.sparse_signals(cfg["trials"], side, k, t, gen, spike=cfg["spike"])
            err = M.recovery_error(x, e, k, t, cfg["iters"])
            rate[f"{k},{t}"] = (err < 1e-6).double().mean().item()
    return {"grid": list(cfg["grid"]), "rate": rate}


def run_dataset(ctx: RunContext) -> dict:
    torch.set_grad_enabled(True)
    scfg, tcfg, acfg, ycfg = setup(), train(), attack(), synthetic()
    data = load_data(ctx, DATASETS[ctx.experiment.name], scfg["train_subset"])
    dev = ctx.device
    xt, yt = data["x_test"][:scfg["clean_images"]].to(dev), data["y_test"][:scfg["clean_images"]].to(dev)
    iters = scfg["iters"]
    metrics, results = {}, {}
    full = train_model(ctx, "full", data["x_train"], data["y_train"], tcfg)
    metrics["full/clean"] = accuracy(full, xt, yt)
    metrics["params"] = count_parameters(full)
    gaps, over_proj = [], []
    for k in scfg["ks"]:
        key = f"k{k}"
        model = train_model(ctx, key, M.project_topk(data["x_train"], k), data["y_train"], tcfg)
        metrics[f"{key}/clean"] = accuracy(model, M.project_topk(xt, k), yt)
        metrics[f"{key}/clean_raw"] = accuracy(model, xt, yt)
        metrics[f"{key}/clean_iht"] = accuracy(model, M.iht_image(xt, k, acfg["pixels"], iters), yt)
        metrics[f"{key}/gap_to_full"] = metrics["full/clean"] - metrics[f"{key}/clean"]
        show = k == (acfg["bpda_k"] if acfg["bpda_k"] in scfg["ks"] else scfg["ks"][0])
        res = ctx.once(f"{key}/attacks", lambda: _attack_json(ctx, key, model, k, xt, yt, acfg, iters, show))
        results[key] = res
        for a, r in res.items():
            for m, v in r.items():
                metrics[f"{key}/{a}/{m}"] = v
            gaps.append(r["iht"] - r["undefended"])
            over_proj.append(r["iht"] - r["projection"])
        if k == acfg["bpda_k"]:
            bp = ctx.once("bpda", lambda: bpda_attack(ctx, model, k, xt, yt, acfg, iters))
            results["bpda"] = bp
            for mode, r in bp.items():
                for m, v in r.items():
                    metrics[f"bpda_{mode}/{m}"] = v
    metrics["iht_gain_min"] = min(gaps)
    metrics["iht_gain_mean"] = sum(gaps) / len(gaps)
    metrics["iht_over_projection_mean"] = sum(over_proj) / len(over_proj)
    metrics["undefended_max"] = max(metrics[f"k{k}/{a}/undefended"] for k in scfg["ks"] for a in ("jsma", "cw_l0"))
    metrics["gap_to_full_max_k_ge_80"] = max(metrics[f"k{k}/gap_to_full"] for k in scfg["ks"] if k >= 80)
    bk = acfg["bpda_k"]
    if bk in scfg["ks"] and "identity" in acfg["bpda_backward"]:
        metrics["bpda_drop"] = metrics[f"k{bk}/jsma/iht"] - metrics["bpda_identity/iht"]
    side = data["x_test"].shape[-1]
    ph = ctx.once("synthetic", lambda: phase_diagram(ctx, side, ycfg))
    small = [v for key, v in ph["rate"].items()
             if int(key.split(",")[0]) * int(key.split(",")[1]) <= ycfg["small_kt"]]
    metrics["synthetic/exact_rate_small_kt"] = min(small)
    metrics["synthetic/exact_rate_all"] = sum(ph["rate"].values()) / len(ph["rate"])
    ctx.save_json("attacks", results)
    ctx.save_json("synthetic", ph)
    ctx.save_json("config", {"setup": scfg, "train": tcfg, "attack": acfg, "synthetic": ycfg,
                             "dataset": DATASETS[ctx.experiment.name]})
    return metrics


def _attack_json(ctx, key, model, k, xt, yt, acfg, iters, show: bool):
    res, ex = attack_model(ctx, key, model, k, xt, yt, acfg, iters)
    if show:  # saved with the step, so that a resumed run still has them
        ctx.save_tensors("examples", {"k": k, **ex})
    return res


FIGURES = [figures.triplets, figures.accuracy_vs_k, figures.phase_diagram]


@register("sparse_fourier_l0_mnist", paper=PAPER, data=("mnist",), claims_file="claims_mnist.toml",
          figures=FIGURES)
def run_mnist(ctx: RunContext) -> dict:
    """IHT (top-k 2-D DCT) defence of small CNNs on MNIST against JSMA and C&W-L0."""
    return run_dataset(ctx)


@register("sparse_fourier_l0_fashion", paper=PAPER, data=("fashion_mnist",), claims_file="claims_fashion.toml",
          figures=FIGURES)
def run_fashion(ctx: RunContext) -> dict:
    """IHT (top-k 2-D DCT) defence of small CNNs on Fashion-MNIST against JSMA and C&W-L0."""
    return run_dataset(ctx)
