"""unrestricted_adversarial_mnist: unrestricted adversarial examples from an AC-GAN's
latent space against a plain CNN, a PGD-trained (Madry) CNN and an IBP-certified CNN
on MNIST, judged by an oracle ensemble in place of human labellers (Song, Shu,
Kushman & Ermon, NeurIPS 2018, §3-4).

Steps (each model resumable per epoch):

1. the AC-GAN (``common.gan``: class-conditional generator, critic with an auxiliary
   classifier) on the MNIST training set, with its sample quality
   (``common.gan.sample_quality``: judge accuracy, per-class diversity, feature
   Fréchet distance) and the time of one GAN iteration;
2. the oracle: ``oracle.members`` judges (``common.gan.Judge``), each trained on its
   own disjoint slice of the training set with its own seed; member 0 is also the
   sample-quality judge;
3. the targets: ``plain`` (Madry's CNN, natural training), ``madry`` (the same net,
   L-inf PGD training, ``common.adversarial.madry_train``), ``certified`` (Kolter &
   Wong's small CNN, IBP-trained, ``method.ibp_loss``); their clean accuracy, the
   success rate of L-inf PGD on their correctly classified test images (eps 0.3;
   for the certified net also at its certified eps) and the certified net's IBP
   verified accuracy;
4. the latent search (``method.latent_search``) against each target: targeted over
   all 90 (source, target) pairs, ``per_pair`` starts each; untargeted,
   ``per_source`` starts per class; and the noise-augmented variant (untargeted)
   against ``noise_targets``; all candidates of a search in one batch.  Each search
   reports the share of attempts that fool (f fooled, AC classifier kept the source)
   and the proxy success rate (oracle labels the fooling candidate as its source),
   also with a pixel-space kNN oracle as a cross-check, and the oracle's agreement
   with the source on the unattacked starts g(z0, s) (the ceiling the GAN's
   quality puts on the proxy rate).
"""

from __future__ import annotations

import functools
import math
import time

import gin
import torch

from common import attacks as A
from common import gan as GN
from common import robustness as R
from common.adversarial import adversarial_train, madry_train, mnist_arrays
from common.context import RunContext
from common.train import accuracy, outputs, to_device
from papers.unrestricted_adversary import figures
from papers.unrestricted_adversary import method as M
from registry import Paper, register

PAPER = Paper(
    title="Constructing Unrestricted Adversarial Examples with Generative Models",
    authors="Yang Song, Rui Shu, Nate Kushman and Stefano Ermon",
    venue="NeurIPS 2018", arxiv="1805.07894", code="https://github.com/ermongroup/generative_adversary")


@gin.configurable(module="unrestricted_adversary")
def setup(eval_images=10000, pgd_images=1000, knn_reference=10000, train_subset=0):
    """Clean accuracy on the first ``eval_images`` test images, PGD on the first
    ``pgd_images``; the kNN oracle's reference set (training images)."""
    return dict(eval_images=eval_images, pgd_images=pgd_images, knn_reference=knn_reference,
                train_subset=train_subset)


@gin.configurable(module="unrestricted_adversary")
def gan(loss="wgan-gp", width=32, z_dim=128, batchnorm=False, n_critic=5, gp_weight=10.0, lr=2e-4,
        betas=(0.0, 0.999), batch_size=64, epochs=50, steps_per_epoch=188, ac_weight=1.0,
        quality_samples=2000):
    """The AC-GAN.  Defaults: the reference MNIST recipe (WGAN-GP, penalty 10, 5 critic
    steps, Adam 2e-4 with beta1 0 and beta2 0.999, batch 64, 50 epochs = 9.4k generator
    steps, z in R^128), on common.gan's generator / critic (not the reference's
    residual nets)."""
    return dict(loss=loss, width=width, z_dim=z_dim, batchnorm=batchnorm, n_critic=n_critic,
                gp_weight=gp_weight, lr=lr, betas=tuple(betas), batch_size=batch_size, epochs=epochs,
                steps_per_epoch=steps_per_epoch, ac_weight=ac_weight, quality_samples=quality_samples)


@gin.configurable(module="unrestricted_adversary")
def oracle(members=5, epochs=2, width=32, slice_size=12000, batch_size=128):
    """The human stand-in: ``members`` judges, member i trained on training images
    [i * slice_size, (i + 1) * slice_size) (disjoint slices), each with its own seed."""
    return dict(members=members, epochs=epochs, width=width, slice_size=slice_size, batch_size=batch_size)


@gin.configurable(module="unrestricted_adversary")
def targets(names=("plain", "madry", "certified"), width=1.0, plain_epochs=2, madry_epochs=50,
            madry_subset=0, madry_lr=1e-4, madry_steps=40, madry_step_size=0.01, madry_warmup_epochs=0,
            cert_eps=0.1, cert_train_eps=0.2, cert_epochs=20, cert_warmup_steps=2000, cert_ramp_steps=10000,
            cert_kappa=0.5, cert_lr=1e-3, cert_width=16, cert_subset=0, batch_size=50):
    """The target classifiers (defaults: Madry et al.'s recipe, eps 0.3, PGD-40; the
    certified net at Kolter & Wong's MNIST eps 0.1, IBP-trained at eps 0.2 as Gowal et
    al. do for a test eps of 0.1, with their warm-up and linear ramp, in steps)."""
    return dict(names=tuple(names), width=width, plain_epochs=plain_epochs, madry_epochs=madry_epochs,
                madry_subset=madry_subset, madry_lr=madry_lr, madry_steps=madry_steps,
                madry_step_size=madry_step_size, madry_warmup_epochs=madry_warmup_epochs,
                cert_eps=cert_eps, cert_train_eps=cert_train_eps, cert_epochs=cert_epochs,
                cert_warmup_steps=cert_warmup_steps, cert_ramp_steps=cert_ramp_steps, cert_kappa=cert_kappa, cert_lr=cert_lr,
                cert_width=cert_width, cert_subset=cert_subset, batch_size=batch_size)


@gin.configurable(module="unrestricted_adversary")
def search(per_pair=10, per_source=100, steps=1000, lr=1.0, lam1=100.0, lam2=100.0, eps=0.1, box="squared",
           optimizer="sgd", grad_noise=0.01, noise_eps=0.1, noise_targets=("plain", "madry", "certified")):
    """The latent search (reference code defaults: gradient descent lr 1 with gradient
    noise, lam1 = lam2 = 100, the squared z box of 0.1, noise 0.1, 1000 iterations)."""
    return dict(per_pair=per_pair, per_source=per_source, steps=steps, lr=lr, lam1=lam1, lam2=lam2,
                eps=eps, box=box, optimizer=optimizer, grad_noise=grad_noise, noise_eps=noise_eps,
                noise_targets=tuple(noise_targets))


@gin.configurable(module="unrestricted_adversary")
def pgd(eps=0.3, steps=40, step_size=0.01, restarts=1):
    """The norm-bounded baseline: L-inf PGD (Madry et al.'s evaluation attack)."""
    return dict(eps=eps, steps=steps, step_size=step_size, restarts=restarts)


# ------------------------------------------------------------------ models


def train_acgan(ctx: RunContext, data: dict, cfg: dict):
    G = GN.Generator(z_dim=cfg["z_dim"], width=cfg["width"], n_classes=10,
                     batchnorm=cfg["batchnorm"]).to(ctx.device)
    D = GN.Critic(width=cfg["width"], n_classes=10, norm="batch" if cfg["loss"] == "dcgan" and cfg["batchnorm"]
                  else "none").to(ctx.device)
    gcfg = GN.GANConfig(loss=cfg["loss"], n_critic=cfg["n_critic"], gp_weight=cfg["gp_weight"], lr=cfg["lr"],
                        betas=cfg["betas"], batch_size=cfg["batch_size"], z_dim=cfg["z_dim"],
                        ac_weight=cfg["ac_weight"])
    acgan = GN.GAN(G, D, gcfg)
    clock = {"t": time.perf_counter()}

    def timer(_gan):  # wall-clock of the epoch (stored in the history, so a resume keeps it)
        now = time.perf_counter()
        out = {"epoch_seconds": now - clock["t"]}
        clock["t"] = now
        return out

    history = GN.train_gan(ctx, "acgan", acgan, data["x_train"], data["y_train"], epochs=cfg["epochs"],
                           steps_per_epoch=cfg["steps_per_epoch"], generator=ctx.generator("acgan/noise"),
                           monitor=timer)
    return acgan, history


def train_oracle(ctx: RunContext, data: dict, cfg: dict) -> list:
    members = []
    n = cfg["slice_size"]
    for i in range(cfg["members"]):
        sl = slice(i * n, (i + 1) * n)
        if len(data["x_train"][sl]) < n:
            raise ValueError(f"oracle member {i}: the training set has no slice {sl} of {n} images")
        members.append(GN.train_judge(ctx, f"oracle{i}", data["x_train"][sl], data["y_train"][sl],
                                      epochs=cfg["epochs"], width=cfg["width"], batch_size=cfg["batch_size"],
                                      generator=ctx.generator(f"oracle{i}/order")))
    return members


def _subset(data: dict, n: int, key: int) -> dict:
    if not n:
        return data
    keep = torch.randperm(len(data["x_train"]), generator=torch.Generator().manual_seed(key))[:n]
    return {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}


def train_certified(ctx: RunContext, data: dict, cfg: dict, monitor: tuple):
    """IBP training (Gowal et al. 2018's schedule, per step): ``cert_warmup_steps`` of
    clean training, then eps ramped linearly to ``cert_train_eps`` and kappa from 1 to
    ``cert_kappa`` over ``cert_ramp_steps``, then both constant."""
    model = M.certified_net(cfg["cert_width"]).to(ctx.device)
    x_mon, y_mon = to_device(*monitor, device=ctx.device)
    train = _subset(data, cfg["cert_subset"], 2)
    per_epoch = math.ceil(len(train["x_train"]) / cfg["batch_size"])

    def schedule(step):
        frac = min(1.0, max(0.0, (step - cfg["cert_warmup_steps"]) / max(1, cfg["cert_ramp_steps"])))
        return cfg["cert_train_eps"] * frac, 1.0 - (1.0 - cfg["cert_kappa"]) * frac

    def epoch_loss(epoch):
        step = [epoch * per_epoch]

        def loss(model, x, y):
            e, kappa = schedule(step[0])
            step[0] += 1
            return M.ibp_loss(model, x, y, eps=e, kappa=kappa)

        return loss, {"train_eps_end": schedule((epoch + 1) * per_epoch - 1)[0]}

    def watch(m):
        ok = M.certified_correct(m, x_mon, y_mon, cfg["cert_eps"])
        return {"monitor_clean": accuracy(m, x_mon, y_mon), "monitor_certified": 100.0 * ok.float().mean().item()}

    return adversarial_train(ctx, "certified", model, train, epochs=cfg["cert_epochs"],
                             batch_size=cfg["batch_size"], lr=cfg["cert_lr"], epoch_loss=epoch_loss, monitor=watch,
                             generators={"order": ctx.generator("certified/order")},
                             describe=lambda r: f"clean {r['monitor_clean']:.1f}%, IBP-certified "
                                                f"{r['monitor_certified']:.1f}% at eps {cfg['cert_eps']}")


def train_target(ctx: RunContext, name: str, data: dict, cfg: dict, monitor: tuple):
    if name == "plain":
        return madry_train(ctx, "plain", data, monitor, adversarial=False, epochs=cfg["plain_epochs"],
                           width=cfg["width"], batch_size=cfg["batch_size"], lr=1e-3, steps=10, step_size=0.03)
    if name == "madry":
        return madry_train(ctx, "madry", _subset(data, cfg["madry_subset"], 1), monitor, epochs=cfg["madry_epochs"],
                           width=cfg["width"], batch_size=cfg["batch_size"], lr=cfg["madry_lr"],
                           steps=cfg["madry_steps"], step_size=cfg["madry_step_size"],
                           warmup_epochs=cfg["madry_warmup_epochs"])
    if name == "certified":
        return train_certified(ctx, data, cfg, monitor)
    raise ValueError(f"unknown target {name!r}: plain, madry or certified")


def pgd_success(model, x, y, eps: float, cfg: dict, generator) -> tuple[float, int]:
    """% of the correctly classified images that L-inf PGD misclassifies, and their number."""
    ok = outputs(model, x).argmax(1) == y
    x, y = x[ok], y[ok]
    if not len(x):
        return math.nan, 0
    attack = functools.partial(A.pgd, eps=eps, norm="linf", steps=cfg["steps"], step_size=cfg["step_size"] * eps / 0.3,
                               restarts=cfg["restarts"], random_start=True, generator=generator)
    still = R.correct_under(model, x, y, lambda m, xx, yy, e: attack(m, xx, yy), eps)
    return 100.0 * (1 - still.float().mean().item()), len(x)


# ------------------------------------------------------------------ the searches


def run_search(ctx: RunContext, key: str, acgan, f, oracle_net, knn_ref, mode: str, scfg: dict,
               z_dim: int) -> tuple[dict, dict]:
    """One batched search (``mode``: targeted, untargeted, noise) against ``f``; its
    metrics and the tensors the figures need."""
    dev = ctx.device
    if mode == "targeted":
        source, target = M.pairs(10, scfg["per_pair"], dev)
    else:
        source, target = torch.arange(10, device=dev).repeat_interleave(scfg["per_source"]), None
    z0 = GN.noise(len(source), z_dim, ctx.generator(f"{key}/z0"), dev)
    cfg = M.SearchConfig(steps=scfg["steps"], lr=scfg["lr"], lam1=scfg["lam1"], lam2=scfg["lam2"], eps=scfg["eps"],
                         box=scfg["box"], noise_eps=scfg["noise_eps"] if mode == "noise" else 0.0,
                         optimizer=scfg["optimizer"], grad_noise=scfg["grad_noise"])
    aux = _Aux(acgan.D)  # the AC-GAN's auxiliary classifier
    t0 = time.perf_counter()
    res = M.latent_search(acgan.G, aux, f, z0, source, target, cfg, generator=ctx.generator(f"{key}/noise"))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        o_label = oracle_net(res["x"]).argmax(1)
        o_start = oracle_net(res["x0"]).argmax(1)
        f_start = outputs(f, res["x0"]).argmax(1)
        aux_start = aux(res["x0"]).argmax(1)
    k_label = M.knn_label(res["x"].cpu(), *knn_ref).to(dev)
    k_start = M.knn_label(res["x0"].cpu(), *knn_ref).to(dev)
    ps = M.proxy_success(res["fooled"], o_label, source)
    ks = M.proxy_success(res["fooled"], k_label, source)
    m = {f"{key}/fool_rate": ps["fool_rate"], f"{key}/proxy_success": ps["success_rate"],
         f"{key}/proxy_success_per_attempt": ps["success_per_attempt"], f"{key}/fooling": ps["fooling"],
         f"{key}/attempts": ps["attempts"], f"{key}/knn_success": ks["success_rate"],
         f"{key}/oracle_start_agreement": 100.0 * (o_start == source).float().mean().item(),
         f"{key}/knn_start_agreement": 100.0 * (k_start == source).float().mean().item(),
         f"{key}/target_start_agreement": 100.0 * (f_start == source).float().mean().item(),
         f"{key}/aux_start_agreement": 100.0 * (aux_start == source).float().mean().item(),
         f"{key}/seconds": seconds, f"{key}/seconds_per_step": seconds / max(1, cfg.steps),
         f"{key}/mean_l1": res["l1"].mean().item(),
         f"{key}/max_linf_z": (res["z"] - z0).abs().max().item()}
    if target is not None:
        m[f"{key}/hit_target"] = 100.0 * (res["f_pred"] == target).float().mean().item()
    saved = {"x": (res["x"].cpu() * 255).round().to(torch.uint8), "x0": (res["x0"].cpu() * 255).round().to(torch.uint8),
             "source": source.cpu(), "target": (target.cpu() if target is not None else torch.full_like(source.cpu(), -1)),
             "fooled": res["fooled"].cpu(), "oracle": o_label.cpu(), "oracle_start": o_start.cpu(),
             "f_pred": res["f_pred"].cpu()}
    return m, saved


class _Aux(torch.nn.Module):
    """The critic's auxiliary-classifier head as a module (its class logits)."""

    def __init__(self, D):
        super().__init__()
        self.D = D

    def forward(self, x):
        return self.D(x)[1]


@register("unrestricted_adversarial_mnist", paper=PAPER, data=("mnist",),
          figures=[figures.targeted_grid, figures.acgan_samples, figures.success_rates])
def run(ctx: RunContext) -> dict:
    """AC-GAN latent search vs plain, PGD-trained and IBP-certified MNIST CNNs; oracle-judged."""
    torch.set_grad_enabled(True)
    scfg, gcfg, ocfg, tcfg, acfg, pcfg = setup(), gan(), oracle(), targets(), search(), pgd()
    data = mnist_arrays(ctx, scfg["train_subset"])
    dev = ctx.device
    x_test, y_test = to_device(data["x_test"][:scfg["eval_images"]], data["y_test"][:scfg["eval_images"]], device=dev)
    monitor = (data["x_test"][-500:], data["y_test"][-500:])
    metrics: dict = {}

    # 1-2. AC-GAN, oracle, sample quality
    acgan, gan_history = train_acgan(ctx, data, gcfg)
    members = train_oracle(ctx, data, ocfg)
    oracle_net = M.Oracle(members).eval()
    iters = gcfg["steps_per_epoch"]
    per_iter = sorted(r["epoch_seconds"] / iters for r in gan_history)
    metrics["gan/seconds_per_iteration"] = per_iter[len(per_iter) // 2]
    metrics["gan/iterations"] = gcfg["epochs"] * iters
    q = GN.sample_quality(members[0], acgan.G, data["x_test"], data["y_test"], n=gcfg["quality_samples"],
                          generator=ctx.generator("quality"))
    metrics.update({f"gan/{k}": v for k, v in q.items()})
    with torch.no_grad():
        yq = torch.arange(gcfg["quality_samples"], device=dev) % 10
        xq = GN.sample(acgan.G, len(yq), ctx.generator("quality/oracle"), yq)
        metrics["gan/oracle_acc"] = 100.0 * (oracle_net(xq).argmax(1) == yq).float().mean().item()
        metrics["gan/aux_acc_samples"] = 100.0 * (acgan.D(xq)[1].argmax(1) == yq).float().mean().item()
    metrics["gan/aux_acc_test"] = accuracy(_Aux(acgan.D), x_test, y_test)
    for i, mem in enumerate(members):
        metrics[f"oracle/member{i}_acc"] = accuracy(mem, x_test, y_test)
    metrics["oracle/acc"] = 100.0 * (outputs(oracle_net, x_test).argmax(1) == y_test).float().mean().item()
    grid_y = torch.arange(10, device=dev).repeat_interleave(10)
    samples = GN.sample(acgan.G, 100, ctx.generator("figure/samples"), grid_y)

    # 3. targets
    models, histories = {}, {"acgan": gan_history}
    xp, yp = x_test[:scfg["pgd_images"]], y_test[:scfg["pgd_images"]]
    for name in tcfg["names"]:
        model, histories[name] = train_target(ctx, name, data, tcfg, monitor)
        models[name] = model.eval()
        metrics[f"{name}/clean"] = accuracy(model, x_test, y_test)
        metrics[f"{name}/pgd_success"], metrics[f"{name}/pgd_images"] = pgd_success(
            model, xp, yp, pcfg["eps"], pcfg, ctx.generator(f"{name}/pgd"))
        if name == "certified":
            e = tcfg["cert_eps"]
            metrics["certified/verified"] = 100.0 * M.certified_correct(model, x_test, y_test, e).float().mean().item()
            metrics["certified/pgd_success_at_cert_eps"], _ = pgd_success(model, xp, yp, e, pcfg,
                                                                          ctx.generator("certified/pgd_cert"))
        ctx.log(f"[{name}] clean {metrics[f'{name}/clean']:.1f}%, PGD-{pcfg['steps']} (eps {pcfg['eps']}) "
                f"success {metrics[f'{name}/pgd_success']:.1f}%")

    # 4. searches
    ref = torch.randperm(len(data["x_train"]), generator=torch.Generator().manual_seed(3))[:scfg["knn_reference"]]
    knn_ref = (data["x_train"][ref], data["y_train"][ref])
    saved = {}
    for name, f in models.items():
        modes = ["targeted", "untargeted"] + (["noise"] if name in acfg["noise_targets"] else [])
        for mode in modes:
            key = f"{name}/{mode}"
            m, s = run_search(ctx, key, acgan, f, oracle_net, knn_ref, mode, acfg, gcfg["z_dim"])
            metrics.update(m)
            saved[key] = s
            ctx.log(f"[{key}] fooling {m[f'{key}/fool_rate']:.1f}% of {m[f'{key}/attempts']} attempts; proxy "
                    f"success {m[f'{key}/proxy_success']:.1f}% (kNN {m[f'{key}/knn_success']:.1f}%); oracle on the "
                    f"starts {m[f'{key}/oracle_start_agreement']:.1f}%; {m[f'{key}/seconds_per_step']:.3f} s/step")
    for name in models:
        if f"{name}/untargeted/proxy_success" in metrics:
            metrics[f"{name}/unrestricted_minus_pgd"] = (metrics[f"{name}/untargeted/proxy_success"]
                                                         - metrics[f"{name}/pgd_success"])
    ctx.save_tensors("searches", {**{k.replace("/", "__"): v for k, v in saved.items()},
                                  "samples": {"x": (samples.cpu() * 255).round().to(torch.uint8), "y": grid_y.cpu()}})
    ctx.save_json("histories", histories)
    ctx.save_json("config", {"setup": scfg, "gan": gcfg, "oracle": ocfg, "targets": tcfg, "search": acfg, "pgd": pcfg})
    ctx.save_json("quality", q)
    return metrics
