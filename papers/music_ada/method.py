"""Autoregressive discrete autoencoders (Dieleman, van den Oord & Simonyan, NeurIPS 2018,
arXiv 1806.10474, §3) and the WaveNet they are built from (van den Oord et al. 2016).

- ``WaveNet``: dilated causal convolutions (kernel 2), gated tanh x sigmoid units,
  residual and skip 1x1 convolutions, a categorical output over ``classes`` (256 mu-law
  levels for audio, the codebook size for codes); optional local conditioning on a
  code sequence at ``1 / hop`` of the rate (upsampled by repetition, one 1x1 projection
  per layer).  ``WaveNet.generate`` is the cached ("fast WaveNet", Paine et al. 2016,
  queue) sampler: each layer keeps a circular buffer of its last ``dilation`` inputs, so
  one step costs one matrix product per layer instead of a pass over the receptive field.
- ``Encoder``: strided convolutions down to hop ``2**downsamples``, then non-causal
  dilated residual convolutions, then a 1x1 to the query dimension.
- Quantisers: ``VectorQuantiser`` (VQ-VAE: nearest codebook vector, codebook +
  commitment losses, straight-through gradient) and ``ArgmaxQuantiser`` (AMAE §3.2 as
  described by third-party notes -- the paper body was not available: ReLU, divisive
  normalisation to sum one, one-hot argmax with a straight-through gradient through the
  normalised query, diversity loss sum_k (K q̄_k - 1)^2 on the batch-and-time mean q̄).
- ``ADA``: encoder -> quantiser -> conditional WaveNet decoder; trained by maximum
  likelihood of the input given its own codes plus the quantiser's losses.  A second
  ADA over the first one's codes and an unconditional WaveNet prior over the top codes
  make the hierarchy (experiment.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------ WaveNet

class WaveNet(nn.Module):
    def __init__(self, classes: int = 256, residual: int = 32, skip: int = 64,
                 dilations: tuple = (1, 2, 4, 8, 16, 32), cond_dim: int = 0, hop: int = 1,
                 scalar_input: bool = False):
        super().__init__()
        self.classes, self.residual, self.dilations, self.hop = classes, residual, tuple(dilations), hop
        self.cond_dim, self.skip_channels = cond_dim, skip
        self.embed = nn.Embedding(classes + 1, residual)  # index ``classes``: the start token
        # scalar_input (audio): the input vector of class c is embed[c] + level(c) * amp, with
        # level(c) the companded amplitude in [-1, 1] (0 for the start token); still a
        # lookup table, but neighbouring levels start out similar (faster learning).
        self.scalar_input = scalar_input
        if scalar_input:
            self.amp = nn.Parameter(torch.randn(residual))
            self.register_buffer("levels", torch.cat([2 * torch.arange(classes).float() / (classes - 1) - 1,
                                                      torch.zeros(1)]), persistent=False)
        self.dil = nn.ModuleList(nn.Conv1d(residual, 2 * residual, 2, dilation=d) for d in self.dilations)
        self.cond = nn.ModuleList(nn.Conv1d(cond_dim, 2 * residual, 1) for _ in self.dilations) if cond_dim else None
        self.out = nn.ModuleList(nn.Conv1d(residual, residual + skip, 1) for _ in self.dilations)
        self.head1 = nn.Conv1d(skip, skip, 1)
        self.head2 = nn.Conv1d(skip, classes, 1)

    def input_table(self) -> torch.Tensor:
        """(classes + 1, residual): the input vector of each class (and the start token)."""
        if self.scalar_input:
            return self.embed.weight + self.levels[:, None] * self.amp
        return self.embed.weight

    def embed_input(self, prev: torch.Tensor) -> torch.Tensor:
        """(B, T) classes -> (B, T, residual) input vectors."""
        return F.embedding(prev, self.input_table())

    @property
    def receptive_field(self) -> int:
        return 1 + sum(self.dilations)  # in samples, including the shifted input

    def _cond_up(self, c: torch.Tensor, T: int) -> list:
        """Per-layer conditioning projections at the code rate, repeated up to T."""
        return [proj(c).repeat_interleave(self.hop, dim=2)[:, :, :T] for proj in self.cond]

    def trunk(self, prev: torch.Tensor, conds: list | None) -> torch.Tensor:
        """Logits at positions whose previous tokens are ``prev`` (B, T); ``conds``: the
        per-layer conditioning already at rate T (or None)."""
        h = self.embed_input(prev).transpose(1, 2)
        skip = 0
        for i, (d, conv, out) in enumerate(zip(self.dilations, self.dil, self.out)):
            a = conv(F.pad(h, (d, 0)))
            if conds is not None:
                a = a + conds[i]
            z = torch.tanh(a[:, : self.residual]) * torch.sigmoid(a[:, self.residual:])
            o = out(z)
            h = h + o[:, : self.residual]
            skip = skip + o[:, self.residual:]
        return self.head2(F.relu(self.head1(F.relu(skip))))

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        start = torch.full((x.shape[0], 1), self.classes, dtype=x.dtype, device=x.device)
        return torch.cat([start, x[:, :-1]], 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T) integer classes; c: (B, cond_dim, T / hop).  Returns logits (B, classes, T),
        where position t depends on x[:, :t] (and on c) only."""
        conds = self._cond_up(c, x.shape[1]) if self.cond is not None else None
        return self.trunk(self.shifted(x), conds)

    def nll(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per element."""
        return F.cross_entropy(self(x, c), x)

    @torch.no_grad()
    def generate(self, n: int, steps: int, c: torch.Tensor | None = None, generator=None,
                 temperature: float = 1.0, return_logits: bool = False, progress=None):
        """``n`` samples of ``steps`` classes by the cached (queue) sampler.  ``c``:
        (n, cond_dim, >= steps / hop).  Returns (n, steps) long (and the logits if asked)."""
        dev = self.embed.weight.device
        R = self.residual
        # fused weights: [x_t, x_{t-d}] @ W^T per layer
        W = [torch.cat([conv.weight[:, :, 1], conv.weight[:, :, 0]], 1).t().contiguous() for conv in self.dil]
        bd = [conv.bias for conv in self.dil]
        Wo = [o.weight[:, :, 0].t().contiguous() for o in self.out]
        bo = [o.bias for o in self.out]
        H1, b1 = self.head1.weight[:, :, 0].t().contiguous(), self.head1.bias
        H2, b2 = self.head2.weight[:, :, 0].t().contiguous(), self.head2.bias
        if self.cond is not None:
            cproj = [proj(c).permute(2, 0, 1).contiguous() for proj in self.cond]  # (Tc, n, 2R)
        table = self.input_table()
        bufs = [torch.zeros(d, n, R, device=dev) for d in self.dilations]
        prev = torch.full((n,), self.classes, dtype=torch.long, device=dev)
        out = torch.empty(n, steps, dtype=torch.long, device=dev)
        logits_all = torch.empty(n, self.classes, steps, device=dev) if return_logits else None
        it = range(steps) if progress is None else progress(range(steps))
        for t in it:
            h = table[prev]
            skip = None
            for i, d in enumerate(self.dilations):
                slot = t % d
                past = bufs[i][slot]
                a = torch.addmm(bd[i], torch.cat([h, past], 1), W[i])
                bufs[i][slot] = h
                if self.cond is not None:
                    a = a + cproj[i][t // self.hop]
                z = torch.tanh(a[:, :R]) * torch.sigmoid(a[:, R:])
                o = torch.addmm(bo[i], z, Wo[i])
                h = h + o[:, :R]
                skip = o[:, R:] if skip is None else skip + o[:, R:]
            logits = torch.addmm(b2, torch.relu(torch.addmm(b1, torch.relu(skip), H1)), H2)
            if return_logits:
                logits_all[:, :, t] = logits
            g = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator, device=dev)
                                      .clamp_(1e-10, 1 - 1e-7)))
            prev = (logits / temperature + g).argmax(1)
            out[:, t] = prev
        return (out, logits_all) if return_logits else out

    @torch.no_grad()
    def generate_naive(self, n: int, steps: int, c: torch.Tensor | None = None, generator=None):
        """The reference sampler: a full forward pass over the receptive field at every
        step (what the cached sampler avoids); the same noise draws as ``generate``."""
        dev = self.embed.weight.device
        span = sum(self.dilations)
        conds = self._cond_up(c, steps) if self.cond is not None else None
        prev = torch.full((n, steps + 1), self.classes, dtype=torch.long, device=dev)  # prev[:, t] feeds t
        for t in range(steps):
            lo = max(0, t - span)
            cw = [cd[:, :, lo:t + 1] for cd in conds] if conds is not None else None
            logits = self.trunk(prev[:, lo:t + 1], cw)[:, :, -1]
            g = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator, device=dev)
                                      .clamp_(1e-10, 1 - 1e-7)))
            prev[:, t + 1] = (logits + g).argmax(1)
        return prev[:, 1:]


@torch.no_grad()
def generate_many(nets: list, n: int, steps: int, generator=None, temperature: float = 1.0,
                  return_logits: bool = False, progress=None):
    """``n`` samples of ``steps`` from each of several unconditional WaveNets at once: the
    cached sampler of ``WaveNet.generate`` with the models stacked (one batched matrix
    product per layer and step for all of them), so sampling M models costs about one
    Python loop instead of M.  The nets must share classes, channels and the number of
    layers; their dilations may differ (the growing-receptive-field baselines).  Each
    layer keeps one circular buffer of the largest dilation among the models; model m
    reads its input from ``d_m`` steps back.  Returns (M, n, steps) long (and the logits
    (M, n, classes, steps) if asked)."""
    M_, first = len(nets), nets[0]
    L, R, C = len(first.dilations), first.residual, first.classes
    for net in nets:
        assert net.cond is None and len(net.dilations) == L and net.residual == R and net.classes == C
    dev = first.embed.weight.device
    stack = lambda f: torch.stack([f(net) for net in nets])  # noqa: E731
    table = stack(lambda net: net.input_table())  # (M, C + 1, R)
    W = [stack(lambda net: torch.cat([net.dil[i].weight[:, :, 1], net.dil[i].weight[:, :, 0]], 1).t())
         for i in range(L)]  # (M, 2R, 2R)
    bd = [stack(lambda net: net.dil[i].bias)[:, None] for i in range(L)]
    Wo = [stack(lambda net: net.out[i].weight[:, :, 0].t()) for i in range(L)]
    bo = [stack(lambda net: net.out[i].bias)[:, None] for i in range(L)]
    H1, b1 = stack(lambda net: net.head1.weight[:, :, 0].t()), stack(lambda net: net.head1.bias)[:, None]
    H2, b2 = stack(lambda net: net.head2.weight[:, :, 0].t()), stack(lambda net: net.head2.bias)[:, None]
    dils = [torch.tensor([net.dilations[i] for net in nets], device=dev) for i in range(L)]
    span = [int(d.max()) for d in dils]
    bufs = [torch.zeros(s, M_, n, R, device=dev) for s in span]
    ar = torch.arange(M_, device=dev)
    prev = torch.full((M_, n), C, dtype=torch.long, device=dev)
    out = torch.empty(M_, n, steps, dtype=torch.long, device=dev)
    logits_all = torch.empty(M_, n, C, steps, device=dev) if return_logits else None
    it = range(steps) if progress is None else progress(range(steps))
    for t in it:
        h = table[ar[:, None], prev]  # (M, n, R)
        skip = None
        for i in range(L):
            past = bufs[i][(t - dils[i]) % span[i], ar]  # unwritten slots (t < d) are zeros
            a = torch.baddbmm(bd[i], torch.cat([h, past], 2), W[i])
            bufs[i][t % span[i]] = h
            z = torch.tanh(a[..., :R]) * torch.sigmoid(a[..., R:])
            o = torch.baddbmm(bo[i], z, Wo[i])
            h = h + o[..., :R]
            skip = o[..., R:] if skip is None else skip + o[..., R:]
        logits = torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, torch.relu(skip), H1)), H2)
        if return_logits:
            logits_all[..., t] = logits
        g = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator, device=dev).clamp_(1e-10, 1 - 1e-7)))
        prev = (logits / temperature + g).argmax(-1)
        out[..., t] = prev
    return (out, logits_all) if return_logits else out


# ------------------------------------------------------------------ encoder and quantisers

class Encoder(nn.Module):
    """Input (B, T) classes (mu-law audio or codes) -> queries (B, dim, T / 2**downsamples)."""

    def __init__(self, classes: int, dim: int, channels: int = 64, downsamples: int = 3,
                 dilations: tuple = (1, 2, 4, 1, 2, 4)):
        super().__init__()
        self.embed = nn.Embedding(classes, channels)
        self.down = nn.ModuleList(nn.Conv1d(channels, channels, 4, stride=2, padding=1) for _ in range(downsamples))
        self.res = nn.ModuleList(nn.Conv1d(channels, channels, 3, dilation=d, padding=d) for d in dilations)
        self.res1 = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.proj = nn.Conv1d(channels, dim, 1)
        self.hop = 2 ** downsamples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2)
        for conv in self.down:
            h = F.relu(conv(h))
        for conv, c1 in zip(self.res, self.res1):
            h = h + c1(F.relu(conv(F.relu(h))))
        return self.proj(F.relu(h))


class VectorQuantiser(nn.Module):
    """VQ-VAE bottleneck (van den Oord et al. 2017): codebook loss ||sg(z) - e||^2,
    commitment beta ||z - sg(e)||^2, straight-through z + sg(e - z)."""

    def __init__(self, codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.codes, self.dim, self.beta = codes, dim, beta
        self.codebook = nn.Parameter(torch.empty(codes, dim).uniform_(-1 / codes, 1 / codes))

    def forward(self, z: torch.Tensor):
        zt = z.transpose(1, 2)  # (B, T, D)
        d = (zt.pow(2).sum(-1, keepdim=True) - 2 * zt @ self.codebook.t()
             + self.codebook.pow(2).sum(-1))
        idx = d.argmin(-1)
        e = self.codebook[idx]
        loss = F.mse_loss(e, zt.detach()) + self.beta * F.mse_loss(zt, e.detach())
        q = zt + (e - zt).detach()
        return q.transpose(1, 2), idx, loss

    def embed_codes(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codebook[idx].transpose(1, 2)


class ArgmaxQuantiser(nn.Module):
    """AMAE bottleneck: q = relu(z) / sum_k relu(z_k); one-hot argmax with the
    straight-through gradient of q; diversity loss sum_k (K q̄_k - 1)^2 (q̄: mean of q
    over batch and time), scaled by ``weight / K`` (the paper's weight: not found)."""

    def __init__(self, codes: int, weight: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.codes, self.weight, self.eps = codes, weight, eps

    def forward(self, z: torch.Tensor):
        r = F.relu(z)
        q = r / (r.sum(1, keepdim=True) + self.eps)
        idx = q.argmax(1)
        hard = F.one_hot(idx, self.codes).transpose(1, 2).to(q.dtype)
        st = q + (hard - q).detach()
        qbar = q.mean((0, 2))
        loss = self.weight / self.codes * (self.codes * qbar - 1).pow(2).sum()
        return st, idx, loss

    def embed_codes(self, idx: torch.Tensor) -> torch.Tensor:
        return F.one_hot(idx, self.codes).transpose(1, 2).float()


class ADA(nn.Module):
    """Autoregressive discrete autoencoder: Encoder -> quantiser -> conditional WaveNet."""

    def __init__(self, classes: int, quantiser: str, codes: int, dim: int = 32, enc_channels: int = 64,
                 downsamples: int = 3, residual: int = 32, skip: int = 64,
                 dilations: tuple = (1, 2, 4, 8, 16, 32), beta: float = 0.25, diversity: float = 1.0,
                 scalar_input: bool = False):
        super().__init__()
        qdim = codes if quantiser == "amae" else dim
        self.encoder = Encoder(classes, qdim, enc_channels, downsamples)
        self.quantiser = (ArgmaxQuantiser(codes, diversity) if quantiser == "amae"
                          else VectorQuantiser(codes, dim, beta))
        self.decoder = WaveNet(classes, residual, skip, dilations, cond_dim=qdim, hop=self.encoder.hop,
                               scalar_input=scalar_input)
        self.codes, self.hop = codes, self.encoder.hop

    def loss(self, x: torch.Tensor):
        q, idx, qloss = self.quantiser(self.encoder(x))
        nll = self.decoder.nll(x, q)
        return nll + qloss, {"nll": nll.detach(), "qloss": qloss.detach()}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantiser(self.encoder(x))[1]

    @torch.no_grad()
    def nll_given(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Per-sequence NLL (nats per element) of x given the code indices idx."""
        logits = self.decoder(x, self.quantiser.embed_codes(idx))
        return F.cross_entropy(logits, x, reduction="none").mean(1)


def code_usage(idx: torch.Tensor, codes: int) -> dict:
    """Perplexity exp(H) of the code histogram and the number of codes never used."""
    counts = torch.bincount(idx.flatten(), minlength=codes).double()
    p = counts / counts.sum()
    h = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": math.exp(h.item()), "dead": int((counts == 0).sum()),
            "histogram": counts.tolist()}
