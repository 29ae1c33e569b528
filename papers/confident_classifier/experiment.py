"""confident_classifier_toy / confident_classifier_mnist: Lee, Lee, Lee & Shin (ICLR 2018).

``confident_classifier_toy`` (§2.1 Fig. 1, §3.2 Fig. 3 left): two 2-D Gaussians, one per
class; the toy MLP (2 x 500) trained with cross entropy only, and with the confidence
loss on OOD points drawn uniformly from a small box [-20, 20]^2 or a big box
[-50, 50]^2 (rejection sampling: points within ``reject_sigmas`` standard deviations of
a class mean are rejected); a max-softmax map over [-50, 50]^2 per model.  Then a 2-D
GAN trained ordinarily and with the KL term through the (frozen) small-box classifier
("proposed GAN", Eq. 3 without the pull-away term): where do their samples lie?

``confident_classifier_mnist`` (Table 1 / Fig. 4 analogue): the four variants of Fig. 4,
all with the same classifier, optimiser and number of classifier updates:

- ``ce``: cross entropy only;
- ``explicit``: confidence loss with an explicit "seen" OOD set (cpu: Fashion-MNIST
  train; full: CIFAR-10 train for SVHN in);
- ``gan``: confidence loss on samples of an ordinary DCGAN trained first on the
  in-distribution (then fixed);
- ``joint``: Algorithm 1, classifier and GAN trained together (``method``).

Every model is scored by its max softmax (the baseline detector) on the in-distribution
test set and on each OOD set: the seen set's test split and unseen sets (cpu: uniform
noise, Gaussian noise, inverted and pixel-shuffled MNIST test images); detection metrics
from ``common.ood`` in percent.  Samples of the ordinary and the joint GAN (Fig. 3 right)
are saved, with sample-quality numbers (the CE classifier's confidence on them; the
feature Fréchet distance of ``common.gan``'s judge).
"""

from __future__ import annotations


import gin
import torch

from common import gan as GN
from common import ood
from common.adversarial import MadryCNN
from common.context import RunContext
from common.train import count_parameters, outputs, to_device
from papers.confident_classifier import figures
from papers.confident_classifier import method as M
from registry import Paper, register

PAPER = Paper(
    title="Training confidence-calibrated classifiers for detecting out-of-distribution samples",
    authors="Kimin Lee, Honglak Lee, Kibok Lee and Jinwoo Shin",
    venue="ICLR 2018", arxiv="1711.09325", code="https://github.com/alinlab/Confident_classifier")

VARIANTS = ("ce", "explicit", "gan", "joint")
DETECTION = ("tnr_at_tpr95", "auroc", "detection_acc", "aupr_in", "aupr_out")


# ------------------------------------------------------------------ configuration


@gin.configurable(module="confident_classifier")
def toy(n_train=2000, n_ood=2000, std=2.0, separation=8.0, reject_sigmas=3.0, small_half=20.0,
        big_half=50.0, hidden=(500, 500), steps=3000, batch_size=128, lr=1e-3, beta=1.0, grid=201,
        n_test=2000):
    """The 2-D toy: class means at (+-separation, 0), std ``std``; ``n_ood`` OOD points per
    box; the MLP trained ``steps`` Adam steps on i.i.d. batches (in and OOD)."""
    return dict(n_train=n_train, n_ood=n_ood, std=std, separation=separation, reject_sigmas=reject_sigmas,
                small_half=small_half, big_half=big_half, hidden=tuple(hidden), steps=steps,
                batch_size=batch_size, lr=lr, beta=beta, grid=grid, n_test=n_test)


@gin.configurable(module="confident_classifier")
def toy_gan(steps=3000, batch_size=128, lr=2e-4, betas=(0.5, 0.999), z_dim=8, hidden=128, beta=1.0,
            n_samples=2000):
    """The 2-D GAN of Fig. 3 (MLP G and D, non-saturating loss)."""
    return dict(steps=steps, batch_size=batch_size, lr=lr, betas=tuple(betas), z_dim=z_dim, hidden=hidden,
                beta=beta, n_samples=n_samples)


@gin.configurable(module="confident_classifier")
def setup(in_data="svhn", seen_ood="cifar10", unseen=("cifar10", "gaussian"), model="vgg13",
          cnn_width=1.0, test_images=0, monitor_images=1000, hist_bins=45):
    """Datasets (in-distribution, the seen OOD set, the unseen OOD sets: dataset names or
    synthetic sets of ``method.unseen_sets``), the classifier, test images (0: all)."""
    return dict(in_data=in_data, seen_ood=seen_ood, unseen=tuple(unseen), model=model, cnn_width=cnn_width,
                test_images=test_images, monitor_images=monitor_images, hist_bins=hist_bins)


@gin.configurable(module="confident_classifier")
def train(epochs=100, steps_per_epoch=573, batch_size=128, lr=2e-4, beta=1.0, decay_epoch=60):
    """Every classifier gets ``epochs x steps_per_epoch`` Adam updates on i.i.d. batches
    (the reference: 100 epochs, Adam 2e-4, all learning rates x 0.1 at epoch 60, batch
    128 and beta 1 for SVHN)."""
    return dict(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr, beta=beta,
                decay_epoch=decay_epoch)


@gin.configurable(module="confident_classifier")
def gan(width=64, z_dim=100, lr=2e-4, betas=(0.5, 0.999), judge_epochs=1, judge_subset=20000,
        n_samples=2000):
    """The DCGAN (reference: nz 100, ngf = ndf = 64, Adam 2e-4, betas (0.5, 0.999)); the
    ordinary GAN of variant ``gan`` gets as many iterations as the joint one."""
    return dict(width=width, z_dim=z_dim, lr=lr, betas=tuple(betas), judge_epochs=judge_epochs,
                judge_subset=judge_subset, n_samples=n_samples)


# ------------------------------------------------------------------ the 2-D toy


def _toy_train(ctx, key, model, x, y, ood_x, cfg, gen):
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    bs = cfg["batch_size"]
    for _ in range(cfg["steps"]):
        idx = torch.randint(len(x), (bs,), generator=gen)
        x_out = ood_x[torch.randint(len(ood_x), (bs,), generator=gen)] if ood_x is not None else None
        loss, _ = M.confidence_loss(model, x[idx], y[idx], x_out, cfg["beta"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


def _softmax(model, x):
    with torch.no_grad():
        return torch.softmax(outputs(model, x, batch_size=8192), -1)


@register("confident_classifier_toy", paper=PAPER, claims_file="claims_toy.toml",
          figures=[figures.toy_confidence_maps, figures.toy_gan_samples])
def run_toy(ctx: RunContext) -> dict:
    """2-D toy: confidence maps with small- vs big-box OOD training sets; ordinary vs proposed 2-D GAN."""
    torch.set_grad_enabled(True)
    cfg, gcfg = toy(), toy_gan()
    means = ((-cfg["separation"], 0.0), (cfg["separation"], 0.0))
    gen = ctx.generator("toy/data")
    x, y = M.toy_data(cfg["n_train"], gen, means, cfg["std"])
    x_te, y_te = M.toy_data(cfg["n_test"], gen, means, cfg["std"])
    reject = cfg["reject_sigmas"] * cfg["std"]
    oods = {"small": M.box_ood(cfg["n_ood"], cfg["small_half"], gen, reject, means),
            "big": M.box_ood(cfg["n_ood"], cfg["big_half"], gen, reject, means)}
    lin = torch.linspace(-cfg["big_half"], cfg["big_half"], cfg["grid"])
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    d = M.distance_to_data(pts, means)
    inside_small = (pts.abs() <= cfg["small_half"]).all(1)
    near = inside_small & (d >= reject)
    far = ~inside_small
    off_data = d >= reject
    cell = (lin[1] - lin[0]).item() ** 2
    metrics, maps, models = {}, {}, {}
    for name in ("ce", "small", "big"):
        torch.manual_seed(ctx.seed_for(f"toy/{name}/init"))
        model = M.MLP(2, cfg["hidden"], 2)
        models[name] = _toy_train(ctx, name, model, x, y, oods.get(name), cfg, ctx.generator(f"toy/{name}/order"))
        p_grid = _softmax(model, pts).max(1).values
        maps[name] = p_grid.view(cfg["grid"], cfg["grid"])
        p_te = _softmax(model, x_te)
        metrics[f"{name}/test_acc"] = 100.0 * (p_te.argmax(1) == y_te).double().mean().item()
        metrics[f"{name}/conf_data"] = p_te.max(1).values.mean().item()
        metrics[f"{name}/conf_near"] = p_grid[near].mean().item()
        metrics[f"{name}/conf_far"] = p_grid[far].mean().item()
        metrics[f"{name}/frac_confident_near"] = (p_grid[near] > 0.9).double().mean().item()
        metrics[f"{name}/frac_confident_far"] = (p_grid[far] > 0.9).double().mean().item()
        # the area (units^2) off the data (beyond reject_sigmas std of both means) where
        # the model is confident (max softmax > 0.9): the size of its "in-distribution"
        metrics[f"{name}/confident_area_off_data"] = cell * (p_grid[off_data] > 0.9).sum().item()
        ctx.log(f"[toy/{name}] acc {metrics[f'{name}/test_acc']:.1f}%, max-softmax on data "
                f"{metrics[f'{name}/conf_data']:.3f}, near {metrics[f'{name}/conf_near']:.3f}, "
                f"far {metrics[f'{name}/conf_far']:.3f}")
    # the 2-D GAN of Fig. 3, ordinary and with the KL term through the small-box classifier
    clf = models["small"]
    samples = {}
    for name, beta in (("ordinary", 0.0), ("proposed", gcfg["beta"])):
        torch.manual_seed(ctx.seed_for(f"gan2d/{name}/init"))
        G, D = M.PointGenerator(gcfg["z_dim"], gcfg["hidden"]), M.PointCritic(gcfg["hidden"])
        g = GN.GAN(G, D, GN.GANConfig(loss="dcgan", n_critic=1, lr=gcfg["lr"], betas=gcfg["betas"],
                                     batch_size=gcfg["batch_size"], z_dim=gcfg["z_dim"]))
        GN.train_gan(ctx, f"gan2d/{name}", g, x, epochs=1, steps_per_epoch=gcfg["steps"],
                     generator=ctx.generator(f"gan2d/{name}"),
                     g_extra=M.generator_kl(clf, beta) if beta else None, grid=False)
        with torch.no_grad():
            s = G(torch.randn(gcfg["n_samples"], gcfg["z_dim"], generator=ctx.generator(f"gan2d/{name}/z")))
        samples[name] = s
        ds = M.distance_to_data(s, means) / cfg["std"]
        metrics[f"gan2d/{name}/median_dist"] = ds.median().item()
        metrics[f"gan2d/{name}/frac_core"] = (ds < 2).double().mean().item()
        metrics[f"gan2d/{name}/clf_conf"] = _softmax(clf, s).max(1).values.mean().item()
        ctx.log(f"[gan2d/{name}] median distance to the nearest mean {metrics[f'gan2d/{name}/median_dist']:.2f} "
                f"std, within 2 std {metrics[f'gan2d/{name}/frac_core']:.3f}, classifier confidence "
                f"{metrics[f'gan2d/{name}/clf_conf']:.3f}")
    ctx.save_tensors("toy", {"maps": maps, "x": x, "y": y, "ood": oods, "samples": samples,
                             "extent": torch.tensor([-cfg["big_half"], cfg["big_half"]]),
                             "small_half": torch.tensor(cfg["small_half"]), "reject": torch.tensor(reject),
                             "means": torch.tensor(means)})
    ctx.save_json("config", {"toy": cfg, "toy_gan": gcfg})
    return metrics


# ------------------------------------------------------------------ MNIST (and the full profile)


def load_data(ctx: RunContext, cfg: dict) -> dict:
    """In-distribution train/test, the seen OOD set's train/test and the unseen sets (test
    size).  A missing dataset raises ``common.data.DatasetNotFound`` naming its files."""
    tr, te = ctx.dataset(cfg["in_data"], train=True), ctx.dataset(cfg["in_data"], train=False)
    n = cfg["test_images"] or len(te)
    data = {"x_train": tr.images, "y_train": tr.labels, "x_test": te.images[:n], "y_test": te.labels[:n]}
    seen_tr, seen_te = ctx.dataset(cfg["seen_ood"], train=True), ctx.dataset(cfg["seen_ood"], train=False)
    data["seen_train"] = seen_tr.images
    sets = {cfg["seen_ood"]: seen_te.images[:n]}
    synthetic = [u for u in cfg["unseen"] if u in ("uniform", "gaussian", "inverted", "shuffled")]
    for u in cfg["unseen"]:
        if u not in synthetic and u not in sets:
            sets[u] = ctx.dataset(u, train=False).images[:n]
    sets.update(M.unseen_sets(data["x_test"], ctx.generator("ood/synthetic"), tuple(synthetic)))
    data["ood"] = sets
    return data


def make_classifier(cfg: dict, shape) -> torch.nn.Module:
    if cfg["model"] == "vgg13":
        return M.VGG13(10, shape[0])
    if cfg["model"] == "cnn":
        return MadryCNN(10, width=cfg["cnn_width"], in_channels=shape[0], image_size=shape[1])
    raise ValueError(f"unknown classifier {cfg['model']!r}: 'cnn' or 'vgg13'")


def make_gan(gcfg: dict, shape, lr: float) -> GN.GAN:
    if shape[1] == 28:
        G = GN.Generator(z_dim=gcfg["z_dim"], width=gcfg["width"], batchnorm=True)
        D = GN.Critic(width=gcfg["width"], norm="batch")
    else:
        G = M.Generator32(gcfg["z_dim"], gcfg["width"], shape[0])
        D = M.Critic32(gcfg["width"], shape[0])
    cfg = GN.GANConfig(loss="dcgan", n_critic=1, lr=lr, betas=gcfg["betas"], batch_size=0, z_dim=gcfg["z_dim"])
    return GN.GAN(G, D, cfg)


def _decay(optimizers, base_lrs, epochs_done: int, decay_epoch: int):
    """All learning rates x 0.1 from epoch ``decay_epoch`` on (the reference code)."""
    if decay_epoch and epochs_done >= decay_epoch:
        for opt, lr in zip(optimizers, base_lrs):
            for g in opt.param_groups:
                g["lr"] = 0.1 * lr


def _iterations(opt: torch.optim.Optimizer) -> int:
    """Adam updates taken so far (its step count, which a resumed optimiser keeps)."""
    for state in opt.state.values():
        return int(state["step"])
    return 0


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return 100.0 * (outputs(model, x).argmax(1) == y).double().mean().item()


def train_classifier(ctx: RunContext, key: str, data: dict, cfg: dict, tcfg: dict, ood_batch=None):
    """A classifier trained with the confidence loss on OOD batches ``ood_batch(n, gen)``
    (cross entropy alone when None); resumable per epoch.  Returns it (eval mode) and the
    per-epoch history (loss terms, monitor accuracy)."""
    dev = ctx.device
    x, y = to_device(data["x_train"], data["y_train"], device=dev)
    x_mon, y_mon = to_device(data["x_test"][:cfg["monitor_images"]], data["y_test"][:cfg["monitor_images"]],
                             device=dev)
    torch.manual_seed(ctx.seed_for(f"{key}/init"))
    model = make_classifier(cfg, x.shape[1:]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg["lr"])
    gen = ctx.generator(f"{key}/order")
    state = {"history": []}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "gen": gen}, state)
    bs = tcfg["batch_size"]
    for epoch in loop.epochs(tcfg["epochs"]):
        _decay([opt], [tcfg["lr"]], epoch, tcfg["decay_epoch"])
        model.train()
        sums = {}
        for _ in range(tcfg["steps_per_epoch"]):
            idx = torch.randint(len(x), (bs,), generator=gen).to(dev)
            x_out = ood_batch(bs, gen) if ood_batch is not None else None
            loss, stats = M.confidence_loss(model, x[idx], y[idx], x_out, tcfg["beta"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0) + v.double()
        model.eval()
        row = {"epoch": epoch + 1, **{k: float(v) / tcfg["steps_per_epoch"] for k, v in sums.items()},
               "monitor_acc": _accuracy(model, x_mon, y_mon)}
        state["history"].append(row)
        ctx.log(f"[{key}] epoch {epoch + 1}/{tcfg['epochs']}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
    model.eval()
    return model, state["history"]


def train_joint(ctx: RunContext, key: str, data: dict, cfg: dict, tcfg: dict, gcfg: dict, beta: float):
    """Algorithm 1 (``beta > 0``), or an ordinary DCGAN (``beta = 0``: no KL term and no
    classifier), ``epochs x steps_per_epoch`` iterations.  Returns (GAN, classifier or
    None, history)."""
    dev = ctx.device
    x, y = to_device(data["x_train"], data["y_train"], device=dev)
    shape = x.shape[1:]
    torch.manual_seed(ctx.seed_for(f"{key}/init"))
    g = make_gan(gcfg, shape, gcfg["lr"])
    g.cfg.batch_size = tcfg["batch_size"]
    for m in g.modules():
        m.to(dev)
    extra, g_extra, hook, clf = {}, None, None, None
    opts, lrs = [g.opt_g, g.opt_d], [gcfg["lr"], gcfg["lr"]]
    if beta:
        clf = make_classifier(cfg, shape).to(dev)
        opt_c = torch.optim.Adam(clf.parameters(), lr=tcfg["lr"])
        gen_c = ctx.generator(f"{key}/classifier")
        extra = {"classifier": clf, "opt_c": opt_c, "gen_c": gen_c}
        g_extra = M.generator_kl(clf, beta)
        hook = M.classifier_hook(clf, opt_c, g.G, x, y, beta, tcfg["batch_size"], gen_c)
        opts.append(opt_c)
        lrs.append(tcfg["lr"])
    x_mon, y_mon = to_device(data["x_test"][:cfg["monitor_images"]], data["y_test"][:cfg["monitor_images"]],
                             device=dev)

    def monitor(gan_):  # after each epoch: the classifier's accuracy, then the lr decay
        row = {}
        if clf is not None:
            clf.eval()
            row["monitor_acc"] = _accuracy(clf, x_mon, y_mon)
        _decay(opts, lrs, _iterations(g.opt_g) // tcfg["steps_per_epoch"], tcfg["decay_epoch"])
        return row

    history = GN.train_gan(ctx, key, g, x, epochs=tcfg["epochs"], steps_per_epoch=tcfg["steps_per_epoch"],
                           generator=ctx.generator(f"{key}/gan"), g_extra=g_extra, step_hook=hook,
                           extra_objects=extra, monitor=monitor)
    if clf is not None:
        clf.eval()
    return g, clf, history


def evaluate(model, data: dict, hist_bins: int) -> tuple[dict, dict]:
    """Accuracy and, per OOD set, every detection metric (percent) of the max softmax;
    the max-softmax histograms (in, and per OOD set)."""
    model.eval()
    dev = next(model.parameters()).device

    def msp(x):
        with torch.no_grad():
            return ood.max_softmax(torch.softmax(outputs(model, x.to(dev)).float(), -1))

    logits = outputs(model, data["x_test"].to(dev))
    out = {"test_acc": 100.0 * (logits.argmax(1).cpu() == data["y_test"]).double().mean().item()}
    s_in = ood.max_softmax(torch.softmax(logits.float(), -1))
    edges = torch.linspace(0.1, 1.0, hist_bins + 1, dtype=torch.float64)
    hists = {"edges": edges.tolist(), "in": torch.histogram(s_in, edges).hist.tolist()}
    for name, x in data["ood"].items():
        s_out = msp(x)
        for k, v in ood.detection(s_in, s_out).items():
            out[f"{name}/{k}"] = 100.0 * v
        hists[name] = torch.histogram(s_out, edges).hist.tolist()
    return out, hists


@register("confident_classifier_mnist", paper=PAPER, data=("mnist", "fashion_mnist"),
          claims_file="claims_mnist.toml",
          figures=[figures.detection_bars, figures.msp_histograms, figures.gan_samples])
def run_mnist(ctx: RunContext) -> dict:
    """MNIST in, Fashion-MNIST seen OOD: CE vs confidence loss (explicit OOD, pre-trained GAN, joint)."""
    torch.set_grad_enabled(True)
    cfg, tcfg, gcfg = setup(), train(), gan()
    data = load_data(ctx, cfg)
    dev = ctx.device
    seen = data["seen_train"].to(dev)
    models, histories = {}, {}
    models["ce"], histories["ce"] = train_classifier(ctx, "ce", data, cfg, tcfg)
    models["explicit"], histories["explicit"] = train_classifier(
        ctx, "explicit", data, cfg, tcfg,
        ood_batch=lambda n, gen: seen[torch.randint(len(seen), (n,), generator=gen).to(dev)])
    ordinary, _, histories["ordinary_gan"] = train_joint(ctx, "ordinary_gan", data, cfg, tcfg, gcfg, 0.0)
    G0 = ordinary.G.eval()

    def gan_batch(n, gen):
        with torch.no_grad():
            return G0(torch.randn(n, gcfg["z_dim"], generator=gen).to(dev))

    models["gan"], histories["gan"] = train_classifier(ctx, "gan", data, cfg, tcfg, ood_batch=gan_batch)
    joint, models["joint"], histories["joint"] = train_joint(ctx, "joint", data, cfg, tcfg, gcfg, tcfg["beta"])

    metrics, hists = {}, {}
    unseen_keys = [u for u in cfg["unseen"]]
    for v in VARIANTS:
        res, hists[v] = evaluate(models[v], data, cfg["hist_bins"])
        metrics.update({f"{v}/{k}": val for k, val in res.items()})
        for k in ("tnr_at_tpr95", "auroc", "detection_acc"):
            metrics[f"{v}/unseen_mean/{k}"] = sum(res[f"{u}/{k}"] for u in unseen_keys) / len(unseen_keys)
        ctx.log(f"[{v}] acc {res['test_acc']:.2f}%; " + "; ".join(
            f"{name} TNR {res[f'{name}/tnr_at_tpr95']:.1f} AUROC {res[f'{name}/auroc']:.1f}"
            for name in data["ood"]))
    metrics["classifier_params"] = count_parameters(models["ce"])
    metrics["gan_g_params"] = count_parameters(joint.G)

    # Fig. 3 (right): samples of the ordinary and the joint GAN, and their quality
    samples = {}
    for name, g in (("ordinary", ordinary), ("joint", joint)):
        s = GN.sample(g.G, gcfg["n_samples"], ctx.generator(f"samples/{name}")).cpu()
        samples[name] = s
        with torch.no_grad():
            p = torch.softmax(outputs(models["ce"], s.to(dev)).float(), -1).cpu()
        metrics[f"samples/{name}/ce_confidence"] = p.max(1).values.mean().item()
        metrics[f"samples/{name}/ce_class_entropy"] = ood.entropy(
            torch.bincount(p.argmax(1), minlength=10).double() / len(p)).item()
    if cfg["in_data"] == "mnist" and gcfg["judge_epochs"]:
        keep = torch.randperm(len(data["x_train"]), generator=ctx.generator("judge/subset"))[:gcfg["judge_subset"]]
        judge = GN.train_judge(ctx, "judge", data["x_train"][keep], data["y_train"][keep],
                               epochs=gcfg["judge_epochs"], generator=ctx.generator("judge/order"))
        ref = data["x_test"][:gcfg["n_samples"]]
        for name, s in samples.items():
            metrics[f"samples/{name}/frechet"] = GN.feature_frechet(judge, s.to(dev), ref.to(dev))
        metrics["samples/real_frechet"] = GN.feature_frechet(judge, data["x_train"][:gcfg["n_samples"]].to(dev),
                                                             ref.to(dev))
    for name in samples:
        ctx.log(f"[samples/{name}] CE confidence {metrics[f'samples/{name}/ce_confidence']:.3f}"
                + (f", feature Frechet {metrics[f'samples/{name}/frechet']:.2f}"
                   if f"samples/{name}/frechet" in metrics else ""))
    ctx.save_tensors("samples", {k: v[:64] for k, v in samples.items()})
    ctx.save_json("histograms", hists)
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": cfg, "train": tcfg, "gan": gcfg, "ood_sets": list(data["ood"]),
                             "unseen": list(unseen_keys), "seen": cfg["seen_ood"]})
    return metrics
