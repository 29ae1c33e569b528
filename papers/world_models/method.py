"""World Models (Ha & Schmidhuber, NeurIPS 2018, arXiv 1803.10122): V, M and C.

* V (``ConvVAE``): four stride-2 4x4 convs (32, 64, 128, 256 channels) to a diagonal
  Gaussian latent, a dense layer and four transposed convs (5, 5, 6, 6) back to a
  64x64x3 frame (§2.1, App. A.1).  Loss as in the reference code
  (hardmaru/WorldModelsExperiments, doomrnn.py ``ConvVAE``): squared error *summed*
  over pixels plus KL *summed* over latent dims, the KL floored at
  ``kl_tolerance * z_dim`` per frame (free bits; 0.5 there), both averaged over the
  batch.  Summing and flooring is what avoids the KL explosion / collapse seen in
  re-implementations that average (notes §3, pitfalls).
* M (``MDNRNN``): an LSTM over [z_t, a_t] whose output layer gives, per latent dim,
  a mixture of ``K`` Gaussians over z_{t+1} (log mixture weights, means, log stds)
  and, for Doom, one logit of the done flag (§4, "DoomRNN").  The done loss is a
  sigmoid cross entropy whose positive (rare) terms are weighted by
  ``done_factor`` (10 in the reference's ``restart_factor``).
* Sampling at temperature tau (``sample_next_z``) follows the reference's DoomRNN
  step: the mixture logits are divided by tau before the softmax and the Gaussian
  noise is scaled by sqrt(tau); tau -> 0 picks the most likely component's mean.
  The dream's done flag is ``done_logit > 0`` (probability > 0.5), as in the reference,
  or (cpu profile) drawn with M's probability (``done_probability``).
* C (``controller_actions``): a = tanh(W [z, c, h]) with no bias (Doom: 64 + 2 x
  hidden inputs, one output; the paper's 1,088 parameters at 512 units), a z-only
  linear ablation, and z -> 40 tanh units -> a (the paper's "hidden layer" ablation,
  with biases).  One call evaluates a whole population: parameters ``(P, n)``,
  features ``(P, R, d)``.  The real game thresholds a at +-1/3 (left / none / right).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- V
class ConvVAE(nn.Module):
    """Conv VAE on 64x64x3 frames in [0, 1] (NCHW).  ``width`` scales every channel
    count (1 = the paper's 4.4M-parameter V for z = 64)."""

    def __init__(self, z_dim: int = 64, width: float = 1.0):
        super().__init__()
        c = [max(4, int(round(k * width))) for k in (32, 64, 128, 256)]
        self.z_dim, self.c4 = z_dim, c[3]
        self.enc = nn.Sequential(
            nn.Conv2d(3, c[0], 4, 2), nn.ReLU(), nn.Conv2d(c[0], c[1], 4, 2), nn.ReLU(),
            nn.Conv2d(c[1], c[2], 4, 2), nn.ReLU(), nn.Conv2d(c[2], c[3], 4, 2), nn.ReLU(), nn.Flatten())
        self.mu = nn.Linear(4 * c[3], z_dim)
        self.logvar = nn.Linear(4 * c[3], z_dim)
        self.fc = nn.Linear(z_dim, 4 * c[3])
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(4 * c[3], c[2], 5, 2), nn.ReLU(), nn.ConvTranspose2d(c[2], c[1], 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(c[1], c[0], 6, 2), nn.ReLU(), nn.ConvTranspose2d(c[0], 3, 6, 2), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.fc(z).view(-1, 4 * self.c4, 1, 1))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def vae_loss(x, recon, mu, logvar, kl_tolerance: float = 0.5) -> tuple[torch.Tensor, dict]:
    """Summed squared error + KL summed over dims and floored at kl_tolerance * z_dim."""
    r = (x - recon).pow(2).flatten(1).sum(1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    kl_floored = kl.clamp(min=kl_tolerance * mu.shape[1]).mean()
    return r + kl_floored, {"recon": r.detach(), "kl": kl.mean().detach()}


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) -> float (N, 3, 64, 64) in [0, 1]."""
    x = torch.as_tensor(frames)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------- M
class MDNRNN(nn.Module):
    """LSTM over [z_t, a_t] -> per-dim Gaussian mixture of z_{t+1} (+ a done logit)."""

    def __init__(self, z_dim: int = 64, action_dim: int = 1, hidden: int = 512, mixtures: int = 5,
                 predict_done: bool = True):
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.K = z_dim, action_dim, hidden, mixtures
        self.predict_done = predict_done
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_dim * mixtures + int(predict_done))

    def split(self, out: torch.Tensor):
        """Head output (..., 3 Z K [+1]) -> log mixture weights (log-softmaxed over K),
        means and log stds (..., Z, K), and the done logit (...) or None."""
        Z, K = self.z_dim, self.K
        mdn = out[..., :3 * Z * K].reshape(*out.shape[:-1], Z, 3 * K)
        logmix, mean, logstd = mdn.split(K, dim=-1)
        done = out[..., -1] if self.predict_done else None
        return F.log_softmax(logmix, -1), mean, logstd, done

    def forward(self, z: torch.Tensor, a: torch.Tensor, state=None):
        """z (B, T, Z), a (B, T, A) -> (logmix, mean, logstd, done_logit), (h, c)."""
        out, state = self.lstm(torch.cat([z, a], -1), state)
        return self.split(self.head(out)), state

    def step(self, z: torch.Tensor, a: torch.Tensor, state=None):
        """One time step for a batch: z (B, Z), a (B, A)."""
        (logmix, mean, logstd, done), state = self.forward(z[:, None], a[:, None], state)
        return (logmix[:, 0], mean[:, 0], logstd[:, 0], None if done is None else done[:, 0]), state


def mdn_log_prob(logmix, mean, logstd, y):
    """log sum_k pi_k N(y; mu_k, sigma_k) per dim: (..., Z)."""
    lognormal = -0.5 * ((y.unsqueeze(-1) - mean) / logstd.exp()).pow(2) - logstd - LOG_SQRT_2PI
    return torch.logsumexp(logmix + lognormal, -1)


def mdn_loss(model: MDNRNN, z, a, z_next, mask, done_target=None, done_factor: float = 10.0,
             done_mask=None):
    """Mean negative log-likelihood per (step, dim) over the steps of ``mask`` (those
    with a next frame), plus the weighted done cross entropy over the steps of
    ``done_mask`` (default ``mask``; it must include each episode's last step, where
    the done target is 1), positives weighted ``done_factor``."""
    (logmix, mean, logstd, done), _ = model(z, a)
    m = mask.float()
    nll = -(mdn_log_prob(logmix, mean, logstd, z_next).mean(-1) * m).sum() / m.sum().clamp(min=1)
    stats = {"z_nll": nll.detach()}
    loss = nll
    if done is not None and done_target is not None:
        md = m if done_mask is None else done_mask.float()
        w = 1 + done_target * (done_factor - 1)
        bce = F.binary_cross_entropy_with_logits(done, done_target, weight=w, reduction="none")
        dl = (bce * md).sum() / md.sum().clamp(min=1)
        loss = loss + dl
        stats["done_bce"] = dl.detach()
    return loss, stats


def done_probability(logit: torch.Tensor, done_factor: float = 10.0) -> torch.Tensor:
    """P(done) from M's done logit, undoing the positive weighting of its training
    loss: the weighted cross entropy is minimised at q = f p / (f p + 1 - p), so
    p = q / (f - (f - 1) q)."""
    q = torch.sigmoid(logit)
    return q / (done_factor - (done_factor - 1) * q)


def sample_next_z(logmix, mean, logstd, tau, generator: torch.Generator | None = None):
    """Sample z_{t+1} (B, Z) at temperature tau (a float or a (B,) tensor): component
    from softmax(logmix / tau) per dim, then mean + exp(logstd) * sqrt(tau) * eps.
    At tau = 0 it is the mean of the most likely component (deterministic)."""
    B, Z, K = logmix.shape
    tau = torch.as_tensor(tau, dtype=logmix.dtype).expand(B).reshape(B, 1, 1)
    safe = tau.clamp(min=1e-8)
    probs = F.softmax(logmix / safe, -1)
    u = torch.rand((B, Z, 1), generator=generator, dtype=logmix.dtype)
    idx = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=K - 1)
    idx = torch.where(tau > 0, idx, logmix.argmax(-1, keepdim=True))
    mu = mean.gather(-1, idx)[..., 0]
    sd = logstd.gather(-1, idx)[..., 0].exp()
    eps = torch.randn((B, Z), generator=generator, dtype=logmix.dtype)
    return mu + sd * tau.reshape(B, 1).sqrt() * eps


# ----------------------------------------------------------------------------- C
HIDDEN_UNITS = 40


def controller_inputs(kind: str, z_dim: int, hidden: int) -> int:
    return z_dim + 2 * hidden if kind == "zh" else z_dim


def controller_size(kind: str, z_dim: int, hidden: int, action_dim: int = 1) -> int:
    """Parameters of C: linear without bias on [z, c, h] ("zh") or z ("z"), or
    z -> 40 tanh -> a with biases ("z_hidden")."""
    if kind == "z_hidden":
        return z_dim * HIDDEN_UNITS + HIDDEN_UNITS + HIDDEN_UNITS * action_dim + action_dim
    return controller_inputs(kind, z_dim, hidden) * action_dim


def controller_actions(kind: str, params: torch.Tensor, obs: torch.Tensor, z_dim: int,
                       action_dim: int = 1) -> torch.Tensor:
    """params (P, n), obs (P, R, Z + 2H) laid out [z, c, h] -> actions (P, R, A) in [-1, 1]."""
    P = params.shape[0]
    x = obs if kind == "zh" else obs[..., :z_dim]
    d = x.shape[-1]
    if kind == "z_hidden":
        H = HIDDEN_UNITS
        w1 = params[:, :d * H].view(P, d, H)
        b1 = params[:, d * H:d * H + H].view(P, 1, H)
        w2 = params[:, d * H + H:d * H + H + H * action_dim].view(P, H, action_dim)
        b2 = params[:, d * H + H + H * action_dim:].view(P, 1, action_dim)
        return torch.tanh(torch.tanh(x @ w1 + b1) @ w2 + b2)
    return torch.tanh(x @ params.view(P, d, action_dim))


def doom_buttons(action: float, threshold: float = 1 / 3) -> list[int]:
    """Continuous action -> [MOVE_LEFT, MOVE_RIGHT] as the reference's wrapper."""
    return [int(action < -threshold), int(action > threshold)]
