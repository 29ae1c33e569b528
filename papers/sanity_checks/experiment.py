"""Sanity checks for saliency maps (Adebayo et al. 2018): the model-parameter
randomisation tests (cascading and independent, §3.1, Fig. 2-4 and the MNIST
appendix) and the data randomisation test (§3.2, Fig. 5), on the reference's
MNIST / Fashion-MNIST CNN.

Protocol (reference src/train_cnn_models.py and notebooks): the CNN is
trained with Adam (lr 1e-4, batch 50, L2 1e-3 x sum(w^2)/2 on the conv and
fc1 weights), 5,000 training images held out for validation; the
random-label model trains on a fixed permutation of the training labels
until it fits them.  Maps explain the logit of the class each model
predicts (recomputed for every randomised model, as the reference does).
The paper's Inception v3 / ImageNet cascade needs a pretrained checkpoint
and ImageNet, not available offline; the paper's own MNIST experiments are
the faithful subset reproduced here.
"""

from __future__ import annotations

import gin
import torch
import torch.nn.functional as F

from common import atomic
from common.context import RunContext
from common.train import accuracy, train_until_memorised
from papers.sanity_checks import figures
from papers.sanity_checks import method as M
from registry import Paper, register

PAPER = Paper(
    title="Sanity checks for saliency maps",
    authors="Julius Adebayo, Justin Gilmer, Michael Muelly, Ian Goodfellow, Moritz Hardt, Been Kim",
    venue="NeurIPS 2018", arxiv="1810.03292",
    code="https://github.com/adebayoj/sanity_checks_saliency (CNN, training, block order, metrics)")


@gin.configurable(module="sanity_checks")
def cnn(c1=32, c2=64, fc=1024):
    """The reference CNN's widths."""
    return dict(c1=c1, c2=c2, fc=fc)


@gin.configurable(module="sanity_checks")
def train(epochs=50, random_label_epochs=100, batch_size=50, lr=1e-4, l2=1e-3,
          train_subset=0, validation=5000, stop_at_train_acc=100.0):
    """The reference's recipe (50 epochs true labels, 100 random labels).
    ``train_subset`` > 0 keeps that many training images (after the validation
    split); ``stop_at_train_acc`` ends random-label training once it fits."""
    return dict(epochs=epochs, random_label_epochs=random_label_epochs, batch_size=batch_size,
                lr=lr, l2=l2, train_subset=train_subset, validation=validation,
                stop_at_train_acc=stop_at_train_acc)


@gin.configurable(module="sanity_checks")
def saliency(n_images=200, ig_steps=50, noise_samples=50, noise=0.15, batch_size=25):
    """200 images (the paper's count for its curves), IG 50 steps, SmoothGrad/VarGrad
    50 samples of noise 0.15 x the input range."""
    return dict(n_images=n_images, ig_steps=ig_steps, noise_samples=noise_samples, noise=noise,
                batch_size=batch_size)


# ------------------------------------------------------------------ training


def load_data(ctx: RunContext, dataset: str, cfg: dict):
    tr, te = ctx.dataset(dataset, train=True), ctx.dataset(dataset, train=False)
    x, y = tr.images[cfg["validation"]:], tr.labels[cfg["validation"]:]
    if cfg["train_subset"]:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:cfg["train_subset"]]
        x, y = x[keep], y[keep]
    return {"x": x, "y": y, "x_test": te.images, "y_test": te.labels}


def l2_penalty(model: M.CNN) -> torch.Tensor:
    """The reference's tf.nn.l2_loss on conv1, conv2 and fc1 weights (not the logits)."""
    return sum(0.5 * (getattr(model, b).weight ** 2).sum() for b in ("conv1", "conv2", "fc1"))


def train_model(ctx: RunContext, key: str, data: dict, labels: torch.Tensor, epochs: int,
                cfg: dict, arch: dict, stop_at: float | None = None) -> tuple[M.CNN, dict]:
    """Train one CNN (resumable per epoch); returns it and its history."""
    gen = ctx.generator(key)
    model = M.init_model(M.CNN(**arch), gen).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def loss_fn(m, logits, y):
        loss = F.cross_entropy(logits, y)
        return loss + cfg["l2"] * l2_penalty(m) if cfg["l2"] else loss

    hist = train_until_memorised(ctx, key, model, opt, data["x"], labels, epochs=epochs,
                                 batch_size=cfg["batch_size"], generator=gen, stop_at=stop_at,
                                 loss_fn=loss_fn)
    info = {"train_acc": accuracy(model, data["x"], labels),
            "test_acc": accuracy(model, data["x_test"], data["y_test"]),
            "epochs_run": len(hist), "history": hist}
    ctx.log(f"[{key}] {len(hist)} epochs: train {info['train_acc']:.2f}% on its labels, "
            f"test {info['test_acc']:.2f}%")
    return model, info


def trained(ctx, key, data, labels, epochs, cfg, arch, stop_at=None):
    """Train once per run; a resumed run reloads the saved weights."""
    path = ctx.run_dir / "checkpoints" / f"{key}-final.pt"
    if path.exists():
        ckpt = atomic.torch_load(path)
        model = M.CNN(**arch).to(ctx.device)
        model.load_state_dict(ckpt["model"])
        return model.eval(), ckpt["info"]
    model, info = train_model(ctx, key, data, labels, epochs, cfg, arch, stop_at)
    atomic.torch_save({"model": model.state_dict(), "info": info, "config": ctx.config_text}, path)
    return model, info


def images_to_explain(data: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images (fixed across seeds, so maps are comparable)."""
    return data["x_test"][:n], data["y_test"][:n]


def _f32(a) -> torch.Tensor:
    """A saved image or map (a tensor, or a list from the resume cache) as float32: the maps
    are computed in float32, so nothing is lost, and the file is a quarter of its JSON."""
    return torch.as_tensor(a, dtype=torch.float32)


def maps_for(ctx, model, x, sal, key: str) -> dict[str, torch.Tensor]:
    gen = ctx.generator(f"noise {key}")
    return M.all_maps(model, x.to(ctx.device), ig_steps=sal["ig_steps"],
                      noise_samples=sal["noise_samples"], noise=sal["noise"], generator=gen,
                      batch_size=sal["batch_size"])


def compare_maps(original: dict, new: dict) -> dict:
    """Mean (and per-image values) of each metric, per method."""
    out = {}
    for method in M.METHODS:
        sim = M.similarity(original[method].cpu(), new[method].cpu())
        out[method] = {k: v.tolist() if v.ndim else int(v) for k, v in sim.items()}
    return out


def spread(comparison: dict) -> dict:
    """method -> metric -> [mean, std over images], what the curves plot."""
    out = {}
    for method, sims in comparison.items():
        out[method] = {}
        for metric in M.METRICS:
            vals = torch.tensor(sims[metric], dtype=torch.float64)
            out[method][metric] = [vals.mean().item(), vals.std().item() if len(vals) > 1 else 0.0]
    return out


def summarise(prefix: str, comparison: dict, metrics: dict) -> None:
    for method, sims in comparison.items():
        for metric in M.METRICS:
            vals = torch.tensor(sims[metric], dtype=torch.float64)
            metrics[f"{prefix}/{method}/{metric}"] = vals.mean().item()


# ----------------------------------------------------------- experiments


@register("sanity_checks_model_randomization", paper=PAPER,
          data=("mnist", "fashion_mnist (optional)"), claims_file="claims_model_randomization.toml",
          figures=[figures.cascading_grid, figures.cascading_curves, figures.independent_curves])
def run_model_randomization(ctx: RunContext) -> dict:
    """Cascading and independent randomisation of a trained MNIST CNN's blocks, 8 saliency methods."""
    datasets = model_randomization_setup()
    cfg, arch, sal = train(), cnn(), saliency()
    metrics, saved, similarity = {}, {}, {}
    for dataset in datasets:
        data = load_data(ctx, dataset, cfg)
        model, info = trained(ctx, f"{dataset}-true", data, data["y"], cfg["epochs"], cfg, arch)
        metrics[f"{dataset}/train_acc"] = info["train_acc"]
        metrics[f"{dataset}/test_acc"] = info["test_acc"]
        x, y = images_to_explain(data, sal["n_images"])
        ctx.log(f"{dataset}: blocks (top down) and their parameters: {M.count_blocks(model)}; "
                f"re-initialiser: truncated normal(0, 0.1) weights, 0.1 biases (the reference's)")

        def step(kind, i, blocks):
            key = f"{dataset}-{kind}-{i}"

            def compute():
                gen = ctx.generator(f"reinit {key}")
                rand = M.randomised(model, blocks, gen)
                new = maps_for(ctx, rand, x, sal, key)
                return {"blocks": list(blocks), "comparison": compare_maps(original, new),
                        "test_acc": accuracy(rand, data["x_test"][:2000], data["y_test"][:2000]),
                        "examples": {m: v[:figures.N_EXAMPLES].tolist() for m, v in new.items()}}
            return ctx.once(key, compute)

        original = maps_for(ctx, model, x, sal, f"{dataset}-original")
        cascade, independent = [], []
        for i, block in enumerate(M.CNN.BLOCKS):
            cascade.append(step("cascade", i, M.CNN.BLOCKS[:i + 1]))
            independent.append(step("independent", i, (block,)))
            ctx.log(f"{dataset}: randomised {block} (cascade: test acc {cascade[-1]['test_acc']:.1f}%)")
        for kind, steps in (("cascade", cascade), ("independent", independent)):
            for block, res in zip(M.CNN.BLOCKS, steps):
                summarise(f"{dataset}/{kind}/{block}", res["comparison"], metrics)
                similarity[f"{dataset}/{kind}/{block}"] = spread(res["comparison"])
                metrics[f"{dataset}/{kind}/{block}/test_acc"] = res["test_acc"]
                metrics[f"{dataset}/{kind}/{block}/undefined_rank"] = sum(
                    r["nan_count"] for r in res["comparison"].values())
        saved[dataset] = {
            "blocks": list(M.CNN.BLOCKS), "images": _f32(x[:figures.N_EXAMPLES, 0]),
            "labels": y[:figures.N_EXAMPLES].tolist(),
            "original": {m: _f32(v[:figures.N_EXAMPLES]) for m, v in original.items()},
            "cascade": [{"blocks": r["blocks"], "examples": {m: _f32(v) for m, v in r["examples"].items()}}
                        for r in cascade],
            "independent_blocks": [r["blocks"] for r in independent]}
        # the abs-vs-signed comparison the paper draws, averaged over the cascade
        for method in M.METHODS:
            for metric in ("spearman_abs", "spearman_signed"):
                metrics[f"{dataset}/cascade_mean/{method}/{metric}"] = sum(
                    metrics[f"{dataset}/cascade/{b}/{method}/{metric}"] for b in M.CNN.BLOCKS) / 4
    ctx.save_tensors("maps", saved)  # binary float32: a quarter of the JSON
    ctx.save_json("similarity", similarity)
    ctx.save_json("setup", {"datasets": list(datasets), "cnn": arch, "train": cfg, "saliency": sal,
                            "methods": list(M.METHODS), "metrics": list(M.METRICS)})
    return metrics


@gin.configurable(module="sanity_checks")
def model_randomization_setup(datasets=("mnist",)):
    return tuple(datasets)


@gin.configurable(module="sanity_checks")
def data_randomization_setup(datasets=("mnist", "fashion_mnist"), train_subset=0,
                             true_label_epochs=0):
    """``train_subset`` > 0 trains the true- and random-label models on that
    many training images (memorising all 55,000 permuted labels takes the
    paper's 100 epochs); ``true_label_epochs`` > 0 overrides train.epochs for
    the true-label models on that subset."""
    return tuple(datasets), train_subset, true_label_epochs


@register("sanity_checks_data_randomization", paper=PAPER, data=("mnist", "fashion_mnist"),
          claims_file="claims_data_randomization.toml",
          figures=[figures.data_randomization_maps, figures.data_randomization_bars])
def run_data_randomization(ctx: RunContext) -> dict:
    """True-label vs permuted-label CNNs on MNIST and Fashion-MNIST: do the saliency maps differ?"""
    datasets, subset, true_epochs = data_randomization_setup()
    cfg, arch, sal = train(), cnn(), saliency()
    if subset:
        cfg = {**cfg, "train_subset": subset}
    if true_epochs:
        cfg = {**cfg, "epochs": true_epochs}
    metrics, saved, similarity = {}, {}, {}
    for dataset in datasets:
        data = load_data(ctx, dataset, cfg)
        perm = torch.randperm(len(data["y"]), generator=ctx.generator(f"permute {dataset}"))
        random_labels = data["y"][perm]
        models, infos = {}, {}
        # two true-label models from different initialisations give the noise floor:
        # how much maps differ between equally good models
        for name, labels, epochs, stop in (
                ("true", data["y"], cfg["epochs"], None),
                ("true_b", data["y"], cfg["epochs"], None),
                ("random", random_labels, cfg["random_label_epochs"], cfg["stop_at_train_acc"])):
            models[name], infos[name] = trained(ctx, f"{dataset}-{name}", data, labels, epochs, cfg,
                                                arch, stop)
            metrics[f"{dataset}/{name}/train_acc"] = infos[name]["train_acc"]
            metrics[f"{dataset}/{name}/test_acc"] = infos[name]["test_acc"]
            metrics[f"{dataset}/{name}/epochs"] = infos[name]["epochs_run"]
        x, y = images_to_explain(data, sal["n_images"])

        all_maps = {name: maps_for(ctx, m, x, sal, f"{dataset}-{name}") for name, m in models.items()}
        for other in ("random", "true_b"):
            comparison = compare_maps(all_maps["true"], all_maps[other])
            summarise(f"{dataset}/true_vs_{other}", comparison, metrics)
            similarity[f"{dataset}/true_vs_{other}"] = spread(comparison)
        saved[dataset] = {"images": _f32(x[:figures.N_EXAMPLES, 0]),
                          "labels": y[:figures.N_EXAMPLES].tolist(),
                          "maps": {name: {m: _f32(v[:figures.N_EXAMPLES]) for m, v in mp.items()}
                                   for name, mp in all_maps.items()},
                          "history": {name: info["history"] for name, info in infos.items()}}
        ctx.log(f"{dataset}: random-label model fits {infos['random']['train_acc']:.2f}% of its "
                f"labels after {infos['random']['epochs_run']} epochs")
    ctx.save_tensors("maps", saved)  # binary float32: a quarter of the JSON
    ctx.save_json("similarity", similarity)
    ctx.save_json("setup", {"datasets": list(datasets), "cnn": arch, "train": cfg, "saliency": sal,
                            "methods": list(M.METHODS), "metrics": list(M.METRICS)})
    return metrics
