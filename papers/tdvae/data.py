"""Synthetic sequences for the TD-VAE experiments and the sinusoid fit of the oscillator check.

The paper gives no parameter ranges for its noisy harmonic oscillator (our notes: not
found); the choices here are ours and are documented in the README:

- angular frequency omega uniform on [0.25, 0.55] rad / step (periods 11-25 steps, so a
  20-step rollout shows at least 0.8 of a period);
- amplitude uniform on [0.5, 1.5], phase uniform on [0, 2 pi);
- process noise N(0, 0.01^2) added to position and to velocity / omega every step (energy
  approximately conserved), observation noise N(0, 0.1^2) on the position.
"""

from __future__ import annotations

import math

import torch

OMEGA = (0.25, 0.55)
AMPLITUDE = (0.5, 1.5)
PROCESS_NOISE = 0.01
OBS_NOISE = 0.1


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def oscillator(n: int, length: int, generator=None, omega=OMEGA, amplitude=AMPLITUDE,
               process_noise=PROCESS_NOISE, obs_noise=OBS_NOISE) -> dict:
    """n noisy oscillator sequences x_1..x_length (n, length, 1), with the true latent state:
    ``pos`` and ``u`` = velocity / omega (n, length), ``omega`` and ``amplitude`` (n,)."""
    g = generator
    w = _uniform(n, *omega, g)
    amp = _uniform(n, *amplitude, g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    pos, u = amp * torch.sin(phase), amp * torch.cos(phase)
    c, s = torch.cos(w), torch.sin(w)
    states = []
    for _ in range(length):  # rotate (pos, u) by omega, then add process noise
        pos, u = c * pos + s * u, -s * pos + c * u
        pos = pos + process_noise * torch.randn(n, generator=g)
        u = u + process_noise * torch.randn(n, generator=g)
        states.append(torch.stack([pos, u], -1))
    st = torch.stack(states, 1)
    x = st[..., 0] + obs_noise * torch.randn(n, length, generator=g)
    return {"x": x.unsqueeze(-1), "pos": st[..., 0], "u": st[..., 1], "omega": w, "amplitude": amp}


def noiseless_continuation(pos, u, omega, steps):
    """Positions after 1..steps further rotations of the state (pos, u), without noise:
    (n, steps).  The predictable part of the future."""
    k = torch.arange(1, steps + 1, dtype=pos.dtype)[None, :]
    ang = omega[:, None] * k
    return pos[:, None] * torch.cos(ang) + u[:, None] * torch.sin(ang)


def fit_sinusoid(y, omegas=None):
    """Least-squares fit y_k ~ A sin(omega k + phi) + c, k = 0..K-1, per row of y (n, K), over a
    grid of omega (then linear in the rest).  Returns (omega, A, phi) each (n,)."""
    n, K = y.shape
    omegas = torch.linspace(0.05, 1.5, 581, dtype=y.dtype) if omegas is None else omegas
    k = torch.arange(K, dtype=y.dtype)
    ang = omegas[:, None] * k[None, :]
    design = torch.stack([torch.sin(ang), torch.cos(ang), torch.ones_like(ang)], -1)  # (G, K, 3)
    coef = torch.linalg.pinv(design) @ y.T.unsqueeze(0)  # (G, 3, n)
    resid = ((design @ coef - y.T.unsqueeze(0)) ** 2).sum(1)  # (G, n)
    best = resid.argmin(0)
    a, b = coef[best, 0, torch.arange(n)], coef[best, 1, torch.arange(n)]
    return omegas[best], torch.sqrt(a ** 2 + b ** 2), torch.atan2(b, a)


def wrap(angle):
    """Angle to (-pi, pi]."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def piecewise_frequencies(n: int, gap: int, generator=None, f_pair=(0.25, 0.5), omega=(0.15, 0.6),
                          head: int = 10, tail: int = 20, obs_noise=OBS_NOISE) -> dict:
    """The belief-probe sequences of the paper's section 5.3, with a variable middle segment:
    frequency f1 on [0, head), f2 on [head, 2 head), a random f3 for ``gap`` steps, then
    f4 = f_pair[0] if f1 > f2 else f_pair[1] for ``tail`` steps (the paper: 10, 10, 100, 20).
    Unit amplitude, continuous phase.  Returns x (n, L, 1), the label (f1 > f2) and the
    index of the last step before the final segment."""
    g = generator
    f1, f2, f3 = (_uniform(n, *omega, g) for _ in range(3))
    label = f1 > f2
    f4 = torch.where(label, torch.tensor(f_pair[0]), torch.tensor(f_pair[1]))
    freq = torch.cat([f1[:, None].expand(n, head), f2[:, None].expand(n, head), f3[:, None].expand(n, gap),
                      f4[:, None].expand(n, tail)], 1)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g) + torch.cumsum(freq, 1)
    x = torch.sin(phase) + obs_noise * torch.randn(phase.shape, generator=g)
    return {"x": x.unsqueeze(-1), "label": label.long(), "probe_t": 2 * head + gap}


def moving_digits(images, labels, n: int, length: int, generator=None) -> dict:
    """One binarised MNIST digit per sequence moving 1 px per step left or right (circularly
    rolled in its 28 x 28 frame, as in the common reimplementations), from a random
    horizontal offset.  ``images`` (N, 28, 28) in [0, 1].  Returns x (n, length, 784) in
    {0, 1}, ``direction`` (n,) in {-1, +1} and the digit ``label`` (n,)."""
    g = generator
    pick = torch.randint(0, len(images), (n,), generator=g)
    digits = (images[pick] > 0.5).float()
    direction = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    offset = torch.randint(0, 28, (n,), generator=g)
    cols = torch.arange(28)
    shift = offset[:, None] + direction[:, None] * torch.arange(length)[None, :]  # (n, length)
    src = torch.remainder(cols[None, None, :] - shift[:, :, None], 28)  # column read for each output column
    frames = digits[:, None, :, :].expand(n, length, 28, 28).gather(
        3, src[:, :, None, :].expand(n, length, 28, 28))
    return {"x": frames.reshape(n, length, 784), "direction": direction, "label": labels[pick]}


def horizontal_motion(frames, max_shift: int = 2):
    """The circular horizontal shift s in [-max_shift, max_shift] that best maps each frame to
    the next (highest overlap); frames (..., K, 28, 28) -> (..., K - 1) shifts."""
    a, b = frames[..., :-1, :, :], frames[..., 1:, :, :]
    shifts = list(range(-max_shift, max_shift + 1))
    score = torch.stack([(torch.roll(a, s, dims=-1) * b).sum((-1, -2)) for s in shifts], -1)
    return torch.tensor(shifts)[score.argmax(-1)]
