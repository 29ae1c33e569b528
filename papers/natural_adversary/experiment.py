"""natural_adversarial_mnist: natural adversarial examples on MNIST (Zhao, Dua & Singh,
ICLR 2018, §3 and §4.1: Fig. 1, Table 6, Fig. 4).

1. A WGAN-GP generator G and an inverter I trained together as the reference code
   (zhengliz/natural-adversary, image/mnist_wgan_inv.py) does: 5 critic updates per
   generator update, one inverter update after each critic update, the inverter's
   loss MSE(x, G(I(x))) + 0.1 MSE(z, I(G(z))) (``common.gan``).  The paper's text
   trains the inverter on the trained generator with lambda = 1.
2. Sample quality of G with an independent MNIST classifier (``common.gan.Judge``):
   class histogram, per-class diversity, and a Fréchet distance in its feature space
   (a proxy for FID); the inverter's reconstruction error on test images.
3. Black-box targets: LeNet (snapshots along its training, for the Fig.-4 analogue:
   Delta z against accuracy) and a scikit-learn random forest.
4. For the first ``images`` test images that a classifier labels correctly *and* whose
   reconstruction G(I(x)) it still labels correctly (the others are counted and
   excluded: their Delta z would be 0), the hybrid shrinking search (Alg. 2) finds
   the natural adversary; the iterative search (Alg. 1) runs on a few images of each
   main classifier.  Delta z is compared on the images valid for both classifiers.
5. Fig. 1: x, G(I(x)), the natural adversaries and an FGSM example side by side.
"""

from __future__ import annotations

import copy
import math
import time

import gin
import numpy as np
import torch

from common import attacks as A
from common import gan
from common.adversarial import mnist_arrays
from common.context import RunContext
from common.train import accuracy, batches, cross_entropy_loss, outputs, to_device, train_step
from papers.natural_adversary import figures
from papers.natural_adversary import method as M
from registry import Paper, register

PAPER = Paper(
    title="Generating Natural Adversarial Examples",
    authors="Zhengli Zhao, Dheeru Dua and Sameer Singh",
    venue="ICLR 2018", arxiv="1710.11342", code="https://github.com/zhengliz/natural-adversary")


@gin.configurable(module="natural_adversary")
def gan_setup(width=64, z_dim=64, iterations=100_000, steps_per_epoch=1000, batch_size=80,
              n_critic=5, gp_weight=10.0, lr=1e-4, betas=(0.9, 0.999), inverter_lambda=0.1,
              train_subset=0, g_batchnorm=False):
    """The reference code's WGAN-GP + inverter (width 64: critic 64/128/256 channels,
    z in R^64, Adam 1e-4 betas (0.9, 0.999), batch 80, 100k generator iterations);
    ``g_batchnorm``: BatchNorm in the generator (the cpu profile's short training)."""
    return dict(width=width, z_dim=z_dim, iterations=iterations, steps_per_epoch=steps_per_epoch,
                batch_size=batch_size, n_critic=n_critic, gp_weight=gp_weight, lr=lr,
                betas=tuple(betas), inverter_lambda=inverter_lambda, train_subset=train_subset,
                g_batchnorm=g_batchnorm)


@gin.configurable(module="natural_adversary")
def classifiers(lenet_snapshots=(100, 300, 1000, 4690), lenet_width=1.0, lenet_batch=128,
                lenet_lr=1e-3, forest_trees=100, forest_subset=0, judge_epochs=3,
                judge_width=32, judge_subset=0, test_subset=0):
    """LeNet-5 trained by Adam, kept at ``lenet_snapshots`` (update counts; the last is
    the target LeNet, 10 epochs at full); a random forest of ``forest_trees`` trees
    (scikit-learn defaults otherwise); the judge classifier for sample quality;
    ``test_subset``: evaluate on the first test images only (smoke)."""
    return dict(lenet_snapshots=tuple(lenet_snapshots), lenet_width=lenet_width,
                lenet_batch=lenet_batch, lenet_lr=lenet_lr, forest_trees=forest_trees,
                forest_subset=forest_subset, judge_epochs=judge_epochs, judge_width=judge_width,
                judge_subset=judge_subset, test_subset=test_subset)


@gin.configurable(module="natural_adversary")
def search(images=100, n=5000, step=0.01, h0=10.0, stop=5, iterative_images=20,
           iterative_step=0.01, iterative_max_r=10.0, fgsm_eps=0.2, figure_images=8,
           quality_samples=2000):
    """The reference search: N = 5000 directions per round, dr = 0.01, range [0, 10),
    5 extra rounds; the first ``images`` test images."""
    return dict(images=images, n=n, step=step, h0=h0, stop=stop, iterative_images=iterative_images,
                iterative_step=iterative_step, iterative_max_r=iterative_max_r, fgsm_eps=fgsm_eps,
                figure_images=figure_images, quality_samples=quality_samples)


# ------------------------------------------------------------------ training


def build_gan(ctx: RunContext, cfg: dict) -> gan.GAN:
    gcfg = gan.GANConfig(loss="wgan-gp", n_critic=cfg["n_critic"], gp_weight=cfg["gp_weight"],
                         lr=cfg["lr"], betas=cfg["betas"], batch_size=cfg["batch_size"],
                         z_dim=cfg["z_dim"], inverter_lambda=cfg["inverter_lambda"])
    torch.manual_seed(ctx.seed_for("gan/init"))
    G = gan.Generator(cfg["z_dim"], cfg["width"], batchnorm=cfg["g_batchnorm"]).to(ctx.device)
    D = gan.Critic(cfg["width"]).to(ctx.device)
    I = gan.Inverter(cfg["z_dim"], cfg["width"]).to(ctx.device)
    return gan.GAN(G, D, gcfg, I=I)


def train_lenet(ctx: RunContext, data: dict, cfg: dict) -> tuple[list, list]:
    """One LeNet trained for max(snapshots) Adam updates, its weights kept at each
    snapshot; resumable per snapshot.  Returns the snapshot models and their test accuracy."""
    torch.manual_seed(ctx.seed_for("lenet/init"))
    model = M.LeNet(cfg["lenet_width"]).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lenet_lr"])
    gen = ctx.generator("lenet/order")
    state = {"snapshots": [], "acc": [], "steps": 0}
    loop = ctx.resumable("lenet", {"model": model, "opt": opt, "gen": gen}, state)
    x, y = to_device(data["x_train"], data["y_train"], device=ctx.device)
    xt, yt = to_device(data["x_test"], data["y_test"], device=ctx.device)
    snaps = cfg["lenet_snapshots"]
    for k in loop.epochs(len(snaps)):
        model.train()
        while state["steps"] < snaps[k]:
            for xb, yb in batches(x, y, batch_size=cfg["lenet_batch"], shuffle=True, generator=gen):
                train_step(model, opt, cross_entropy_loss, model, xb, yb, autocast=ctx.autocast)
                state["steps"] += 1
                if state["steps"] >= snaps[k]:
                    break
        state["snapshots"].append({n: t.detach().clone() for n, t in model.state_dict().items()})
        state["acc"].append(accuracy(model, xt, yt))
        ctx.log(f"[lenet] {snaps[k]} updates: test accuracy {state['acc'][-1]:.2f}%")
    models = []
    for sd in state["snapshots"]:
        m = M.LeNet(cfg["lenet_width"]).to(ctx.device)
        m.load_state_dict(sd)
        models.append(m.eval())
    return models, list(state["acc"])


def train_forest(ctx: RunContext, data: dict, cfg: dict):
    from sklearn.ensemble import RandomForestClassifier

    x, y = data["x_train"], data["y_train"]
    if cfg["forest_subset"]:
        keep = torch.randperm(len(x), generator=ctx.generator("forest/subset"))[:cfg["forest_subset"]]
        x, y = x[keep], y[keep]
    forest = RandomForestClassifier(n_estimators=cfg["forest_trees"], n_jobs=1,
                                    random_state=ctx.seed_for("forest"))
    forest.fit(x.flatten(1).numpy(), y.numpy())
    acc = 100.0 * float((M.forest_predictor(forest)(data["x_test"]) == data["y_test"]).double().mean())
    return forest, acc


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def inverter_diagnostics(G, I, judge, x, y) -> dict:
    G.eval(), I.eval()
    dev = next(G.parameters()).device
    rec = torch.cat([G(I(x[i:i + 1000].to(dev))).cpu() for i in range(0, len(x), 1000)])
    judge_rec = outputs(judge, rec).argmax(1).cpu()
    return {"recon_mse": float((rec - x).pow(2).mean()),
            "recon_judge_acc": 100.0 * float((judge_rec == y).double().mean()),
            "recon_l2": float((rec - x).flatten(1).norm(dim=1).mean())}


def valid_images(predict, x, x_rec, y):
    """Correctly classified images whose reconstruction is classified the same (the others
    would have Delta z = 0 and are excluded)."""
    px, pr = predict(x), predict(x_rec)
    correct = px == y
    return correct & (pr == y), correct


def run_search(ctx, key, kind, G, predict, z, y, scfg, judge):
    """A search on every valid image at once, saved per classifier (a resumed run reuses it)."""
    def go():
        gen = ctx.generator(f"search/{key}/{kind}")
        t0 = time.perf_counter()
        if kind == "hybrid":
            res = M.hybrid_search(G, predict, z, y, n=scfg["n"], step=scfg["step"], h0=scfg["h0"],
                                  stop=scfg["stop"], generator=gen)
        else:
            res = M.iterative_search(G, predict, z, y, n=scfg["n"], step=scfg["iterative_step"],
                                     max_r=scfg["iterative_max_r"], generator=gen)
        secs = time.perf_counter() - t0
        found = torch.isfinite(res["d"])
        x_adv = M.decode(G, res["z_adv"].float())
        judge_label = outputs(judge, x_adv).argmax(1).cpu() if len(x_adv) else torch.zeros(0, dtype=torch.long)
        return {"d": [v if math.isfinite(v) else None for v in res["d"].tolist()],
                "y_adv": res["y_adv"].tolist(), "queries": res["queries"].tolist(),
                "rounds": res["rounds"], "seconds": secs,
                "judge_keeps_label": (judge_label == y.cpu()).tolist(),
                "found": found.tolist(), "z_adv": res["z_adv"].tolist()}
    return ctx.once(f"search/{key}/{kind}", go)


def _mean(v):
    """The mean of the non-missing values (nan if none)."""
    v = [float(a) for a in v if a is not None]
    return float(np.mean(v)) if v else math.nan


def _ratio(a, b) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def spearman(a, b) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


@register("natural_adversarial_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.natural_vs_fgsm, figures.dz_vs_accuracy, figures.gan_samples,
                   figures.dz_histogram])
def run(ctx: RunContext) -> dict:
    """WGAN-GP + inverter, hybrid and iterative latent searches against LeNet and a random forest."""
    torch.set_grad_enabled(True)
    t_start = time.perf_counter()

    def stage(name):
        ctx.log(f"[time] {name}: {time.perf_counter() - t_start:.1f}s")
    gcfg, ccfg, scfg = gan_setup(), classifiers(), search()
    data = mnist_arrays(ctx, gcfg["train_subset"])
    if ccfg["test_subset"]:  # smoke only: accuracies on the first test images
        data["x_test"], data["y_test"] = data["x_test"][:ccfg["test_subset"]], data["y_test"][:ccfg["test_subset"]]
    metrics: dict = {}

    # 1. the GAN and its inverter, trained together
    model = build_gan(ctx, gcfg)
    epochs = max(1, gcfg["iterations"] // gcfg["steps_per_epoch"])
    spe = min(gcfg["steps_per_epoch"], gcfg["iterations"])
    history = gan.train_gan(ctx, "wgan_inverter", model, data["x_train"], epochs=epochs,
                            steps_per_epoch=spe, generator=ctx.generator("gan/train"))
    G, I = model.G.eval(), model.I.eval()
    metrics["gan/iterations"] = epochs * spe

    def time_gan():  # one generator iteration (5 critic + 5 inverter + 1 G update), on a copy
        probe = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(0)
        xb = data["x_train"][:4096].to(ctx.device)
        gan.train_gan(ctx, "speed_probe", probe, xb, epochs=1, steps_per_epoch=1, generator=gen, grid=False)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(3):
            for _ in range(probe.cfg.n_critic):
                gan.critic_step(probe, *gan._real_batch(xb, None, probe.cfg.batch_size, gen), gen)
            gan.generator_step(probe, probe.cfg.batch_size, gen, ctx.device)
        return {"seconds_per_iteration": (time.perf_counter() - t0) / 3,
                "cpu_seconds_per_iteration": (time.process_time() - c0) / 3}
    speed = ctx.once("speed/gan", time_gan)
    metrics["speed/gan_iteration_s"] = speed["seconds_per_iteration"]  # wall clock (shared machine)
    metrics["speed/gan_iteration_cpu_s"] = speed["cpu_seconds_per_iteration"]  # process CPU time

    stage("gan")
    # 2. sample quality with an independent judge, and the inverter
    jx, jy = data["x_train"], data["y_train"]
    if ccfg["judge_subset"]:
        keep = torch.randperm(len(jx), generator=ctx.generator("judge/subset"))[:ccfg["judge_subset"]]
        jx, jy = jx[keep], jy[keep]
    judge = gan.train_judge(ctx, "judge", jx, jy, epochs=ccfg["judge_epochs"], width=ccfg["judge_width"])
    metrics["judge/acc"] = accuracy(judge, *to_device(data["x_test"], data["y_test"], device=ctx.device))
    quality = ctx.once("quality", lambda: gan.sample_quality(
        judge, G, data["x_test"], data["y_test"], n=scfg["quality_samples"],
        generator=ctx.generator("quality")))
    metrics.update({f"gan/{k}": v for k, v in quality.items()})
    inv = ctx.once("inverter", lambda: inverter_diagnostics(G, I, judge, data["x_test"], data["y_test"]))
    metrics.update({f"inverter/{k}": v for k, v in inv.items()})

    stage("judge+quality")
    # 3. black-box targets
    lenets, lenet_acc = train_lenet(ctx, data, ccfg)
    forest, forest_acc = train_forest(ctx, data, ccfg)
    metrics["lenet/acc"], metrics["rf/acc"] = lenet_acc[-1], forest_acc
    targets = {"lenet": M.torch_predictor(lenets[-1]), "rf": M.forest_predictor(forest)}
    for k, (m, acc) in enumerate(zip(lenets[:-1], lenet_acc[:-1])):
        targets[f"lenet@{ccfg['lenet_snapshots'][k]}"] = M.torch_predictor(m)

    stage("classifiers")
    # 4. latent searches on the first test images
    x, y = data["x_test"][:scfg["images"]], data["y_test"][:scfg["images"]]
    with torch.no_grad():
        z = torch.cat([I(x[i:i + 1000].to(ctx.device)).cpu() for i in range(0, len(x), 1000)])
    x_rec = M.decode(G, z)
    results, valid = {}, {}
    for name, predict in targets.items():
        ok, correct = valid_images(predict, x, x_rec, y)
        valid[name] = ok
        metrics[f"{name}/excluded_share"] = 1.0 - float(ok.sum()) / max(1, int(correct.sum()))
        idx = ok.nonzero().squeeze(1)
        res = run_search(ctx, name, "hybrid", G, predict, z[idx], y[idx], scfg, judge)
        res["index"] = idx.tolist()
        results[name] = res
        metrics[f"{name}/hybrid/dz_mean"] = _mean(res["d"])
        metrics[f"{name}/hybrid/found_share"] = _mean(res["found"])
        metrics[f"{name}/hybrid/queries_mean"] = _mean(res["queries"])
        metrics[f"{name}/hybrid/seconds_per_image"] = res["seconds"] / max(1, len(idx))
        metrics[f"{name}/hybrid/judge_keeps_label"] = _mean(res["judge_keeps_label"])
        ctx.log(f"[search] {name}: {len(idx)} images, mean dz {metrics[f'{name}/hybrid/dz_mean']:.3f}, "
                f"excluded {metrics[f'{name}/excluded_share']:.2f}, {res['seconds']:.1f}s")

    def dz_on(name, mask):
        res = results[name]
        pos = {i: j for j, i in enumerate(res["index"])}
        return [res["d"][pos[i]] for i in mask.nonzero().squeeze(1).tolist()]

    both = valid["lenet"] & valid["rf"]
    metrics["common/images"] = int(both.sum())
    metrics["common/lenet_dz"] = _mean(dz_on("lenet", both))
    metrics["common/rf_dz"] = _mean(dz_on("rf", both))
    metrics["common/lenet_over_rf"] = _ratio(metrics["common/lenet_dz"], metrics["common/rf_dz"])

    # Fig. 4 analogue: Delta z against accuracy over the LeNet snapshots (common images)
    names = [f"lenet@{s}" for s in ccfg["lenet_snapshots"][:-1]] + ["lenet"]
    every = torch.stack([valid[n] for n in names]).all(0)
    fig4 = {"names": names, "steps": list(ccfg["lenet_snapshots"]), "acc": lenet_acc,
            "dz_common": [_mean(dz_on(n, every)) for n in names],
            "dz_own": [metrics[f"{n}/hybrid/dz_mean"] for n in names], "images": int(every.sum()),
            "rf_acc": forest_acc, "rf_dz": metrics["rf/hybrid/dz_mean"]}
    for n, a, d in zip(names, lenet_acc, fig4["dz_common"]):
        metrics[f"fig4/{n}/acc"], metrics[f"fig4/{n}/dz"] = a, d
    metrics["fig4/images"] = fig4["images"]
    metrics["fig4/spearman"] = spearman(lenet_acc, fig4["dz_common"])
    metrics["fig4/dz_best_over_worst"] = _ratio(fig4["dz_common"][-1], fig4["dz_common"][0])

    stage("hybrid searches")
    # iterative search (Alg. 1) on the first few images valid for both main classifiers
    few = both.nonzero().squeeze(1)[:scfg["iterative_images"]]
    sub = torch.zeros_like(both)
    sub[few] = True
    for name in ("lenet", "rf"):
        res = run_search(ctx, name, "iterative", G, targets[name], z[few], y[few], scfg, judge)
        results[f"{name}/iterative"] = {**res, "index": few.tolist()}
        hyb = dz_on(name, sub)
        hq = [results[name]["queries"][results[name]["index"].index(i)] for i in few.tolist()]
        metrics[f"{name}/iterative/dz_mean"] = _mean(res["d"])
        metrics[f"{name}/iterative/queries_mean"] = _mean(res["queries"])
        metrics[f"{name}/iterative/seconds_per_image"] = res["seconds"] / max(1, len(few))
        metrics[f"{name}/hybrid_over_iterative_dz"] = _ratio(_mean(hyb), metrics[f"{name}/iterative/dz_mean"])
        metrics[f"{name}/hybrid_over_iterative_queries"] = _ratio(_mean(hq), metrics[f"{name}/iterative/queries_mean"])

    stage("iterative searches")
    # one hybrid search on a single image (the speed of "one latent search"), LeNet
    def one_search():
        i = valid["lenet"].nonzero().squeeze(1)[:1]
        t0, c0 = time.perf_counter(), time.process_time()
        res = M.hybrid_search(G, targets["lenet"], z[i], y[i], n=scfg["n"], step=scfg["step"],
                              h0=scfg["h0"], stop=scfg["stop"], generator=ctx.generator("speed/search"))
        return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                "queries": res["queries"].tolist()}
    one = ctx.once("speed/search", one_search)
    metrics["speed/one_search_s"], metrics["speed/one_search_cpu_s"] = one["seconds"], one["cpu_seconds"]

    stage("speed")
    # 5. Fig. 1: x, G(I(x)), natural adversaries (LeNet, RF) and FGSM against LeNet
    show = both.nonzero().squeeze(1)[:scfg["figure_images"]]
    pos = {n: {i: j for j, i in enumerate(results[n]["index"])} for n in ("lenet", "rf")}
    adv = {n: M.decode(G, torch.tensor([results[n]["z_adv"][pos[n][i]] for i in show.tolist()],
                                       dtype=torch.float32).view(len(show), gcfg["z_dim"]))
           for n in ("lenet", "rf")}
    lenet = lenets[-1]
    x_show = x[show].to(ctx.device)
    x_fgsm = (A.fgsm(lenet, x_show, y[show].to(ctx.device), scfg["fgsm_eps"]).cpu() if len(show)
              else x_show.cpu())
    fg_all = A.fgsm(lenet, x.to(ctx.device), y.to(ctx.device), scfg["fgsm_eps"]).cpu()
    metrics["fgsm/lenet_fooled"] = float((targets["lenet"](fg_all) != y).double().mean())
    ctx.save_tensors("figure1", {
        "x": x[show], "x_rec": x_rec[show], "lenet_adv": adv["lenet"], "rf_adv": adv["rf"], "fgsm": x_fgsm,
        "y": y[show], "pred_rec_lenet": targets["lenet"](x_rec[show]),
        "pred_lenet_adv": targets["lenet"](adv["lenet"]), "pred_rf_adv": targets["rf"](adv["rf"]),
        "pred_fgsm": targets["lenet"](x_fgsm),
        "dz_lenet": torch.tensor([results["lenet"]["d"][pos["lenet"][i]] or math.nan for i in show.tolist()]),
        "dz_rf": torch.tensor([results["rf"]["d"][pos["rf"][i]] or math.nan for i in show.tolist()])})
    with torch.no_grad():
        samples = gan.sample(G, 64, ctx.generator("figure/samples")).cpu()
    ctx.save_tensors("samples", {"images": samples, "judge": outputs(judge, samples).argmax(1).cpu()})
    ctx.save_json("search", {k: {kk: vv for kk, vv in v.items() if kk != "z_adv"} for k, v in results.items()})
    ctx.save_json("fig4", fig4)
    ctx.save_json("history", history)
    ctx.save_json("config", {"gan": gcfg, "classifiers": ccfg, "search": scfg})
    stage("figure data")
    return metrics
