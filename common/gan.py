"""GANs that several papers share: DCGAN (non-saturating loss), WGAN-GP, an AC-GAN
variant and Zhao et al.'s inverter, one resumable training loop for all of them,
and the sample-quality checks the GAN papers report.

Used by natural_adversary (Zhao, Dua & Singh, ICLR 2018: WGAN-GP + inverter),
and written for confident_classifier (Lee et al., ICLR 2018: DCGAN trained jointly
with a classifier) and unrestricted_adversary (Song et al., NeurIPS 2018: AC-WGAN-GP).

API (stable; additions only)
----------------------------
Networks (MNIST 28x28, images in [0, 1], ``width`` scales every layer):

- ``Generator(z_dim=64, width=64, n_classes=0, batchnorm=False)``: ``G(z, y=None)``.
  Linear(z [+ one-hot y] -> 4*4*4w), ReLU, ConvT(4w->2w, 5, s2) 4->8, crop to 7,
  ReLU, ConvT(2w->w) 7->14, ReLU, ConvT(w->1) 14->28, Sigmoid: Zhao et al.'s MNIST
  generator (zhengliz/natural-adversary, image/mnist_wgan_inv.py) at ``width=64``;
  ``n_classes > 0`` makes it class-conditional (the one-hot label concatenated to z,
  the AC-GAN generator); ``batchnorm=True`` adds BatchNorm after the linear layer and
  the hidden deconvolutions (the DCGAN generator).
- ``Critic(width=64, n_classes=0, norm="none")``: ``D(x) -> (score (N,), class_logits
  (N, K) or None)``.  Three 5x5 stride-2 convolutions (w, 2w, 4w; LeakyReLU 0.2) and a
  linear score; ``n_classes > 0`` adds the auxiliary classifier head (AC-GAN).
  ``norm="batch"`` (DCGAN discriminator; BatchNorm after the 2nd and 3rd conv) or
  ``"layer"``; keep ``"none"`` with a gradient penalty (it is per sample).
- ``Inverter(z_dim=64, width=64)``: ``I(x) -> z``, the critic's trunk, then
  Linear(4w*16 -> 8w), LeakyReLU, Linear(8w -> z_dim) (Zhao et al.'s inverter).

Losses (each returns a scalar tensor):

- ``d_loss_dcgan(real_score, fake_score)``, ``g_loss_dcgan(fake_score)``: the standard
  discriminator cross entropy and the non-saturating generator loss -log D(G(z))
  (Goodfellow et al. 2014, §3), on logits.
- ``d_loss_wgan``, ``g_loss_wgan``; ``gradient_penalty(critic, real, fake, alpha=None,
  generator=None)``: E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = alpha real + (1 - alpha)
  fake, alpha ~ U[0, 1] per sample (Gulrajani et al. 2017, Algorithm 1); ``critic``
  maps images to scores (N,).
- ``inverter_loss(G, I, x, z, lam=0.1)``: ||x - G(I(x))||^2 + lam ||z - I(G(z))||^2,
  mean squared errors (Zhao et al. §2; the reference code's form and lambda).

Training:

- ``GANConfig(loss="wgan-gp" | "dcgan", n_critic, gp_weight, lr, betas, batch_size,
  z_dim, ac_weight, ac_fake_in_d, inverter_lr, inverter_lambda)``.
- ``GAN(G, D, cfg, I=None, n_classes=0)``: the modules and their Adam optimisers.
- ``train_gan(ctx, key, gan, x, y=None, *, epochs, steps_per_epoch, generator,
  g_extra=None, step_hook=None, extra_objects=None, monitor=None, grid=True)``:
  ``epochs`` x ``steps_per_epoch`` generator iterations, each after ``n_critic``
  critic updates (and, with an inverter, one inverter update after each critic
  update, as the Zhao reference code does).  Real batches are drawn i.i.d. (with
  replacement) from ``x`` and noise from ``generator`` on the CPU, so a run's data
  and noise are the same on every device.  ``g_extra(fake, z, y_fake) -> loss`` is added
  to the generator's loss (Lee et al.'s KL term); ``step_hook(step, fake, z, y_fake)``
  runs after each iteration (Lee et al.'s classifier update); ``extra_objects``
  (e.g. that classifier and its optimiser) are checkpointed with the GAN.  Resumable
  per epoch under ``key`` through ``ctx.resumable``; one host sync per epoch; logs the
  epoch's mean losses and saves a sample grid per epoch (``<run>/samples/``).
  Returns the history (one row per epoch; ``monitor(gan)`` adds entries).
- ``noise(n, z_dim, generator, device)``, ``sample(G, n, generator, y=None)``;
  ``frozen(module)``: a context in which the module's parameters take no gradient.

Sample quality (all three papers check it; the Inception network cannot be fetched
offline, so its place is taken by an independent MNIST classifier, the "judge"):

- ``Judge(width=32)``: a small CNN with ``features(x)`` (penultimate layer, 128-d);
  ``train_judge(ctx, key, x, y, epochs, generator)`` trains it (resumable).
- ``frechet_distance(mu1, cov1, mu2, cov2)``: ||mu1 - mu2||^2 + tr(C1 + C2 -
  2 (C1^1/2 C2 C1^1/2)^1/2), float64; ``gaussian_stats(features)``;
  ``feature_frechet(judge, xa, xb)``: the Fréchet distance in the judge's feature
  space, a proxy for FID (not comparable with Inception-FID values).
- ``per_class_diversity(feats, labels, ref_feats, ref_labels, n_classes)``: per class,
  the mean pairwise feature distance among samples over that among real images of
  the class (1 = as diverse as the data; near 0 = mode collapse).
- ``sample_quality(judge, G, x_ref, y_ref, n, generator, n_classes=10)``: judge accuracy
  on class-conditional samples (conditional G only), the class histogram of the judge's
  predictions (unconditional G), per-class diversity, the feature Fréchet distance,
  and the same distance between two halves of the reference set (its floor).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.train import batches, model_device, outputs, to_device, to_host, train_epoch

# ------------------------------------------------------------------ networks


class Generator(nn.Module):
    """z (N, z_dim) [, y (N,)] -> images (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, z_dim: int = 64, width: int = 64, n_classes: int = 0, batchnorm: bool = False):
        super().__init__()
        self.z_dim, self.width, self.n_classes = z_dim, width, n_classes
        w = width
        bn = (lambda c, d=2: (nn.BatchNorm2d(c) if d == 2 else nn.BatchNorm1d(c))) if batchnorm else None
        self.fc = nn.Sequential(nn.Linear(z_dim + n_classes, 4 * 4 * 4 * w),
                                *( [bn(4 * 4 * 4 * w, 1)] if bn else []), nn.ReLU())
        self.up1 = nn.ConvTranspose2d(4 * w, 2 * w, 5, stride=2, padding=2, output_padding=1)  # 4 -> 8
        self.mid = nn.Sequential(*([bn(2 * w)] if bn else []), nn.ReLU(),
                                 nn.ConvTranspose2d(2 * w, w, 5, stride=2, padding=2, output_padding=1),
                                 *([bn(w)] if bn else []), nn.ReLU(),
                                 nn.ConvTranspose2d(w, 1, 5, stride=2, padding=2, output_padding=1),
                                 nn.Sigmoid())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes:
            if y is None:
                raise ValueError("a class-conditional generator needs labels y")
            z = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], 1)
        h = self.fc(z).view(len(z), 4 * self.width, 4, 4)
        h = self.up1(h)[:, :, :7, :7]  # the reference code's crop, 8x8 -> 7x7
        return self.mid(h)


def _trunk(width: int, norm: str) -> nn.Sequential:
    w = width

    def nrm(c, hw):
        return {"none": nn.Identity(), "batch": nn.BatchNorm2d(c), "layer": nn.LayerNorm([c, hw, hw])}[norm]

    return nn.Sequential(nn.Conv2d(1, w, 5, stride=2, padding=2), nn.LeakyReLU(0.2),           # 28 -> 14
                         nn.Conv2d(w, 2 * w, 5, stride=2, padding=2), nrm(2 * w, 7), nn.LeakyReLU(0.2),
                         nn.Conv2d(2 * w, 4 * w, 5, stride=2, padding=2), nrm(4 * w, 4), nn.LeakyReLU(0.2),
                         nn.Flatten())


class Critic(nn.Module):
    """images -> (score (N,), class logits (N, K) or None)."""

    def __init__(self, width: int = 64, n_classes: int = 0, norm: str = "none"):
        super().__init__()
        self.n_classes = n_classes
        self.trunk = _trunk(width, norm)
        self.score = nn.Linear(4 * width * 16, 1)
        self.classify = nn.Linear(4 * width * 16, n_classes) if n_classes else None

    def forward(self, x: torch.Tensor):
        h = self.trunk(x)
        return self.score(h).squeeze(1), (self.classify(h) if self.classify is not None else None)


class Inverter(nn.Module):
    """images -> z (Zhao et al.'s I_gamma)."""

    def __init__(self, z_dim: int = 64, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(_trunk(width, "none"), nn.Linear(4 * width * 16, 8 * width),
                                 nn.LeakyReLU(0.2), nn.Linear(8 * width, z_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ------------------------------------------------------------------ losses


def d_loss_dcgan(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))], D = sigmoid(score)."""
    return F.softplus(-real_score).mean() + F.softplus(fake_score).mean()


def g_loss_dcgan(fake_score: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -E[log D(G(z))]."""
    return F.softplus(-fake_score).mean()


def d_loss_wgan(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    return fake_score.mean() - real_score.mean()


def g_loss_wgan(fake_score: torch.Tensor) -> torch.Tensor:
    return -fake_score.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, alpha: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2], x_hat = alpha real + (1 - alpha) fake; ``alpha``
    (N,) defaults to U[0, 1] per sample drawn from ``generator`` (on the CPU).  Built
    with ``create_graph`` so that it trains the critic."""
    if alpha is None:
        alpha = torch.rand(len(real), generator=generator).to(real.device)
    a = alpha.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def inverter_loss(G: nn.Module, I: nn.Module, x: torch.Tensor, z: torch.Tensor,
                  lam: float = 0.1) -> torch.Tensor:
    """Zhao et al.'s inverter objective as their code has it: MSE(x, G(I(x))) +
    lam MSE(z, I(G(z))) (the paper: lam = 1 and a divergence on the image term)."""
    with torch.no_grad():
        gz = G(z)
    return F.mse_loss(G(I(x)), x) + lam * F.mse_loss(I(gz), z)


# ------------------------------------------------------------------ training


@dataclass
class GANConfig:
    """One GAN's training recipe.  Defaults: Zhao et al.'s reference code (WGAN-GP,
    penalty 10, 5 critic steps, Adam 1e-4 with betas (0.9, 0.999), batch 80, z in R^64)."""

    loss: str = "wgan-gp"          # or "dcgan" (non-saturating, no penalty)
    n_critic: int = 5
    gp_weight: float = 10.0
    lr: float = 1e-4
    betas: tuple = (0.9, 0.999)
    d_lr: float | None = None      # the critic's learning rate (default: lr)
    batch_size: int = 80
    z_dim: int = 64
    ac_weight: float = 1.0         # weight of the auxiliary-classifier cross entropy
    ac_fake_in_d: bool = False     # also train D's class head on fakes (Odena et al.); Song et al.: real only
    inverter_lr: float | None = None
    inverter_lambda: float = 0.1

    def __post_init__(self):
        if self.loss not in ("wgan-gp", "dcgan"):
            raise ValueError(f"unknown GAN loss {self.loss!r}: 'wgan-gp' or 'dcgan'")
        self.betas = tuple(self.betas)


class GAN:
    """A generator, a critic (discriminator), optionally an inverter, and their optimisers."""

    def __init__(self, G: Generator, D: Critic, cfg: GANConfig, I: Inverter | None = None):
        self.G, self.D, self.I, self.cfg = G, D, I, cfg
        self.n_classes = G.n_classes
        if D.n_classes != G.n_classes:
            raise ValueError("generator and critic disagree on the number of classes")
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr or cfg.lr, betas=cfg.betas)
        self.opt_i = (torch.optim.Adam(I.parameters(), lr=cfg.inverter_lr or cfg.lr, betas=cfg.betas)
                      if I is not None else None)

    def objects(self) -> dict:
        out = {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d}
        if self.I is not None:
            out.update(I=self.I, opt_i=self.opt_i)
        return out

    def modules(self):
        return [m for m in (self.G, self.D, self.I) if m is not None]


def noise(n: int, z_dim: int, generator: torch.Generator | None = None,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard-normal latents drawn on the CPU (device-independent), moved to ``device``."""
    return torch.randn(n, z_dim, generator=generator).to(device)


@torch.no_grad()
def sample(G: nn.Module, n: int, generator: torch.Generator | None = None,
           y: torch.Tensor | None = None, batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples of G in eval mode (labels ``y`` for a conditional G), on G's device."""
    was = G.training
    G.eval()
    dev = model_device(G)
    z = noise(n, G.z_dim, generator, dev)
    out = torch.cat([G(z[i:i + batch_size], None if y is None else y[i:i + batch_size].to(dev))
                     for i in range(0, n, batch_size)])
    G.train(was)
    return out


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters without gradients inside (the gradient still flows to the input)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _real_batch(x, y, n, generator):
    idx = torch.randint(len(x), (n,), generator=generator).to(x.device)
    return x[idx], (y[idx] if y is not None else None)


def critic_step(gan: GAN, xb, yb, generator):
    """One critic update (and, with an inverter, one inverter update).  Returns detached stats."""
    cfg, G, D = gan.cfg, gan.G, gan.D
    dev = xb.device
    z = noise(len(xb), cfg.z_dim, generator, dev)
    yf = torch.randint(gan.n_classes, (len(xb),), generator=generator).to(dev) if gan.n_classes else None
    with torch.no_grad():
        fake = G(z, yf)
    real_s, real_c = D(xb)
    fake_s, fake_c = D(fake)
    stats = {}
    if cfg.loss == "wgan-gp":
        adv = d_loss_wgan(real_s, fake_s)
        gp = gradient_penalty(lambda v: D(v)[0], xb, fake, generator=generator)
        loss = adv + cfg.gp_weight * gp
        stats.update(d_wasserstein=-adv.detach(), d_gp=gp.detach())
    else:
        adv = d_loss_dcgan(real_s, fake_s)
        loss = adv
    stats["d_loss"] = adv.detach()
    if gan.n_classes:
        ac = F.cross_entropy(real_c, yb)
        if cfg.ac_fake_in_d:
            ac = ac + F.cross_entropy(fake_c, yf)
        loss = loss + cfg.ac_weight * ac
        stats["d_ac"] = ac.detach()
    gan.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    gan.opt_d.step()
    if gan.I is not None:  # G frozen: the inverter's loss trains the inverter only
        zi = noise(len(xb), cfg.z_dim, generator, dev)
        with frozen(G):
            li = inverter_loss(G, gan.I, xb, zi, cfg.inverter_lambda)
            gan.opt_i.zero_grad(set_to_none=True)
            li.backward()
        gan.opt_i.step()
        stats["inv_loss"] = li.detach()
    return stats


def generator_step(gan: GAN, n: int, generator, device, g_extra=None):
    cfg, G, D = gan.cfg, gan.G, gan.D
    z = noise(n, cfg.z_dim, generator, device)
    yf = torch.randint(gan.n_classes, (n,), generator=generator).to(device) if gan.n_classes else None
    fake = G(z, yf)
    with frozen(D):
        fake_s, fake_c = D(fake)
    adv = g_loss_wgan(fake_s) if cfg.loss == "wgan-gp" else g_loss_dcgan(fake_s)
    loss, stats = adv, {"g_loss": adv.detach()}
    if gan.n_classes:
        ac = F.cross_entropy(fake_c, yf)
        loss = loss + cfg.ac_weight * ac
        stats["g_ac"] = ac.detach()
    if g_extra is not None:
        extra = g_extra(fake, z, yf)
        loss = loss + extra
        stats["g_extra"] = extra.detach()
    gan.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    gan.opt_g.step()
    return stats, fake.detach(), z, yf


def train_gan(ctx, key: str, gan: GAN, x: torch.Tensor, y: torch.Tensor | None = None, *,
              epochs: int, steps_per_epoch: int, generator: torch.Generator,
              g_extra: Callable | None = None, step_hook: Callable | None = None,
              extra_objects: dict | None = None, monitor: Callable | None = None,
              grid: bool = True) -> list:
    """Train ``gan`` (modules already on ``ctx.device``) on images ``x`` (labels ``y``
    for an AC-GAN); see the module docstring.  Returns the per-epoch history."""
    cfg = gan.cfg
    if gan.n_classes and y is None:
        raise ValueError("an AC-GAN needs labels y")
    dev = ctx.device
    x = to_device(x, device=dev)
    y = to_device(y, device=dev) if y is not None else None
    state = {"history": []}
    objects = {**gan.objects(), "gen": generator, **(extra_objects or {})}
    loop = ctx.resumable(key, objects, state)
    grid_gen = torch.Generator().manual_seed(ctx.seed_for(f"{key}/grid"))
    grid_z = noise(64, cfg.z_dim, grid_gen, dev)
    grid_y = (torch.arange(64, device=dev) % gan.n_classes) if gan.n_classes else None
    bar = ctx.progress(total=epochs, desc=key)
    for epoch in loop.epochs(epochs):
        for m in gan.modules():
            m.train()
        sums: dict = {}
        for step in range(steps_per_epoch):
            for _ in range(cfg.n_critic):
                xb, yb = _real_batch(x, y, cfg.batch_size, generator)
                for k, v in critic_step(gan, xb, yb, generator).items():
                    sums[k] = sums.get(k, 0) + v.double() / cfg.n_critic
            stats, fake, z, yf = generator_step(gan, cfg.batch_size, generator, dev, g_extra)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0) + v.double()
            if step_hook is not None:
                extra = step_hook(epoch * steps_per_epoch + step, fake, z, yf)
                for k, v in (extra or {}).items():
                    sums[k] = sums.get(k, 0) + v.detach().double()
        row = {"epoch": epoch + 1, "iterations": (epoch + 1) * steps_per_epoch,
               **to_host({k: v / steps_per_epoch for k, v in sums.items()})}
        for m in gan.modules():
            m.eval()
        if monitor is not None:
            row.update(monitor(gan))
        if grid:
            with torch.no_grad():
                save_grid(gan.G(grid_z, grid_y).cpu(), ctx.run_dir / "samples" / f"{_safe(key)}-epoch{epoch + 1:03d}.png")
        state["history"].append(row)
        ctx.log(f"[{key}] epoch {epoch + 1}/{epochs} ({row['iterations']} G iterations): "
                + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "iterations")
                            and isinstance(v, float)))
        bar.update(1)
    bar.close()
    for m in gan.modules():
        m.eval()
    return state["history"]


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1] -> one (rows*(H+pad)+pad, nrow*(W+pad)+pad) grey image."""
    n, _, h, w = images.shape
    rows = math.ceil(n / nrow)
    cells = torch.ones(rows * nrow, h + pad, w + pad)  # each cell: the image after a pad above, left
    cells[:n, pad:, pad:] = images[:, 0]
    out = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad)
    out[:rows * (h + pad), :nrow * (w + pad)] = (
        cells.view(rows, nrow, h + pad, w + pad).permute(0, 2, 1, 3).reshape(rows * (h + pad), -1))
    return out


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """A PNG of a sample grid, written atomically (matplotlib's imsave, no figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    from common.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        mpimg.imsave(tmp, image_grid(images.detach().float().clamp(0, 1), nrow).numpy(),
                     cmap="gray", vmin=0, vmax=1, format="png")
    return path


# ------------------------------------------------------------------ sample quality


class Judge(nn.Module):
    """An independent MNIST classifier for sample-quality checks (in place of Inception):
    conv(32, 5) pool conv(64, 5) pool fc(128) fc(10); ``features`` = the 128-d layer."""

    def __init__(self, width: int = 32, n_classes: int = 10):
        super().__init__()
        w = width
        self.body = nn.Sequential(nn.Conv2d(1, w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(w, 2 * w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(2 * w * 49, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_judge(ctx, key: str, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 1,
                batch_size: int = 128, lr: float = 1e-3, width: int = 32,
                generator: torch.Generator | None = None) -> Judge:
    """Train a ``Judge`` (Adam, cross entropy) on ``(x, y)``, resumable per epoch under ``key``."""
    judge = Judge(width).to(ctx.device)
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    gen = generator or ctx.generator(f"{key}/order")
    x, y = to_device(x, y, device=ctx.device)
    for _ in ctx.resumable(key, {"model": judge, "opt": opt, "gen": gen}).epochs(epochs):
        train_epoch(judge, batches(x, y, batch_size=batch_size, shuffle=True, generator=gen), opt)
    return judge.eval()


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of (N, F) features, in float64."""
    f = features.double()
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (len(f) - 1)


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2),
    squared as FID reports it: ||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2).
    Float64; symmetric eigendecompositions (no non-symmetric sqrtm)."""
    mu1, mu2, cov1, cov2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    m = s1 @ cov2 @ s1
    cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross)


@torch.no_grad()
def judge_features(judge: Judge, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    dev = model_device(judge)
    judge.eval()
    return torch.cat([judge.features(xb.to(dev)).double() for (xb,) in batches(x, batch_size=batch_size)])


def feature_frechet(judge: Judge, xa: torch.Tensor, xb: torch.Tensor) -> float:
    """Fréchet distance between two image sets in the judge's feature space (a proxy for FID)."""
    return frechet_distance(*gaussian_stats(judge_features(judge, xa)), *gaussian_stats(judge_features(judge, xb)))


def _mean_pairwise(f: torch.Tensor) -> float:
    if len(f) < 2:
        return math.nan
    d = torch.cdist(f, f)
    return float(d.sum() / (len(f) * (len(f) - 1)))


def per_class_diversity(feats: torch.Tensor, labels: torch.Tensor, ref_feats: torch.Tensor,
                        ref_labels: torch.Tensor, n_classes: int = 10) -> list[float]:
    """Per class: mean pairwise distance among samples / among real images (nan if < 2 samples)."""
    out = []
    for k in range(n_classes):
        a, b = _mean_pairwise(feats[labels == k]), _mean_pairwise(ref_feats[ref_labels == k])
        out.append(a / b if b and not math.isnan(a) else math.nan)
    return out


@torch.no_grad()
def sample_quality(judge: Judge, G: nn.Module, x_ref: torch.Tensor, y_ref: torch.Tensor, *,
                   n: int = 1000, generator: torch.Generator | None = None,
                   n_classes: int = 10) -> dict:
    """Sample-quality numbers of ``G`` against real images ``x_ref`` (labels ``y_ref``),
    ``n`` samples each (class-balanced labels for a conditional G):

    ``judge_acc`` (conditional G: % of samples the judge assigns their label; the
    judge's accuracy on the real images is ``judge_acc_real``), ``class_share_min`` /
    ``class_share_max`` (fraction of samples per judge-predicted class; 0.1 each for
    balanced MNIST), ``classes_covered`` (classes with >= 2% of samples),
    ``diversity_min`` / ``diversity_mean`` (per-class feature diversity vs real, grouped
    by the conditioning label, else the judge's prediction), ``frechet`` (feature
    Fréchet distance, a proxy for FID) and ``frechet_real`` (between two halves of
    real data, n each when available: the floor at this sample size)."""
    gen = generator or torch.Generator().manual_seed(0)
    pick = torch.randperm(len(x_ref), generator=gen)
    ref_x, ref_y = x_ref[pick[:n]], y_ref[pick[:n]]
    y = (torch.arange(n) % n_classes) if getattr(G, "n_classes", 0) else None
    fake = sample(G, n, gen, y).cpu()
    ff, rf = judge_features(judge, fake).cpu(), judge_features(judge, ref_x).cpu()
    pred = outputs(judge, fake).argmax(1).cpu()
    real_pred = outputs(judge, ref_x).argmax(1).cpu()
    share = torch.bincount(pred, minlength=n_classes).double() / n
    groups = y if y is not None else pred
    div = per_class_diversity(ff, groups, rf, ref_y, n_classes)
    finite = [d for d in div if not math.isnan(d)]
    out = {"judge_acc_real": 100.0 * float((real_pred == ref_y).double().mean()),
           "class_share_min": float(share.min()), "class_share_max": float(share.max()),
           "classes_covered": int((share >= 0.02).sum()),
           "diversity_min": min(finite) if finite else math.nan,
           "diversity_mean": sum(finite) / len(finite) if finite else math.nan,
           "frechet": frechet_distance(*gaussian_stats(ff), *gaussian_stats(rf))}
    if y is not None:
        out["judge_acc"] = 100.0 * float((pred == y).double().mean())
    other = pick[n:2 * n]
    if len(other) >= 2:
        of = judge_features(judge, x_ref[other]).cpu()
        out["frechet_real"] = frechet_distance(*gaussian_stats(of), *gaussian_stats(rf))
    return out


def config_dict(cfg: GANConfig) -> dict:
    return asdict(cfg)
