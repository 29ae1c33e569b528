"""common/gan.py: the gradient penalty against closed forms, WGAN-GP covering the
8 modes of a 2-D Gaussian mixture, an AC-GAN whose class-conditional samples land on
their class's mode, an interrupted training resuming to bit-identical weights, and the
Fréchet distance against its closed form and scipy's matrix square root."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from common import gan, runs


def make_ctx(path, config="cfg"):
    path.mkdir(parents=True, exist_ok=True)
    return runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                           run_dir=path, config_text=config, quiet=True)


# ------------------------------------------------------------------ gradient penalty


def test_gradient_penalty_linear_critic_closed_form():
    """D(x) = <w, x> + b has gradient w everywhere: the penalty is (||w|| - 1)^2."""
    torch.manual_seed(0)
    lin = nn.Linear(12, 1)
    real, fake = torch.randn(7, 12), torch.randn(7, 12)
    gp = gan.gradient_penalty(lambda v: lin(v).squeeze(1), real, fake)
    expected = (lin.weight.norm() - 1) ** 2
    assert torch.allclose(gp, expected, atol=1e-6)
    # and it trains the critic: d gp / d w = 2 (||w|| - 1) w / ||w||
    (gw,) = torch.autograd.grad(gp, lin.weight)
    w = lin.weight.detach()
    assert torch.allclose(gw, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-6)


def test_gradient_penalty_quadratic_critic_at_given_alpha():
    """D(x) = ||x||^2 / 2 has gradient x_hat: the penalty is mean_i (||x_hat_i|| - 1)^2 at
    x_hat = alpha real + (1 - alpha) fake, computed here by hand (images, per-sample alpha)."""
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(5, 1, 4, 4, generator=g), torch.rand(5, 1, 4, 4, generator=g)
    alpha = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    gp = gan.gradient_penalty(lambda v: 0.5 * v.flatten(1).pow(2).sum(1), real, fake, alpha=alpha)
    hand = np.mean([(np.linalg.norm((a * r + (1 - a) * f).numpy()) - 1) ** 2
                    for a, r, f in zip(alpha.tolist(), real, fake)])
    assert gp.item() == pytest.approx(hand, rel=1e-5)


def test_gan_losses_match_their_definitions():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid
    d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(gan.d_loss_dcgan(real, fake), d)
    assert torch.allclose(gan.g_loss_dcgan(fake), -torch.log(sig(fake)).mean())
    assert gan.d_loss_wgan(real, fake).item() == pytest.approx(fake.mean() - real.mean())


def test_mnist_networks_shapes_and_range():
    G, D, I = gan.Generator(16, 8), gan.Critic(8, n_classes=10), gan.Inverter(16, 8)
    z = torch.randn(3, 16)
    x = G(z)
    assert x.shape == (3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    score, logits = D(x)
    assert score.shape == (3,) and logits.shape == (3, 10)
    assert I(x).shape == (3, 16)
    Gc = gan.Generator(16, 8, n_classes=10, batchnorm=True)
    assert Gc(z, torch.tensor([0, 3, 9])).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError):
        Gc(z)


# ------------------------------------------------------------------ toy GANs


class MLPGen(nn.Module):
    def __init__(self, z_dim=2, hidden=64, n_classes=0):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.net = nn.Sequential(nn.Linear(z_dim + n_classes, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, z, y=None):
        if self.n_classes:
            z = torch.cat([z, F.one_hot(y, self.n_classes).float()], 1)
        return self.net(z)


class MLPCritic(nn.Module):
    def __init__(self, hidden=64, n_classes=0):
        super().__init__()
        self.n_classes = n_classes
        self.body = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.score = nn.Linear(hidden, 1)
        self.cls = nn.Linear(hidden, n_classes) if n_classes else None

    def forward(self, x):
        h = self.body(x)
        return self.score(h).squeeze(1), (self.cls(h) if self.cls is not None else None)


MODES = torch.tensor([[2 * math.cos(2 * math.pi * k / 8), 2 * math.sin(2 * math.pi * k / 8)] for k in range(8)])


def mixture(n, std=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(8, (n,), generator=g)
    return MODES[k] + std * torch.randn(n, 2, generator=g), k


def nearest_mode(x):
    d = torch.cdist(x, MODES)
    return d.argmin(1), d.min(1).values


def _train_toy_wgan(tmp_path, iterations):
    torch.manual_seed(0)
    x, _ = mixture(4096)
    cfg = gan.GANConfig(loss="wgan-gp", n_critic=5, lr=5e-4, betas=(0.0, 0.9), batch_size=256, z_dim=8)
    model = gan.GAN(MLPGen(8, 128), MLPCritic(128), cfg)
    before = nearest_mode(gan.sample(model.G, 2000, torch.Generator().manual_seed(5)))[0]
    hist = gan.train_gan(make_ctx(tmp_path), "toy", model, x, epochs=iterations // 100, steps_per_epoch=100,
                         generator=torch.Generator().manual_seed(3), grid=False)
    assert hist[-1]["iterations"] == iterations
    mode, dist = nearest_mode(gan.sample(model.G, 2000, torch.Generator().manual_seed(5)))
    share = torch.bincount(mode, minlength=8).float() / len(mode)
    return share, (dist < 0.5).float().mean().item(), torch.bincount(before, minlength=8), hist


@pytest.mark.usefixtures("one_thread")
def test_wgan_gp_covers_every_mode_of_8_gaussians(tmp_path):
    """The WGAN-GP toy (Gulrajani et al. §5.1: 8 Gaussians on a circle of radius 2, std
    0.05 here): after 300 generator iterations every mode holds >= 4% of the samples
    (uniform: 12.5%), and more samples lie within 0.5 of a mode than at initialisation,
    where the generator covers few modes (so the test can fail)."""
    share, near, before, hist = _train_toy_wgan(tmp_path, 300)
    assert share.min() >= 0.04, share
    assert near >= 0.2
    assert (before > 0.04 * 2000).sum() < 8
    assert hist[-1]["d_wasserstein"] < hist[0]["d_wasserstein"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_wgan_gp_8_gaussians_longer_run_is_sharp(tmp_path):
    """1000 iterations (about 25 s on one thread): every mode >= 8%, most samples near a mode."""
    share, near, _, _ = _train_toy_wgan(tmp_path, 1000)
    assert share.min() >= 0.08, share
    assert near >= 0.6


@pytest.mark.usefixtures("one_thread")
def test_ac_gan_samples_land_on_their_class(tmp_path):
    """AC-GAN (class-conditional generator, critic with a classifier head) on the same
    mixture with the mode index as the class: samples of class k are nearest mode k."""
    torch.manual_seed(0)
    x, k = mixture(4096)
    cfg = gan.GANConfig(loss="dcgan", n_critic=1, lr=1e-3, betas=(0.5, 0.999), batch_size=256, z_dim=2)
    model = gan.GAN(MLPGen(n_classes=8), MLPCritic(n_classes=8), cfg)
    gan.train_gan(make_ctx(tmp_path), "ac", model, x, k, epochs=2, steps_per_epoch=150,
                  generator=torch.Generator().manual_seed(4), grid=False)
    y = torch.arange(800) % 8
    mode, _ = nearest_mode(gan.sample(model.G, 800, torch.Generator().manual_seed(6), y=y))
    assert (mode == y).float().mean() >= 0.9


# ------------------------------------------------------------------ resumption


def _tiny_mnist_gan(seed=0):
    torch.manual_seed(seed)
    cfg = gan.GANConfig(n_critic=2, batch_size=8, z_dim=8)
    return gan.GAN(gan.Generator(8, 4), gan.Critic(4), cfg, I=gan.Inverter(8, 4))


@pytest.mark.usefixtures("one_thread")
def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    """WGAN-GP + inverter on random 'images': killed (an exception) after 2 of 4 epochs,
    then resumed by a fresh process-like restart (new modules, same key), it ends with
    bit-identical weights, optimiser states and history to an uninterrupted run."""
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(9))

    def train(ctx, crash_after=None):
        model = _tiny_mnist_gan()

        def hook(step, fake, z, y):
            if crash_after is not None and step + 1 == crash_after * 3:
                raise RuntimeError("simulated kill")
            return {"fake_mean": fake.mean()}

        hist = gan.train_gan(ctx, "gan", model, x, epochs=4, steps_per_epoch=3,
                             generator=torch.Generator().manual_seed(2), step_hook=hook)
        return model, hist

    ref_model, ref_hist = train(make_ctx(tmp_path / "a"))
    ctx = make_ctx(tmp_path / "b")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(ctx, crash_after=3)
    assert torch.load(tmp_path / "b" / "checkpoints" / "gan.pt", weights_only=True)["epoch"] == 2
    model, hist = train(ctx)
    assert hist == ref_hist and "fake_mean" in hist[0] and "inv_loss" in hist[0]
    for a, b in zip(ref_model.modules(), model.modules()):
        for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert na == nb and torch.equal(ta, tb), na
    assert sorted(p.name for p in (tmp_path / "b" / "samples").glob("*.png")) == \
        [f"gan-epoch{e:03d}.png" for e in range(1, 5)]


# ------------------------------------------------------------------ Fréchet distance


def test_frechet_distance_closed_form_diagonal():
    """Diagonal covariances commute: FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2."""
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    assert gan.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, abs=1e-9)
    assert gan.frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = A @ A.T + 0.1 * np.eye(6), B @ B.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    ours = gan.frechet_distance(torch.tensor(mu1), torch.tensor(c1), torch.tensor(mu2), torch.tensor(c2))
    assert ours == pytest.approx(ref, rel=1e-8)
    assert ours == pytest.approx(gan.frechet_distance(torch.tensor(mu2), torch.tensor(c2),
                                                      torch.tensor(mu1), torch.tensor(c1)), rel=1e-8)


def test_frechet_of_samples_converges_to_gaussian_closed_form():
    """Sample statistics of two Gaussians (N = 20000, 2-D): the estimate is near the exact value."""
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    xb = torch.randn(20000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, 0.0])
    exact = 1.0 + (1 - 2) ** 2 + (1 - 0.5) ** 2
    assert gan.frechet_distance(*gan.gaussian_stats(xa), *gan.gaussian_stats(xb)) == pytest.approx(exact, abs=0.05)


def test_per_class_diversity_flags_a_collapsed_class():
    g = torch.Generator().manual_seed(0)
    ref, ref_y = torch.randn(400, 5, generator=g), torch.arange(400) % 2
    fake, fake_y = torch.randn(400, 5, generator=g), torch.arange(400) % 2
    fake[fake_y == 1] = fake[fake_y == 1][:1] + 1e-3 * torch.randn(200, 5, generator=g)  # class 1 collapsed
    div = gan.per_class_diversity(fake, fake_y, ref, ref_y, 2)
    assert div[0] == pytest.approx(1.0, abs=0.1) and div[1] < 0.01


class _Replay(nn.Module):
    """A 'generator' that returns given images (conditional: the image of its label)."""

    def __init__(self, images, n_classes=0):
        super().__init__()
        self.images, self.n_classes, self.z_dim = images, n_classes, 4
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z, y=None):
        if y is not None:
            return self.images[y]
        return self.images[torch.arange(len(z)) % len(self.images)]


@pytest.mark.usefixtures("one_thread")
def test_sample_quality_separates_data_from_a_collapsed_generator():
    """A generator replaying held-out 'real' images scores a Fréchet distance near the
    real-vs-real floor and diversity near 1; one that always outputs the same image
    has diversity 0, one covered class and a far larger distance."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(10, 1, 28, 28, generator=g)
    y = torch.arange(3000) % 10
    x = (protos[y] + 0.3 * torch.rand(3000, 1, 28, 28, generator=g)).clamp(0, 1)
    judge = gan.Judge(8).eval()
    with torch.no_grad():  # make the judge's head a nearest-prototype classifier on its features
        f = judge.features(protos)
        judge.head.weight.copy_(f)
        judge.head.bias.copy_(-0.5 * f.pow(2).sum(1))
    good = gan.sample_quality(judge, _Replay(x[2000:]), x[:2000], y[:2000], n=500)
    bad = gan.sample_quality(judge, _Replay(x[2000:2001]), x[:2000], y[:2000], n=500)
    assert good["frechet"] < 3 * good["frechet_real"] + 1e-6
    assert bad["frechet"] > 10 * good["frechet"]
    assert good["diversity_mean"] == pytest.approx(1.0, abs=0.15)
    assert bad["classes_covered"] == 1 and bad["diversity_min"] == pytest.approx(0.0, abs=1e-6)
    cond = gan.sample_quality(judge, _Replay(protos, n_classes=10), x[:2000], y[:2000], n=500)
    assert cond["judge_acc"] == pytest.approx(100.0) and good["judge_acc_real"] > 50


def test_image_grid_places_every_image_in_its_cell():
    """Row-major cells of (H + pad) x (W + pad), the image after the pad; white elsewhere."""
    x = torch.rand(5, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    grid = gan.image_grid(x, nrow=2, pad=1)
    assert grid.shape == (3 * 4 + 1, 2 * 5 + 1)
    for i in range(5):
        r, c = divmod(i, 2)
        assert torch.equal(grid[1 + 4 * r: 4 + 4 * r, 1 + 5 * c: 5 + 5 * c], x[i, 0])
    assert (grid[0] == 1).all() and (grid[:, 0] == 1).all()
    assert (grid[9:12, 6:10] == 1).all()  # the sixth cell is empty
