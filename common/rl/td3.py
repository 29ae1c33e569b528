"""TD3 (Fujimoto, van Hoof & Meger, ICML 2018): clipped double-Q learning,
target-policy smoothing (clipped Gaussian noise on the target action), delayed
actor and target updates, Polyak-averaged targets.

The two critics are one ``EnsembleMLP``: their weights are stacked and every
layer is one batched matrix multiply, so a critic evaluation costs one forward
pass, not two (the CPU profile is dominated by per-op overhead).  Actions are
squashed into the box ``[low, high]`` by ``low + (tanh + 1)/2 (high - low)``.
Everything is device-agnostic: the learner lives where ``device`` says, the
caller's ``torch.Generator`` (CPU) draws the noise so a run is the same on every
device.  ``state_dict`` holds networks, targets, optimisers and the update
counter, so a checkpoint resumes the learner exactly.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


def mlp(sizes, out_act=None) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """``members`` independent MLPs evaluated together: input (B, in) or
    (members, B, in), output (members, B, out).  Initialised like nn.Linear."""

    def __init__(self, sizes, members: int = 2):
        super().__init__()
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = F.relu(x)
        return x


class Actor(nn.Module):
    def __init__(self, obs_dim: int, low: torch.Tensor, high: torch.Tensor, hidden=(300, 300)):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, len(low)], nn.Tanh())
        self.register_buffer("mid", (high + low) / 2)
        self.register_buffer("scale", (high - low) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mid + self.scale * self.net(obs)


class TD3:
    """One TD3 learner.  ``policy_noise`` and ``noise_clip`` are fractions of the
    action half-range (TD3's 0.2 and 0.5 for a unit box)."""

    def __init__(self, obs_dim: int, low, high, hidden=(300, 300), gamma: float = 0.99,
                 tau: float = 0.005, actor_lr: float = 1e-4, critic_lr: float = 1e-3,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_delay: int = 2,
                 reward_scale: float = 1.0, device="cpu"):
        self.device = torch.device(device)
        low = torch.as_tensor(low, dtype=torch.float32)
        high = torch.as_tensor(high, dtype=torch.float32)
        self.act_dim = len(low)
        self.gamma, self.tau, self.policy_delay = gamma, tau, policy_delay
        self.reward_scale = reward_scale
        self.actor = Actor(obs_dim, low, high, hidden).to(self.device)
        self.critic = EnsembleMLP([obs_dim + self.act_dim, *hidden, 1], members=2).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=critic_lr)
        self.low, self.high = low.to(self.device), high.to(self.device)
        self.half = (self.high - self.low) / 2
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.updates = 0

    # ---- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None):
        """The deterministic action, plus Gaussian noise of std ``noise`` x half-range,
        clipped to the box."""
        a = self.actor(obs.to(self.device))
        if noise > 0:
            eps = torch.randn(a.shape, generator=generator).to(self.device)
            a = torch.maximum(torch.minimum(a + noise * self.half * eps, self.high), self.low)
        return a

    def random_action(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand((n, self.act_dim), generator=generator).to(self.device)
        return self.low + u * (self.high - self.low)

    # ---- learning
    @torch.no_grad()
    def target_q(self, reward, next_obs, done, eps: torch.Tensor) -> torch.Tensor:
        """y = s r + gamma (1 - done) min_i Q'_i(s', clip(pi'(s') + clip(eps, +-c), box)),
        with ``eps`` standard-normal noise already drawn, scaled here by policy_noise."""
        noise = (self.policy_noise * eps).clamp(-self.noise_clip, self.noise_clip) * self.half
        a2 = torch.maximum(torch.minimum(self.actor_target(next_obs) + noise, self.high), self.low)
        q2 = self.critic_target(torch.cat([next_obs, a2], -1)).min(0).values.squeeze(-1)
        return self.reward_scale * reward + self.gamma * (1.0 - done) * q2

    def update(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """One gradient step on a batch with obs, action, reward, next_obs, done."""
        obs, act = batch["obs"], batch["action"]
        eps = torch.randn(act.shape, generator=generator).to(self.device)
        y = self.target_q(batch["reward"], batch["next_obs"], batch["done"], eps)
        q = self.critic(torch.cat([obs, act], -1)).squeeze(-1)          # (2, B)
        critic_loss = F.mse_loss(q, y.expand_as(q), reduction="none").mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        out = {"critic_loss": critic_loss.detach()}
        if self.updates % self.policy_delay == 0:
            w, b = self.critic.weights, self.critic.biases
            x = torch.cat([obs, self.actor(obs)], -1)
            # Q_1 only (TD3): the first member's slice of the stacked weights
            for i in range(len(w)):
                x = torch.addmm(b[i][0], x, w[i][0])
                if i < len(w) - 1:
                    x = F.relu(x)
            actor_loss = -x.mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            self.critic.zero_grad(set_to_none=True)  # the actor step's critic gradients are not used
            self.soft_update()
            out["actor_loss"] = actor_loss.detach()
        return out

    @torch.no_grad()
    def soft_update(self) -> None:
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            torch._foreach_lerp_(list(tgt.parameters()), list(net.parameters()), self.tau)

    # ---- checkpoints
    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for k in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, k).load_state_dict(state[k])
        self.updates = int(state["updates"])
