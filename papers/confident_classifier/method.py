"""Lee, Lee, Lee & Shin, "Training confidence-calibrated classifiers for detecting
out-of-distribution samples" (ICLR 2018, arXiv 1711.09325): the confidence loss, the
joint classifier + GAN training of Algorithm 1, and the models of the experiments.

- Confidence loss [paper Eq. 1]: ``E_in[-log P(y|x)] + beta * E_out[KL(U || P(.|x))]``,
  with ``KL(U || P) = -log K - (1/K) sum_k log P_k`` per sample, averaged over the
  batch ("batchmean").  The reference code (alinlab/Confident_classifier) computes the
  same term with PyTorch's element-averaged KL-div times K; ``beta`` is explicit here
  (reference: 1 for SVHN, 0.1 for CIFAR-10).
- Joint training [Algorithm 1]: per iteration (i) the discriminator's standard GAN
  update, (ii) the generator's non-saturating update plus ``beta * KL(U || P(.|G(z)))``
  through the (frozen) classifier, which pulls G towards the low-density boundary of
  the in-distribution, (iii) the classifier's confidence-loss update on a real batch and
  a fresh ``G(z')``.  As in the reference code there is no pull-away term; the GAN part
  is ``common.gan`` (``train_gan``'s ``g_extra`` and ``step_hook`` carry (ii) and (iii)).
- Models: the 2-D toy's MLP (2 hidden layers of 500, §2.1), a small 2-conv + 2-fc CNN for
  MNIST (cpu; ``common.adversarial.MadryCNN`` at a reduced width), VGG-13 without
  BatchNorm ("config B", 512-512-K head with dropout; the reference code) and a 32x32
  DCGAN (nz 100, ngf = ndf = 64, Sigmoid output, BatchNorm in D except the first layer,
  LeakyReLU 0.2; the reference code) for the full profile's SVHN / CIFAR-10; small MLP
  G and D for the 2-D GAN of Fig. 3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.gan import frozen

# ------------------------------------------------------------------ the loss


def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``KL(U || softmax(logits))`` (nats), U uniform over the
    K classes: ``-log K - mean_k log p_k`` per sample.  0 exactly for a uniform prediction."""
    k = logits.shape[-1]
    return (-math.log(k) - F.log_softmax(logits, -1).mean(-1)).mean()


def confidence_loss(model: nn.Module, x_in: torch.Tensor, y_in: torch.Tensor,
                    x_out: torch.Tensor | None, beta: float) -> tuple[torch.Tensor, dict]:
    """Cross entropy on the in-distribution batch + ``beta`` KL(U || P) on the OOD batch
    (one forward pass over both).  ``x_out=None`` (or ``beta=0``): plain cross entropy."""
    if x_out is None or beta == 0:
        ce = F.cross_entropy(model(x_in), y_in)
        return ce, {"ce": ce.detach()}
    logits = model(torch.cat([x_in, x_out]))
    ce = F.cross_entropy(logits[:len(x_in)], y_in)
    kl = kl_uniform(logits[len(x_in):])
    return ce + beta * kl, {"ce": ce.detach(), "kl": kl.detach()}


def generator_kl(classifier: nn.Module, beta: float):
    """``g_extra`` for ``common.gan.train_gan``: ``beta * KL(U || P(.|G(z)))``, the
    classifier frozen (Algorithm 1, the generator's update)."""

    def g_extra(fake, z, y_fake):
        with frozen(classifier):
            return beta * kl_uniform(classifier(fake))

    return g_extra


def classifier_hook(classifier: nn.Module, opt: torch.optim.Optimizer, G: nn.Module, x: torch.Tensor,
                    y: torch.Tensor, beta: float, batch_size: int, generator: torch.Generator):
    """``step_hook`` for ``common.gan.train_gan``: one confidence-loss update of the
    classifier on a real batch (drawn i.i.d. by ``generator``) and a fresh ``G(z')``
    (Algorithm 1, the classifier's update)."""

    def hook(step, fake, z, y_fake):
        idx = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
        z2 = torch.randn(batch_size, G.z_dim, generator=generator).to(x.device)
        with torch.no_grad():
            x_out = G(z2)
        classifier.train()
        loss, stats = confidence_loss(classifier, x[idx], y[idx], x_out, beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"c_" + k: v for k, v in stats.items()}

    return hook


# ------------------------------------------------------------------ the 2-D toy (§2.1, Fig. 1, Fig. 3)


def toy_data(n: int, generator: torch.Generator, means=((-8.0, 0.0), (8.0, 0.0)), std: float = 2.0):
    """Two isotropic 2-D Gaussians, one per class, ``n`` points in all (balanced)."""
    y = torch.arange(n) % len(means)
    x = torch.tensor(means)[y] + std * torch.randn(n, 2, generator=generator)
    return x, y


def distance_to_data(x: torch.Tensor, means=((-8.0, 0.0), (8.0, 0.0))) -> torch.Tensor:
    """Euclidean distance of each point to the nearest class mean."""
    return torch.cdist(x, torch.tensor(means, dtype=x.dtype)).min(1).values


def box_ood(n: int, half: float, generator: torch.Generator, reject_within: float,
            means=((-8.0, 0.0), (8.0, 0.0))) -> torch.Tensor:
    """``n`` points uniform in the box ``[-half, half]^2``, rejecting those closer than
    ``reject_within`` to a class mean (rejection sampling; batched rounds)."""
    out = []
    have = 0
    while have < n:
        cand = (torch.rand(4 * n, 2, generator=generator) * 2 - 1) * half
        keep = cand[distance_to_data(cand, means) >= reject_within]
        out.append(keep)
        have += len(keep)
    return torch.cat(out)[:n]


class MLP(nn.Module):
    """Fully connected ReLU net (the toy classifier: 2 hidden layers of 500)."""

    def __init__(self, d_in: int = 2, hidden=(500, 500), d_out: int = 2):
        super().__init__()
        layers, d = [], d_in
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class PointGenerator(nn.Module):
    """2-D GAN generator (MLP), the interface ``common.gan.GAN`` expects."""

    def __init__(self, z_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, 0
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, z, y=None):
        return self.net(z)


class PointCritic(nn.Module):
    """2-D GAN discriminator (MLP): ``D(x) -> (logit (N,), None)``."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.n_classes = 0
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1), None


# ------------------------------------------------------------------ OOD test sets (MNIST, cpu)


def unseen_sets(x_test: torch.Tensor, generator: torch.Generator, names=("uniform", "gaussian",
                                                                        "inverted", "shuffled")) -> dict:
    """Synthetic out-of-distribution sets of the shape of ``x_test`` (N, C, H, W), in [0, 1]:
    ``uniform`` U[0, 1] pixels; ``gaussian`` N(0.5, 1) clipped to [0, 1] (ODIN's Gaussian
    noise); ``inverted`` 1 - x (the test images, negated); ``shuffled`` each test image's
    pixels randomly permuted (same intensity histogram, no strokes)."""
    n = len(x_test)
    out = {}
    for name in names:
        if name == "uniform":
            out[name] = torch.rand(x_test.shape, generator=generator)
        elif name == "gaussian":
            out[name] = (0.5 + torch.randn(x_test.shape, generator=generator)).clamp(0, 1)
        elif name == "inverted":
            out[name] = 1.0 - x_test
        elif name == "shuffled":
            flat = x_test.reshape(n, -1)
            perm = torch.rand(flat.shape, generator=generator).argsort(1)
            out[name] = flat.gather(1, perm).reshape(x_test.shape)
        else:
            raise ValueError(f"unknown OOD set {name!r}")
    return out


# ------------------------------------------------------------------ full profile: 32x32 RGB


class VGG13(nn.Module):
    """VGG-13 ("config B") without BatchNorm; 512-512-K head with dropout (the reference code)."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers, c = [], in_channels
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(512, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class Generator32(nn.Module):
    """DCGAN generator, z (N, nz) -> (N, nc, 32, 32) in [0, 1] (Sigmoid)."""

    def __init__(self, z_dim: int = 100, width: int = 64, channels: int = 3):
        super().__init__()
        self.z_dim, self.n_classes, w = z_dim, 0, width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Sigmoid())

    def forward(self, z, y=None):
        return self.net(z.view(len(z), -1, 1, 1))


class Critic32(nn.Module):
    """DCGAN discriminator on 32x32: ``D(x) -> (logit (N,), None)``."""

    def __init__(self, width: int = 64, channels: int = 3):
        super().__init__()
        self.n_classes, w = 0, width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * w, 1, 4, 1, 0, bias=False))

    def forward(self, x):
        return self.net(x).flatten(), None
