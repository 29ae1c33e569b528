"""TD-VAE (Gregor, Papamakarios, Besse, Buesing, Weber, ICLR 2019) and the two
state-space baselines of its mini-Pacman comparison, batched over sequences and
time pairs.

Time indexing used throughout: observations are x_1..x_T (tensor index t - 1);
beliefs b_0..b_T, where b_0 is the belief before any observation (the LSTM's zero
state) and b_t has read x_1..x_t and nothing later.  The generative model shared by
all three models is

    z_0 ~ p_B(z | b_0),    z_t ~ p_T(z_t | z_{t-1}, dt),    x_t ~ p_D(x_t | z_t),

so TD-VAE's own networks define a proper sequence model whose likelihood can be
estimated by importance sampling and compared with the filtering and mean-field
models trained on the same family.

Functional forms (the appendix with the paper's sizes was not available): every
conditional is a gated block -- h = tanh(W1 u) * sigmoid(W2 u), then linear heads for
the mean and log-std (the "D" operation of the widely used reimplementation
xqding/TD-VAE) -- with the log-std softly bounded to [-6, 3].  Hierarchical latents
(``z_dims`` with several entries, index 0 = the lowest layer) are sampled top layer
first, each lower layer conditioned on those above; one shared belief b feeds all
layers.  The transition's mean is residual (z_{t1} + f(z_{t1}, dt)); the gap dt enters
the transition and the smoothing posterior as features (dt / dt_scale, log dt).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x, mu, logsig):
    """log N(x; mu, diag(exp(logsig))^2), summed over the last dimension."""
    return (-0.5 * ((x - mu) * torch.exp(-logsig)) ** 2 - logsig - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mu_q, ls_q, mu_p, ls_p):
    """KL(N(mu_q, e^ls_q) || N(mu_p, e^ls_p)) for diagonal Gaussians, summed over the last dimension."""
    return (ls_p - ls_q + 0.5 * (torch.exp(2 * (ls_q - ls_p)) + ((mu_q - mu_p) * torch.exp(-ls_p)) ** 2)
            - 0.5).sum(-1)


def bernoulli_log_prob(x, logits):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def _randn(shape, like, generator):
    """Standard normal noise shaped ``shape`` on ``like``'s device; a CPU generator (the
    runs' seeded generators) draws on the CPU and the noise is moved."""
    if generator is not None and generator.device != like.device:
        return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class GatedBlock(nn.Module):
    """u -> (mean, log-std) of a diagonal Gaussian, through one gated hidden layer."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, layers: int = 1):
        super().__init__()
        self.gate = nn.Linear(d_in, 2 * d_hidden)
        self.deeper = nn.ModuleList(nn.Linear(d_hidden, 2 * d_hidden) for _ in range(layers - 1))
        self.mu = nn.Linear(d_hidden, d_out)
        self.logsig = nn.Linear(d_hidden, d_out)

    def forward(self, u):
        a, g = self.gate(u).chunk(2, dim=-1)
        h = torch.tanh(a) * torch.sigmoid(g)
        for lin in self.deeper:  # further gated layers, residual
            a, g = lin(h).chunk(2, dim=-1)
            h = h + torch.tanh(a) * torch.sigmoid(g)
        raw = self.logsig(h)
        return self.mu(h), 4.5 * torch.tanh((raw + 1.5) / 4.5) - 1.5  # soft bound [-6, 3]


class Hierarchy(nn.Module):
    """A diagonal Gaussian over z = (z^0, ..., z^{L-1}) given a context, sampled top layer
    first: p(z | c) = prod_l p(z^l | c, z^{>l})."""

    def __init__(self, d_context: int, z_dims: tuple, d_hidden: int):
        super().__init__()
        self.z_dims = tuple(z_dims)
        self.blocks = nn.ModuleList(
            GatedBlock(d_context + sum(self.z_dims[i + 1:]), d_hidden, d) for i, d in enumerate(self.z_dims))

    def _params(self, context, above, i):
        return self.blocks[i](torch.cat([context, *above], -1) if above else context)

    def sample(self, context, generator=None):
        """(z, log p(z | context)); z reparameterised."""
        above, logp = [], 0.0
        for i in reversed(range(len(self.z_dims))):
            mu, ls = self._params(context, above, i)
            z = mu + torch.exp(ls) * _randn(mu.shape, mu, generator)
            logp = logp + gaussian_log_prob(z, mu, ls)
            above.insert(0, z)
        return torch.cat(above, -1), logp

    def mean(self, context):
        """The mean of each layer given the means of the layers above it."""
        above = []
        for i in reversed(range(len(self.z_dims))):
            above.insert(0, self._params(context, above, i)[0])
        return torch.cat(above, -1)

    def split(self, z):
        return list(z.split(self.z_dims, dim=-1))

    def log_prob(self, z, context):
        parts, logp = self.split(z), 0.0
        for i in range(len(self.z_dims)):
            mu, ls = self._params(context, parts[i + 1:], i)
            logp = logp + gaussian_log_prob(parts[i], mu, ls)
        return logp

    def sample_with_kl(self, context, prior: "Hierarchy", prior_context, generator=None):
        """z ~ self(. | context) and KL(self || prior) estimated layer by layer: analytic for
        each layer given the sampled layers above it (a lower-variance estimate of eq. 6's
        log q_S - log p_B(t1) terms)."""
        above, kl = [], 0.0
        for i in reversed(range(len(self.z_dims))):
            mu, ls = self._params(context, above, i)
            mu_p, ls_p = prior._params(prior_context, above, i)
            kl = kl + gaussian_kl(mu, ls, mu_p, ls_p)
            above.insert(0, mu + torch.exp(ls) * _randn(mu.shape, mu, generator))
        return torch.cat(above, -1), kl


class Decoder(nn.Module):
    """p_D(x | z): Gaussian with a fixed std (``kind="gaussian"``) or Bernoulli."""

    def __init__(self, z_dim: int, x_dim: int, d_hidden: int, kind: str = "gaussian", obs_std: float = 0.1,
                 read_first: bool = False):
        super().__init__()
        if kind not in ("gaussian", "bernoulli"):
            raise ValueError(f"decoder kind must be 'gaussian' or 'bernoulli', not {kind!r}")
        self.kind, self.obs_std, self.read_first = kind, obs_std, read_first
        if read_first:  # the paper's oscillator decoder: x is the first component of z (plus noise)
            if kind != "gaussian":
                raise ValueError("read_first needs a Gaussian decoder")
            self.net = None
        else:
            self.net = nn.Sequential(nn.Linear(z_dim, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_hidden),
                                     nn.ReLU(), nn.Linear(d_hidden, x_dim))

    def forward(self, z):
        """The mean (Gaussian) or the logits (Bernoulli)."""
        return z[..., :1] if self.read_first else self.net(z)

    def log_prob(self, x, z):
        out = self(z)
        if self.kind == "bernoulli":
            return bernoulli_log_prob(x, out)
        return gaussian_log_prob(x, out, torch.full_like(out, math.log(self.obs_std)))

    def mean(self, z):
        out = self(z)
        return torch.sigmoid(out) if self.kind == "bernoulli" else out


class Belief(nn.Module):
    """b_t = LSTM(b_{t-1}, pre(x_t)); returns b_0..b_T with b_0 = 0 (nothing observed)."""

    def __init__(self, x_dim: int, d_belief: int, d_pre: int):
        super().__init__()
        self.pre = nn.Sequential(nn.Linear(x_dim, d_pre), nn.ReLU(), nn.Linear(d_pre, d_pre), nn.ReLU())
        self.lstm = nn.LSTM(d_pre, d_belief, batch_first=True)
        self.d_belief = d_belief

    def forward(self, x):
        b, _ = self.lstm(self.pre(x))
        return torch.cat([b.new_zeros(b.shape[0], 1, b.shape[2]), b], 1)


def gather_time(seq, t):
    """seq (B, T, ...) at times t (B, P) -> (B, P, ...)."""
    index = t.reshape(*t.shape, *([1] * (seq.dim() - 2))).expand(*t.shape, *seq.shape[2:])
    return seq.gather(1, index)


class StateSpace(nn.Module):
    """What the three models share: belief network, p_B (also the prior on z_0 at b_0),
    the jumpy transition p_T and the decoder p_D."""

    def __init__(self, x_dim: int, *, d_belief: int = 64, z_dims=(8,), d_hidden: int = 64, d_pre: int = 64,
                 decoder: str = "gaussian", obs_std: float = 0.1, read_first: bool = False,
                 dt_scale: float = 10.0, transition_layers: int = 1):
        super().__init__()
        self.z_dims = tuple(z_dims)
        self.z_dim, self.dt_scale = sum(self.z_dims), dt_scale
        self.belief = Belief(x_dim, d_belief, d_pre)
        self.p_b = Hierarchy(d_belief, self.z_dims, d_hidden)
        self.p_t = GatedBlock(self.z_dim + 2, d_hidden, self.z_dim, transition_layers)
        self.decoder = Decoder(self.z_dim, x_dim, d_hidden, decoder, obs_std, read_first)

    def dt_features(self, dt, like):
        dt = torch.as_tensor(dt, dtype=like.dtype, device=like.device)
        dt = dt.expand(like.shape[:-1]) if dt.dim() == 0 else dt
        return torch.stack([dt / self.dt_scale, torch.log(dt)], -1)

    def transition(self, z, dt):
        """(mean, log-std) of p_T(z' | z, dt); the mean is residual."""
        mu, ls = self.p_t(torch.cat([z, self.dt_features(dt, z)], -1))
        return z + mu, ls

    def transition_log_prob(self, z_next, z, dt):
        return gaussian_log_prob(z_next, *self.transition(z, dt))

    def transition_sample(self, z, dt, generator=None):
        mu, ls = self.transition(z, dt)
        return mu + torch.exp(ls) * _randn(mu.shape, mu, generator)

    @torch.no_grad()
    def rollout(self, x, t, jumps, generator=None, samples: int = 1, mean_belief: bool = False,
                mean_transition: bool = False):
        """Jumpy rollouts from the belief at time t (having read x_1..x_t): z ~ p_B(b_t), then
        z <- p_T(z, dt) for each dt in ``jumps``; returns the decoded means (B, samples,
        len(jumps), x_dim) and the latents (B, samples, len(jumps), z_dim).  ``mean_belief`` /
        ``mean_transition`` take the mean instead of a sample (a diagnostic; the paper samples)."""
        x = x.to(next(self.parameters()).device)
        b = self.belief(x[:, :t])[:, t]
        b = b.unsqueeze(1).expand(-1, samples, -1)
        z = self.p_b.mean(b) if mean_belief else self.p_b.sample(b, generator)[0]
        zs = []
        for dt in jumps:
            z = self.transition(z, float(dt))[0] if mean_transition else self.transition_sample(z, float(dt), generator)
            zs.append(z)
        zs = torch.stack(zs, 2)
        return self.decoder.mean(zs).cpu(), zs.cpu()


def sample_pairs(batch: int, length: int, pairs: int, skips, generator=None, device="cpu"):
    """t1, t2 = t1 + dt (each (batch, pairs)) with 0 <= t1 < t2 <= length.  ``skips`` is a
    list of (probability, low, high): dt uniform on [low, high] with that probability;
    t1 is then uniform on [0, length - dt]."""
    probs = torch.tensor([p for p, _, _ in skips], dtype=torch.float)
    which = torch.multinomial(probs, batch * pairs, replacement=True, generator=generator)
    lo = torch.tensor([lo for _, lo, _ in skips])[which]
    hi = torch.tensor([min(hi, length) for _, _, hi in skips])[which]
    if (lo > hi).any():
        raise ValueError(f"skip range {skips} does not fit sequences of length {length}")
    u = torch.rand(batch * pairs, generator=generator)
    dt = lo + (u * (hi - lo + 1).float()).long().minimum(hi - lo)
    t1 = (torch.rand(batch * pairs, generator=generator) * (length - dt + 1).float()).long().minimum(length - dt)
    return t1.view(batch, pairs).to(device), (t1 + dt).view(batch, pairs).to(device)


class TDVAE(StateSpace):
    """TD-VAE: adds the smoothing posterior q_S(z_t1 | z_t2, b_t1, b_t2, dt)."""

    def __init__(self, x_dim: int, **kw):
        super().__init__(x_dim, **kw)
        d_belief = self.belief.d_belief
        self.q_s = Hierarchy(2 * d_belief + self.z_dim + 2, self.z_dims, kw.get("d_hidden", 64))

    def pair_terms(self, x, t1, t2, generator=None, beliefs=None):
        """Eq. 6 on pairs: x (B, T, x_dim), t1 < t2 (B, P) in 0..T.  Returns a dict of (B, P)
        terms; loss = -(log p_D + log p_T - log p_B(t2) - KL(q_S || p_B(t1)))."""
        b = self.belief(x) if beliefs is None else beliefs
        b1, b2 = gather_time(b, t1), gather_time(b, t2)
        x2 = gather_time(x, t2 - 1)
        dt = (t2 - t1).to(x.dtype)
        z2, logp_b2 = self.p_b.sample(b2, generator)
        ctx = torch.cat([b1, b2, z2, self.dt_features(dt, z2)], -1)
        z1, kl = self.q_s.sample_with_kl(ctx, self.p_b, b1, generator)
        logp_t = self.transition_log_prob(z2, z1, dt)
        logp_d = self.decoder.log_prob(x2, z2)
        elbo = logp_d + logp_t - logp_b2 - kl
        return {"elbo": elbo, "log_p_d": logp_d, "log_p_t": logp_t, "log_p_b2": logp_b2, "kl_smoothing": kl}

    def loss(self, x, skips, pairs: int, generator=None, beta: float = 1.0):
        """Mean negative eq.-6 bound over ``pairs`` sampled (t1, t2) per sequence.  ``beta``
        < 1 down-weights the belief-entropy and smoothing-KL terms (a warm-up; the paper's
        objective is beta = 1).  ``x`` is moved to the model's device; the statistics are
        detached device scalars (no host sync)."""
        x = x.to(next(self.parameters()).device)
        t1, t2 = sample_pairs(x.shape[0], x.shape[1], pairs, skips, generator, x.device)
        terms = self.pair_terms(x, t1, t2, generator)
        objective = terms["elbo"] if beta == 1.0 else (
            terms["log_p_d"] + terms["log_p_t"] - beta * (terms["log_p_b2"] + terms["kl_smoothing"]))
        return -objective.mean(), {k: v.detach().mean() for k, v in terms.items()}

    def sequential_loss(self, x, generator=None):
        """The sequential TD-VAE (dt = 1 for every t = 1..T): per-step mean of the negative
        bound on log p(x_t | x_<t) (summed over t, divided by T)."""
        x = x.to(next(self.parameters()).device)
        B, T = x.shape[:2]
        t2 = torch.arange(1, T + 1, device=x.device).expand(B, T)
        terms = self.pair_terms(x, t2 - 1, t2, generator)
        return -terms["elbo"].mean(), {k: v.detach().mean() for k, v in terms.items()}

    def log_weights(self, x, samples: int, generator=None):
        """log p(x, z_0:T) - log q(z_0:T | x) for ``samples`` draws per sequence from the
        smoothing proposal (z_T ~ p_B(b_T), then z_{t-1} ~ q_S(. | z_t, b_{t-1}, b_t, 1)),
        under the shared generative model; (B, samples)."""
        b = self.belief(x).unsqueeze(1).expand(-1, samples, -1, -1)  # (B, K, T+1, H)
        T = x.shape[1]
        xk = x.unsqueeze(1).expand(-1, samples, -1, -1)
        z, log_q = self.p_b.sample(b[:, :, T], generator)
        log_p = 0.0
        for t in range(T, 0, -1):
            log_p = log_p + self.decoder.log_prob(xk[:, :, t - 1], z)
            ctx = torch.cat([b[:, :, t - 1], b[:, :, t], z, self.dt_features(1.0, z)], -1)
            z_prev, lq = self.q_s.sample(ctx, generator)
            log_q = log_q + lq
            log_p = log_p + self.transition_log_prob(z, z_prev, 1.0)
            z = z_prev
        log_p = log_p + self.p_b.log_prob(z, b[:, :, 0])
        return log_p - log_q


class Filtering(StateSpace):
    """Filtering posterior q(z_t | z_{t-1}, b_t), trained on the usual sequential ELBO."""

    def __init__(self, x_dim: int, **kw):
        super().__init__(x_dim, **kw)
        self.q = Hierarchy(self.belief.d_belief + self.z_dim, self.z_dims, kw.get("d_hidden", 64))

    def log_weights(self, x, samples: int, generator=None, kl_terms: bool = False):
        """(B, samples) log p(x, z) - log q(z | x): z_0 ~ p_B(b_0) (the prior: nothing observed
        yet), then z_t ~ q(. | z_{t-1}, b_t) forward.  With ``kl_terms`` the transition term
        and log q are replaced by their analytic KL per step (the training ELBO)."""
        b = self.belief(x).unsqueeze(1).expand(-1, samples, -1, -1)
        xk = x.unsqueeze(1).expand(-1, samples, -1, -1)
        z, _ = self.p_b.sample(b[:, :, 0], generator)
        total = 0.0
        for t in range(1, x.shape[1] + 1):
            ctx = torch.cat([b[:, :, t], z], -1)
            mu_p, ls_p = self.transition(z, 1.0)
            if kl_terms and len(self.z_dims) == 1:
                mu, ls = self.q.blocks[0](ctx)
                z_new = mu + torch.exp(ls) * _randn(mu.shape, mu, generator)
                total = total - gaussian_kl(mu, ls, mu_p, ls_p)
            else:
                z_new, lq = self.q.sample(ctx, generator)
                total = total + gaussian_log_prob(z_new, mu_p, ls_p) - lq
            total = total + self.decoder.log_prob(xk[:, :, t - 1], z_new)
            z = z_new
        return total

    def sequential_loss(self, x, generator=None):
        x = x.to(next(self.parameters()).device)
        elbo = self.log_weights(x, 1, generator, kl_terms=True)[:, 0] / x.shape[1]
        return -elbo.mean(), {"elbo": elbo.detach().mean()}


class MeanField(StateSpace):
    """Mean-field posterior q(z_t | b_t), independent across time given the beliefs."""

    def __init__(self, x_dim: int, **kw):
        super().__init__(x_dim, **kw)
        self.q = Hierarchy(self.belief.d_belief, self.z_dims, kw.get("d_hidden", 64))

    def log_weights(self, x, samples: int, generator=None):
        b = self.belief(x).unsqueeze(1).expand(-1, samples, -1, -1)
        xk = x.unsqueeze(1).expand(-1, samples, -1, -1)
        z_all, log_q = self.q.sample(b[:, :, 1:], generator)  # (B, K, T, z): all steps at once
        z0, _ = self.p_b.sample(b[:, :, 0], generator)
        z_prev = torch.cat([z0.unsqueeze(2), z_all[:, :, :-1]], 2)
        log_p = (self.transition_log_prob(z_all, z_prev, 1.0) + self.decoder.log_prob(xk, z_all)).sum(-1)
        return log_p - log_q.sum(-1)

    def sequential_loss(self, x, generator=None):
        x = x.to(next(self.parameters()).device)
        elbo = self.log_weights(x, 1, generator)[:, 0] / x.shape[1]
        return -elbo.mean(), {"elbo": elbo.detach().mean()}


def importance_nll(model, x, samples: int, generator=None, chunk: int = 64):
    """Per-sequence (ELBO, importance-sampled log-likelihood estimate) with the model's own
    proposal; the ELBO is the mean log weight, the estimate log mean exp of ``samples``."""
    elbos, lls = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            lw = model.log_weights(x[i:i + chunk], samples, generator)
            elbos.append(lw.mean(1))
            lls.append(torch.logsumexp(lw, 1) - math.log(samples))
    return torch.cat(elbos), torch.cat(lls)


class NextStep(nn.Module):
    """The belief probe's baseline: the same belief LSTM trained to predict x_{t+1} from b_t
    (Gaussian with the decoder's fixed std)."""

    def __init__(self, x_dim: int, *, d_belief: int = 64, d_pre: int = 64, d_hidden: int = 64,
                 obs_std: float = 0.1):
        super().__init__()
        self.belief = Belief(x_dim, d_belief, d_pre)
        self.head = nn.Sequential(nn.Linear(d_belief, d_hidden), nn.ReLU(), nn.Linear(d_hidden, x_dim))
        self.obs_std = obs_std

    def loss(self, x, *_, **__):
        x = x.to(next(self.parameters()).device)
        b = self.belief(x)[:, 1:-1]  # b_1..b_{T-1} predict x_2..x_T
        mu = self.head(b)
        logp = gaussian_log_prob(x[:, 1:], mu, torch.full_like(mu, math.log(self.obs_std)))
        return -logp.mean(), {"log_p_next": logp.detach().mean()}


def probe_accuracy(train_x, train_y, test_x, test_y, weight_decay: float = 1e-3, iters: int = 200) -> float:
    """A linear (logistic-regression) probe: fit on standardised features with L-BFGS, return
    test accuracy in %."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    lin = nn.Linear(a.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(a), train_y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return 100.0 * (lin(b).argmax(1) == test_y).float().mean().item()


def linear_r2(train_x, train_y, test_x, test_y) -> float:
    """Held-out R^2 of a least-squares linear map (with intercept) from features to a scalar
    target: 1 when the target is a linear function of the features, about 0 (or below) when
    they carry nothing about it."""
    ones = lambda a: torch.cat([a, a.new_ones(len(a), 1)], 1)  # noqa: E731
    w = torch.linalg.lstsq(ones(train_x).double(), train_y.double()[:, None]).solution
    pred = (ones(test_x).double() @ w)[:, 0]
    return (1 - ((pred - test_y.double()) ** 2).mean() / test_y.double().var(unbiased=False)).item()
