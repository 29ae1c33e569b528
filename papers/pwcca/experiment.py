"""Experiments of Morcos, Raghu & Bengio (2018) with SVCCA / PWCCA.

- ``pwcca_synthetic``: layers that share a signal subspace and differ in
  low-variance noise dimensions; PWCCA tells them apart from unrelated
  layers better than mean CCA and SVCCA (§2.3).
- ``pwcca_cnn``: groups of CNNs trained from different initialisations;
  generalising (true labels) vs memorising (permuted labels) networks
  (§3.1, Fig. 3), width (§3.2, Fig. 4) and learning-rate clusters (§3.3,
  Fig. 5), layer by layer.
- ``pwcca_lstm``: an LSTM on row-by-row Fashion-MNIST, a stand-in for the
  paper's PTB / WikiText-2 language models (§4, Fig. 6-7): does it converge
  bottom-up over training, and how different is its hidden state across
  time steps?

Every comparison also reports the same measure on independent Gaussian
activations of the same shape (neurons x data points), the value CCA gives
unrelated layers (google/svcca tutorial 001).  The paper's exact CNN
architectures, group sizes and learning-rate grids were not found; ours are
stated in the profiles.
"""

from __future__ import annotations

import itertools
import math
import statistics

import gin
import numpy as np
import torch
import torch.nn.functional as F

from common import atomic
from common.context import RunContext
from common.train import accuracy, batches, to_device, train_step, train_until_memorised
from papers.pwcca import figures
from papers.pwcca import method as M
from registry import Paper, register

PAPER = Paper(
    title="Insights on representational similarity in neural networks with canonical correlation",
    authors="Ari S. Morcos, Maithra Raghu, Samy Bengio", venue="NeurIPS 2018", arxiv="1806.05759",
    code="https://github.com/google/svcca (cca_core.py, pwcca.py, tutorials)")

MEASURES = ("mean_cca", "svcca", "pwcca")


# ------------------------------------------------------------- synthetic


@gin.configurable(module="pwcca")
def synthetic(n_neurons=100, n_points=5000, noise_fractions=(0.0, 0.2, 0.4, 0.6, 0.8),
              noise_scale=0.3, low_noise_scale=0.05, draws=5):
    """Our construction (the paper's exact synthetic setup was not found): see
    method.synthetic_pair.  ``noise_scale`` is the noise latents' std relative
    to the signal's (their variance is too large for SVCCA's 99% cut to drop
    them); ``low_noise_scale`` is a control where the cut does drop them."""
    return dict(n_neurons=n_neurons, n_points=n_points, noise_fractions=tuple(noise_fractions),
                noise_scale=noise_scale, low_noise_scale=low_noise_scale, draws=draws)


@register("pwcca_synthetic", paper=PAPER, claims_file="claims_synthetic.toml",
          figures=[figures.synthetic_curves])
def run_synthetic(ctx: RunContext) -> dict:
    """Signal vs noise: similarity of layers sharing a signal subspace, mean CCA vs SVCCA vs PWCCA."""
    cfg = synthetic()
    gen = ctx.generator("synthetic")
    n, m = cfg["n_neurons"], cfg["n_points"]
    metrics, curves = {}, {}
    base = [M.random_baseline(n, n, m, gen) for _ in range(cfg["draws"])]
    for meas in MEASURES:
        metrics[f"random/{meas}"] = statistics.fmean(b[meas] for b in base)
    for tag, scale in (("", cfg["noise_scale"]), ("low_noise/", cfg["low_noise_scale"])):
        for f in cfg["noise_fractions"]:
            sims = []
            for _ in range(cfg["draws"]):
                a, b = M.synthetic_pair(n, m, f, scale, gen)
                sims.append(M.similarities(M.prepare(a), M.prepare(b)))
            for meas in MEASURES:
                vals = [s[meas] for s in sims]
                key = f"{tag}{meas}/f{f:g}"
                metrics[f"{key}/similarity"] = statistics.fmean(vals)
                metrics[f"{key}/separation"] = statistics.fmean(vals) - metrics[f"random/{meas}"]
                curves.setdefault(f"{tag}{meas}", []).append(
                    [f, statistics.fmean(vals), statistics.pstdev(vals)])
        for meas in MEASURES:  # mean separation over the noise fractions > 0
            seps = [metrics[f"{tag}{meas}/f{f:g}/separation"] for f in cfg["noise_fractions"] if f > 0]
            metrics[f"{tag}{meas}/mean_separation"] = statistics.fmean(seps)
    ctx.log("separation from the random baseline (mean over noise fractions): " + ", ".join(
        f"{meas} {metrics[f'{meas}/mean_separation']:.3f}" for meas in MEASURES))
    ctx.save_json("synthetic", {"config": cfg, "curves": curves,
                                "random": {meas: metrics[f"random/{meas}"] for meas in MEASURES}})
    return metrics


# ------------------------------------------------------------------ CNNs


@gin.configurable(module="pwcca")
def cnn_setup(dataset="cifar10", train_subset=0, cca_images=5000, conv_mode="positions",
              max_points=50000, nets_per_group=5, base_width=32, widths=(8, 16, 32, 64, 128),
              base_lr=1e-3, lrs=(1e-4, 1e-3, 1e-2)):
    """Groups of ``nets_per_group`` networks (the paper's group size, unverified).
    The generalising group uses ``base_width`` and ``base_lr`` and doubles as that
    width's and that learning rate's group.  CCA data points: ``cca_images``
    test images (conv layers: every spatial position, at most ``max_points``)."""
    if base_width not in widths or base_lr not in lrs:
        raise ValueError("base_width and base_lr must be among widths and lrs")
    return dict(dataset=dataset, train_subset=train_subset, cca_images=cca_images,
                conv_mode=conv_mode, max_points=max_points, nets_per_group=nets_per_group,
                base_width=base_width, widths=tuple(widths), base_lr=base_lr, lrs=tuple(lrs))


@gin.configurable(module="pwcca")
def cnn_train(epochs=30, random_label_epochs=300, batch_size=128, stop_at_train_acc=100.0,
              fc_mult=16):
    """Adam; the memorising nets train until they fit every permuted label (or
    ``random_label_epochs``); ``fc_mult``: the fc layer has fc_mult x width units."""
    return dict(epochs=epochs, random_label_epochs=random_label_epochs, batch_size=batch_size,
                stop_at_train_acc=stop_at_train_acc, fc_mult=fc_mult)


def _subset(ctx, split, n):
    x, y = split.images, split.labels
    if n and n < len(x):
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
        x, y = x[keep], y[keep]
    return x, y


def train_cnn(ctx: RunContext, key: str, width: int, lr: float, x, y, epochs: int, cfg: dict,
              stop_at: float | None = None):
    """Train one ConvNet (resumable); returns (model, info)."""
    torch.manual_seed(ctx.seed_for(f"init {key}"))
    model = M.ConvNet(width, in_channels=x.shape[1], image_size=x.shape[-1],
                      fc_mult=cfg["fc_mult"]).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = ctx.generator(f"order {key}")
    hist = train_until_memorised(ctx, key, model, opt, x, y, epochs=epochs, batch_size=cfg["batch_size"],
                                 generator=gen, stop_at=stop_at)
    done = stop_at is not None and bool(hist) and hist[-1].get("train_acc", -math.inf) >= stop_at
    return model, {"epochs_run": len(hist), "train_acc": accuracy(model, x, y), "done": done}


@torch.no_grad()
def layer_acts(model, x, mode: str, max_points: int, seed: int, batch_size: int = 500) -> dict:
    """Each layer's activations on ``x`` as neurons x data points (CPU).  Conv layers
    in ``positions`` mode keep a random subset of ``max_points`` (image, position)
    pairs, the same for every network (``seed``), picked batch by batch."""
    chunks: dict[str, list] = {}
    picks: dict[str, torch.Tensor] = {}
    device = next(model.parameters()).device
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        _, acts = model(xb.to(device), return_acts=True)
        for name, a in acts.items():
            a = a.cpu()
            if a.ndim == 4 and mode == "positions" and max_points:
                hw = a.shape[2] * a.shape[3]
                if name not in picks:
                    total = len(x) * hw
                    picks[name] = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[
                        :min(max_points, total)].sort().values
                sel = picks[name]
                sel = sel[(sel >= start * hw) & (sel < (start + len(xb)) * hw)] - start * hw
                a = a.permute(1, 0, 2, 3).reshape(a.shape[1], -1)[:, sel]
            else:
                a = M.conv_acts(a, mode)
            chunks.setdefault(name, []).append(a)
    return {name: torch.cat(parts, dim=1) for name, parts in chunks.items()}


def prepared_layers(model, x, cfg, ctx) -> dict[str, M.Layer]:
    acts = layer_acts(model, x, cfg["conv_mode"], cfg["max_points"], ctx.seed_for("positions"))
    return {name: M.prepare(a) for name, a in acts.items()}


def pair_stats(layers_a: dict, layers_b: dict) -> dict:
    """layer -> measure -> distance (1 - similarity)."""
    return {name: {k: 1.0 - v for k, v in M.similarities(layers_a[name], layers_b[name]).items()}
            for name in layers_a}


@register("pwcca_cnn", paper=PAPER, data=("cifar10 (full)", "fashion_mnist (cpu)"),
          claims_file="claims_cnn.toml",
          figures=[figures.gen_mem_layers, figures.width_distance, figures.lr_clusters])
def run_cnn(ctx: RunContext) -> dict:
    """Generalising vs memorising CNNs, width, learning-rate clusters (PWCCA distance per layer)."""
    cfg, tcfg = cnn_setup(), cnn_train()
    tr, te = ctx.dataset(cfg["dataset"], train=True), ctx.dataset(cfg["dataset"], train=False)
    x, y = _subset(ctx, tr, cfg["train_subset"])
    x_cca = te.images[:cfg["cca_images"]]
    y_random = y[torch.randperm(len(y), generator=ctx.generator("permuted labels"))]
    k = cfg["nets_per_group"]
    groups = {"gen": [(f"gen-{i}", cfg["base_width"], cfg["base_lr"], False) for i in range(k)],
              "mem": [(f"mem-{i}", cfg["base_width"], cfg["base_lr"], True) for i in range(k)]}
    for w in cfg["widths"]:
        groups[f"w{w}"] = groups["gen"] if w == cfg["base_width"] else [
            (f"w{w}-{i}", w, cfg["base_lr"], False) for i in range(k)]
    for lr in cfg["lrs"]:
        groups[f"lr{lr:g}"] = groups["gen"] if lr == cfg["base_lr"] else [
            (f"lr{lr:g}-{i}", cfg["base_width"], lr, False) for i in range(k)]
    nets = {spec[0]: spec for g in groups.values() for spec in g}
    ctx.log(f"{cfg['dataset']}: {len(x)} training images, {len(x_cca)} test images for CCA, "
            f"{len(nets)} networks")

    layers, infos = {}, {}
    for key, (_, width, lr, memorise) in ctx.progress(nets.items(), desc="networks"):
        labels = y_random if memorise else y
        model, info = train_cnn(ctx, key, width, lr, x, labels,
                                tcfg["random_label_epochs"] if memorise else tcfg["epochs"], tcfg,
                                tcfg["stop_at_train_acc"] if memorise else None)
        info["test_acc"] = accuracy(model, te.images, te.labels)
        infos[key] = info
        layers[key] = prepared_layers(model, x_cca, cfg, ctx)
        ctx.log(f"[{key}] width {width}, lr {lr:g}: train {info['train_acc']:.2f}% "
                f"({'permuted' if memorise else 'true'} labels, {info['epochs_run']} epochs), "
                f"test {info['test_acc']:.2f}%")
        ctx.heartbeat()

    names = list(M.ConvNet.LAYERS)
    cache: dict[tuple, dict] = {}

    def dist(a, b):
        key = tuple(sorted((a, b)))
        if key not in cache:
            cache[key] = pair_stats(layers[key[0]], layers[key[1]])
        return cache[key]

    def mean_dist(pairs, layer, meas):
        return statistics.fmean(dist(a, b)[layer][meas] for a, b in pairs)

    def within(g):
        return list(itertools.combinations([s[0] for s in groups[g]], 2))

    def across(g1, g2):
        return [(a[0], b[0]) for a in groups[g1] for b in groups[g2]]

    metrics, saved = {}, {"layers": names, "config": cfg, "train": tcfg,
                          "nets": {k: {"width": v[1], "lr": v[2], "memorise": v[3], **infos[k]}
                                   for k, v in nets.items()}}
    for grp in ("gen", "mem"):
        metrics[f"{grp}/train_acc_min"] = min(infos[s[0]]["train_acc"] for s in groups[grp])
        metrics[f"{grp}/test_acc_mean"] = statistics.fmean(infos[s[0]]["test_acc"] for s in groups[grp])
    gen_mem = {}
    for layer in names:
        for meas in MEASURES:
            for name, pairs in (("gen_gen", within("gen")), ("mem_mem", within("mem")),
                                ("gen_mem", across("gen", "mem"))):
                metrics[f"genmem/{meas}/{layer}/{name}"] = mean_dist(pairs, layer, meas)
        gen_mem[layer] = {name: [dist(a, b)[layer]["pwcca"] for a, b in pairs] for name, pairs in (
            ("gen_gen", within("gen")), ("mem_mem", within("mem")), ("gen_mem", across("gen", "mem")))}
    saved["gen_mem"] = gen_mem

    width_res = {}
    for w in cfg["widths"]:
        g = f"w{w}"
        metrics[f"width/w{w}/test_acc_mean"] = statistics.fmean(infos[s[0]]["test_acc"] for s in groups[g])
        for layer in names:
            for meas in MEASURES:
                metrics[f"width/{meas}/{layer}/w{w}"] = mean_dist(within(g), layer, meas)
            width_res.setdefault(layer, {})[w] = [dist(a, b)[layer]["pwcca"] for a, b in within(g)]
    saved["width"] = width_res
    ws = sorted(cfg["widths"])
    for layer in names:  # grid-independent summaries, what the claims read
        for meas in MEASURES:
            d = [metrics[f"width/{meas}/{layer}/w{w}"] for w in ws]
            metrics[f"width/{meas}/{layer}/narrowest"] = d[0]
            metrics[f"width/{meas}/{layer}/widest"] = d[-1]
            metrics[f"width/{meas}/{layer}/monotone_falls"] = float(all(
                a > b for a, b in zip(d, d[1:])))

    lr_keys = [s[0] for lr in cfg["lrs"] for s in groups[f"lr{lr:g}"]]
    lr_of = {s[0]: lr for lr in cfg["lrs"] for s in groups[f"lr{lr:g}"]}
    saved["lr"] = {"nets": lr_keys, "lrs": [lr_of[k] for k in lr_keys], "matrix": {}}
    for layer in names:
        mat = np.array([[0.0 if a == b else dist(a, b)[layer]["pwcca"] for b in lr_keys]
                        for a in lr_keys])
        saved["lr"]["matrix"][layer] = mat.tolist()
        same = np.array([[lr_of[a] == lr_of[b] for b in lr_keys] for a in lr_keys])
        off = ~np.eye(len(lr_keys), dtype=bool)
        metrics[f"lr/pwcca/{layer}/within"] = mat[same & off].mean()
        metrics[f"lr/pwcca/{layer}/across"] = mat[~same].mean()
        nearest = np.where(off, mat, np.inf).argmin(1)
        metrics[f"lr/pwcca/{layer}/nearest_same_lr"] = float(same[np.arange(len(lr_keys)), nearest].mean())
    for lr in cfg["lrs"]:
        metrics[f"lr/lr{lr:g}/test_acc_mean"] = statistics.fmean(
            infos[s[0]]["test_acc"] for s in groups[f"lr{lr:g}"])

    # random activations of each layer's shape at each width: the unrelated-layer value
    gen = ctx.generator("baseline")
    base = {}
    for w in cfg["widths"]:
        net = groups[f"w{w}"][0][0]
        for layer in names:
            n_, m_ = layers[net][layer].centred.shape
            b = M.random_baseline(n_, n_, m_, gen)
            metrics[f"baseline/pwcca/{layer}/w{w}"] = 1.0 - b["pwcca"]
            base.setdefault(layer, {})[w] = {meas: 1.0 - v for meas, v in b.items()}
            if w == cfg["base_width"]:
                metrics[f"baseline/pwcca/{layer}"] = 1.0 - b["pwcca"]
    saved["baseline"] = base
    saved["shapes"] = {k: {layer: list(lay.centred.shape) for layer, lay in v.items()}
                       for k, v in layers.items() if k in (groups["gen"][0][0],)}
    ctx.save_json("cnn", saved)
    return metrics


# ------------------------------------------------------------------ LSTM


@gin.configurable(module="pwcca")
def lstm_setup(dataset="fashion_mnist", hidden=128, layers=3, train_subset=0, epochs=10,
               batch_size=128, lr=1e-3, snapshots=(0.0, 0.03125, 0.0625, 0.125, 0.25, 0.5, 0.75, 1.0),
               cca_images=2000):
    """``snapshots``: fractions of the training steps at which the hidden states
    are recorded (0 = initialisation).  Across-time comparisons use the final
    model on ``cca_images`` test images (one data point per image)."""
    return dict(dataset=dataset, hidden=hidden, layers=layers, train_subset=train_subset,
                epochs=epochs, batch_size=batch_size, lr=lr, snapshots=tuple(snapshots),
                cca_images=cca_images)


@torch.no_grad()
def lstm_states(model, x, batch_size=500) -> dict[str, torch.Tensor]:
    """layer -> images x steps x hidden."""
    out: dict[str, list] = {}
    for (xb,) in batches(x, batch_size=batch_size):
        _, acts = model(xb.to(next(model.parameters()).device), return_acts=True)
        for k, v in acts.items():
            out.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


@register("pwcca_lstm", paper=PAPER, data=("fashion_mnist",), claims_file="claims_lstm.toml",
          figures=[figures.lstm_dynamics, figures.lstm_time_steps])
def run_lstm(ctx: RunContext) -> dict:
    """An LSTM on row-by-row Fashion-MNIST: bottom-up convergence and change across time steps."""
    cfg = lstm_setup()
    tr, te = ctx.dataset(cfg["dataset"], train=True), ctx.dataset(cfg["dataset"], train=False)
    x, y = _subset(ctx, tr, cfg["train_subset"])
    x_cca = te.images[:cfg["cca_images"]]
    torch.manual_seed(ctx.seed_for("init lstm"))
    model = M.RowLSTM(cfg["hidden"], cfg["layers"]).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = ctx.generator("order lstm")
    steps_per_epoch = -(-len(x) // cfg["batch_size"])
    total = steps_per_epoch * cfg["epochs"]
    marks = sorted({int(round(f * total)) for f in cfg["snapshots"]})
    names = [f"lstm{i + 1}" for i in range(cfg["layers"])]
    # the first images' states at every step form the "over training" data points
    x_dyn = x_cca[: max(1, cfg["cca_images"] // 4)]
    state = {"step": 0, "snapshots": {}, "history": []}
    loop = ctx.resumable("lstm", {"model": model, "opt": opt, "gen": gen}, state)
    snaps: dict[int, dict] = {}
    path = ctx.run_dir / "checkpoints" / "lstm_states.pt"
    if path.exists():
        snaps = {int(k): v for k, v in atomic.torch_load(path).items()}

    def snapshot():
        snaps[state["step"]] = {k: v.flatten(0, 1).T.contiguous()
                                for k, v in lstm_states(model, x_dyn).items()}
        atomic.torch_save({str(k): v for k, v in snaps.items()}, path)

    if 0 in marks and 0 not in snaps:
        snapshot()
    x_dev, y_dev = to_device(x, y, device=ctx.device)
    for epoch in loop.epochs(cfg["epochs"]):
        model.train()
        for xb, yb in batches(x_dev, y_dev, batch_size=cfg["batch_size"], shuffle=True, generator=gen):
            train_step(model, opt, lambda: F.cross_entropy(model(xb), yb), autocast=ctx.autocast)
            state["step"] += 1
            if state["step"] in marks:
                model.eval()
                snapshot()
                model.train()
        acc = accuracy(model, te.images, te.labels)
        state["history"].append({"epoch": epoch + 1, "step": state["step"], "test_acc": acc})
        ctx.log(f"[lstm] epoch {epoch + 1}: test {acc:.2f}%")
    model.eval()
    metrics = {"test_acc": accuracy(model, te.images, te.labels),
               "train_acc": accuracy(model, x, y)}
    final = snaps[max(snaps)]
    prepared_final = {k: M.prepare(v) for k, v in final.items()}
    dynamics = {}
    for step in sorted(snaps):
        if step == max(snaps):
            continue
        frac = step / total
        for layer in names:
            d = 1.0 - M.cca_layers(M.prepare(snaps[step][layer]), prepared_final[layer]).pwcca
            dynamics.setdefault(layer, []).append([frac, d])
    # bottom-up: mean distance to the final representation over the first half of training
    early = {}
    for layer in names:
        early[layer] = statistics.fmean(d for f, d in dynamics[layer] if 0 < f <= 0.5)
        metrics[f"dynamics/{layer}/early_distance"] = early[layer]
        for f, d in dynamics[layer]:
            metrics[f"dynamics/{layer}/t{f:g}"] = d
    metrics["dynamics/bottom/early_distance"] = early[names[0]]
    metrics["dynamics/top/early_distance"] = early[names[-1]]
    metrics["dynamics/bottom_up_ordered"] = float(all(
        early[a] < early[b] for a, b in zip(names, names[1:])))

    # across time steps: the final model's hidden state at step t vs the last step
    states = lstm_states(model, x_cca)
    n_steps = states[names[0]].shape[1]
    across = {}
    for layer in names:
        last = M.prepare(states[layer][:, -1].T)
        row = []
        for t in range(n_steps):
            d = 1.0 - M.cca_layers(M.prepare(states[layer][:, t].T), last).pwcca
            row.append(d)
        across[layer] = row
        for t in (n_steps // 4, n_steps // 2, 3 * n_steps // 4):
            metrics[f"time/{layer}/step{t}"] = row[t - 1]
    top = across[names[-1]]
    for name, t in (("quarter", n_steps // 4), ("half", n_steps // 2), ("three_quarters", 3 * n_steps // 4)):
        metrics[f"time/top/{name}"] = top[t - 1]
    base = M.random_baseline(cfg["hidden"], cfg["hidden"], len(x_cca), ctx.generator("baseline"))
    metrics["time/baseline_pwcca"] = 1.0 - base["pwcca"]
    base_dyn = M.random_baseline(cfg["hidden"], cfg["hidden"], final[names[0]].shape[1],
                                 ctx.generator("baseline dyn"))
    metrics["dynamics/baseline_pwcca"] = 1.0 - base_dyn["pwcca"]
    ctx.save_json("lstm", {"config": cfg, "dynamics": dynamics, "across_time": across,
                           "history": state["history"], "total_steps": total,
                           "baseline_time": metrics["time/baseline_pwcca"],
                           "baseline_dynamics": metrics["dynamics/baseline_pwcca"],
                           "data_points": {"dynamics": int(final[names[0]].shape[1]),
                                           "time": len(x_cca)}})
    return metrics
