"""gce_noisy_labels: CCE, MAE, Lq and truncated Lq under uniform and
class-dependent label noise (Zhang & Sabuncu 2018, Tables 1-2, Fig. 1).

Protocol (§4): 10% of the training set is held out as a validation set that
keeps its noisy labels; the reported test accuracy is that of the epoch with
the best noisy-validation accuracy (we also record the last epoch's, which
shows CCE memorising the noise).  The full profile is the paper's CIFAR-10 /
ResNet-34 / 120-epoch recipe; the cpu profile is a Fashion-MNIST stand-in
with a small CNN (CIFAR-10 is not available offline), whose numbers are not
comparable with the paper's, only its orderings.
"""

from __future__ import annotations

import gin
import torch
import torch.nn.functional as F

from common.context import RunContext
from common.train import accuracy, batches, count_parameters, outputs, predict, to_device, train_epoch
from papers.gce import figures
from papers.gce import method as M
from registry import Paper, register

PAPER = Paper(
    title="Generalized cross entropy loss for training deep neural networks with noisy labels",
    authors="Zhilu Zhang and Mert R. Sabuncu", venue="NeurIPS 2018", arxiv="1805.07836",
    code="https://github.com/AlanChou/Truncated-Loss (unofficial)")

PAPER_NOISES = (("uniform", 0.2), ("uniform", 0.4), ("uniform", 0.6), ("uniform", 0.8),
                ("class", 0.1), ("class", 0.2), ("class", 0.3), ("class", 0.4))


@gin.configurable(module="gce")
def setup(dataset="cifar10", losses=("cce", "mae", "lq", "trunc_lq"), noises=PAPER_NOISES,
          val_fraction=0.1, train_subset=0, test_subset=0):
    """``train_subset`` / ``test_subset`` > 0 keep that many images (a random, fixed subset
    of the training set; the first test images)."""
    return (dataset, tuple(losses), tuple(tuple(n) for n in noises), val_fraction,
            train_subset, test_subset)


@gin.configurable(module="gce")
def train(arch="resnet34", epochs=120, batch_size=128, lr=0.01, momentum=0.9, weight_decay=1e-4,
          lr_drops=(40, 80), q=0.7, k=0.5, prune_every=10, augment=True):
    """The paper's CIFAR-10 recipe; pruning (truncated Lq) starts at the first drop."""
    return dict(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                weight_decay=weight_decay, lr_drops=tuple(lr_drops), q=q, k=k,
                prune_every=prune_every, augment=augment)


def load_data(ctx: RunContext, dataset: str, val_fraction: float, train_subset: int,
              test_subset: int):
    train_set, test_set = ctx.dataset(dataset, train=True), ctx.dataset(dataset, train=False)
    x, y = train_set.images, train_set.labels
    x_test, y_test = test_set.images, test_set.labels
    if train_subset:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:train_subset]
        x, y = x[keep], y[keep]
    if test_subset:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    mean = x.mean(0, keepdim=True)  # per-pixel mean subtraction, as the paper
    order = torch.randperm(len(x), generator=ctx.generator("validation split"))
    n_val = int(round(val_fraction * len(x)))
    val, tr = order[:n_val], order[n_val:]
    return {"x_train": x[tr] - mean, "y_train": y[tr], "x_val": x[val] - mean, "y_val": y[val],
            "x_test": x_test - mean, "y_test": y_test,
            "classes": train_set.classes, "shape": tuple(x.shape[1:])}


def train_one(ctx: RunContext, key: str, loss_name: str, data: dict, noisy: dict, cfg: dict,
              dataset: str) -> dict:
    num_classes = len(data["classes"])
    model = M.build(cfg["arch"], num_classes, data["shape"][0]).to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg["lr_drops"]), gamma=0.1)
    gen = ctx.generator(key)
    x_tr, y_tr = to_device(data["x_train"], noisy["train"], device=ctx.device)
    corrupted = noisy["train"] != data["y_train"]
    probe = torch.arange(min(5000, len(x_tr)))  # fixed training subset to watch memorisation
    state = {"history": [], "weights": torch.ones(len(x_tr)), "best_val": -1.0,
             "test_at_best_val": 0.0, "best_epoch": 0}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "sched": sched, "gen": gen}, state)
    start_prune = cfg["lr_drops"][0] if cfg["lr_drops"] else cfg["epochs"]

    def loss_fn(model, x, y, w):
        if cfg["augment"]:
            x = M.augment(x, gen)
        with ctx.autocast():
            logits = model(x)
        return M.LOSSES[loss_name](logits.float(), y, weights=w, q=cfg["q"], k=cfg["k"])

    bar = ctx.progress(total=cfg["epochs"], desc=key)
    for epoch in loop.epochs(cfg["epochs"]):
        if (loss_name == "trunc_lq" and epoch >= start_prune
                and (epoch - start_prune) % cfg["prune_every"] == 0):
            p_y = F.softmax(outputs(model, x_tr), 1).gather(1, y_tr[:, None]).squeeze(1)
            state["weights"] = M.prune_weights(p_y, cfg["k"]).cpu()  # checkpointed: kept on the host
        weights = to_device(state["weights"], device=ctx.device)
        stats = train_epoch(model, batches(x_tr, y_tr, weights, batch_size=cfg["batch_size"],
                                           shuffle=True, generator=gen), opt, loss_fn)
        sched.step()
        val_acc = accuracy(model, data["x_val"], noisy["val"])
        test_acc = accuracy(model, data["x_test"], data["y_test"])
        pred = predict(model, x_tr[probe]).argmax(1)
        bad, y_probe = corrupted[probe], noisy["train"][probe]
        row = {"epoch": epoch + 1, **stats, "val_acc": val_acc, "test_acc": test_acc,
               "fit_noisy_labels": 100.0 * (pred[bad] == y_probe[bad]).float().mean().item()
               if bad.any() else None,
               "fit_clean_labels": 100.0 * (pred[~bad] == y_probe[~bad]).float().mean().item(),
               "kept_fraction": state["weights"].mean().item()}
        state["history"].append(row)
        if val_acc > state["best_val"]:
            state.update(best_val=val_acc, test_at_best_val=test_acc, best_epoch=epoch + 1)
        bar.update(1)
        bar.set_postfix(val=f"{val_acc:.1f}", test=f"{test_acc:.1f}")
    bar.close()
    last = state["history"][-1]
    ctx.log(f"[{key}] test {state['test_at_best_val']:.2f}% at best noisy-val epoch "
            f"{state['best_epoch']} (last epoch {last['test_acc']:.2f}%)")
    return {"test_acc": state["test_at_best_val"], "final_test_acc": last["test_acc"],
            "best_val_acc": state["best_val"], "best_epoch": state["best_epoch"],
            "fit_noisy_labels": last["fit_noisy_labels"], "kept_fraction": last["kept_fraction"],
            "params": count_parameters(model), "history": state["history"]}


@register("gce_noisy_labels", paper=PAPER, data=("cifar10 (full)", "fashion_mnist (cpu)"),
          figures=[figures.accuracy_vs_noise, figures.curves_high_noise])
def run(ctx: RunContext) -> dict:
    """CCE vs MAE vs Lq vs truncated Lq under uniform and class-dependent label noise."""
    dataset, losses, noises, val_fraction, train_subset, test_subset = setup()
    cfg = train()
    data = load_data(ctx, dataset, val_fraction, train_subset, test_subset)
    ctx.log(f"{dataset}: {len(data['x_train'])} train / {len(data['x_val'])} noisy-val / "
            f"{len(data['x_test'])} test images; {cfg['arch']}, {cfg['epochs']} epochs")
    metrics, histories = {}, {}
    for kind, eta in noises:
        noise_key = f"{kind}_{eta}"
        gen = ctx.generator(f"noise {noise_key}")  # same noisy labels for every loss
        noisy = {s: M.corrupt(data[f"y_{s}"], kind, eta, len(data["classes"]), dataset, gen)
                 for s in ("train", "val")}
        realised = (noisy["train"] != data["y_train"]).float().mean().item()
        metrics[f"{noise_key}/realised_noise"] = 100.0 * realised
        for loss_name in losses:
            key = f"{noise_key}-{loss_name}"
            result = ctx.once(key, lambda: train_one(ctx, key, loss_name, data, noisy, cfg, dataset))
            histories[key] = result.pop("history")
            for name, value in result.items():
                metrics[f"{noise_key}/{loss_name}/{name}"] = value
    ctx.save_json("histories", histories)
    ctx.save_json("grid", {"dataset": dataset, "losses": losses, "noises": noises, "train": cfg})
    return metrics
