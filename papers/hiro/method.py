"""HIRO: data-efficient hierarchical RL with off-policy correction (Nachum, Gu, Lee &
Levine, NeurIPS 2018, arXiv 1805.08296), the idea in one file.

Two TD3 learners (``common.rl.td3``).  Every ``c`` steps the high level proposes a
RELATIVE goal g_t (a desired change of the goal part of the state, here the point's
x, y); between decisions the goal is re-based by h(s, g, s') = s + g - s' (eq. 2) and
the low level, which sees (its features, g), is rewarded -||s + g - s'|| (eq. 3).  The
high level learns from (s_t, g_t, sum of the c env rewards, s_{t+c}), its reward
scaled by 0.1 (App. C.2; the official train.py: ``reward = 0.1 * meta_reward``), and
keeps the c low-level states and actions of the segment.

Off-policy correction (§3.3): when a high-level transition is replayed, its goal is
relabelled with the candidate that makes the stored low-level actions most likely
under the CURRENT low-level policy.  For a deterministic TD3 policy (Gaussian
exploration) log mu(a | s, g) = -1/2 ||a - mu(s, g)||^2 + const, summed over the c
steps with every candidate re-based along the segment.  Candidates (App. C.3, 10 in
all): the original goal, s_{t+c} - s_t, and 8 draws from a Gaussian centred at
s_{t+c} - s_t with std 1/2 x half the goal range, clipped to the range.  The
official ``sample_best_meta_actions`` scores them the same way (sum of log-probs over
the segment, argmax over candidates).  Every transition and candidate is scored in
one batched pass of the low-level actor: ``relabel_goals`` below.
"""

from __future__ import annotations

import torch

from common.rl.replay import Replay
from common.rl.td3 import TD3
from common.rl.wrappers import goal_reward, goal_transition, rebase_goals


def goal_candidates(start, end, goal, goal_range, num_random: int = 8,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2 + num_random, d): [original goal, s_{t+c} - s_t, Gaussian samples around it],
    clipped to [-goal_range, goal_range]; start, end, goal: (B, d)."""
    delta = end - start
    std = 0.5 * goal_range  # App. C.3: 0.5 x (1/2 x the range 2 goal_range)
    noise = torch.randn((delta.shape[0], num_random, delta.shape[1]), generator=generator)
    samples = delta.unsqueeze(1) + std * noise.to(delta.device)
    cands = torch.cat([goal.unsqueeze(1), delta.unsqueeze(1), samples], 1)
    return torch.maximum(torch.minimum(cands, goal_range), -goal_range)


def candidate_log_likelihood(low_policy, goal_states, features, actions, candidates):
    """-1/2 sum_i ||a_i - mu(features_i, g~_i)||^2 for every transition and candidate.

    goal_states (B, c+1, d) (the goal part of s_t .. s_{t+c}), features (B, c, f),
    actions (B, c, a), candidates (B, K, d) -> (B, K).  One actor call on B*K*c rows."""
    B, K, d = candidates.shape
    c = actions.shape[1]
    goals = rebase_goals(goal_states[:, None, :c, :], candidates)              # (B, K, c, d)
    feats = features[:, None].expand(B, K, c, features.shape[-1])
    mu = low_policy(torch.cat([feats, goals], -1).reshape(B * K * c, -1)).reshape(B, K, c, -1)
    return -0.5 * (actions[:, None] - mu).pow(2).sum((-1, -2))


@torch.no_grad()
def relabel_goals(low_policy, goal_states, features, actions, goals, goal_range,
                  num_random: int = 8, generator: torch.Generator | None = None):
    """The off-policy correction: the most likely of the candidates, per transition.
    Returns (new goals (B, d), index of the chosen candidate (B,))."""
    cands = goal_candidates(goal_states[:, 0], goal_states[:, -1], goals, goal_range, num_random, generator)
    best = candidate_log_likelihood(low_policy, goal_states, features, actions, cands).argmax(1)
    return cands[torch.arange(len(best), device=best.device), best], best


class HIRO:
    """Both levels, their replay buffers, acting and learning.  ``env`` supplies
    ``goal_part(obs)`` and ``low_features(obs)`` (tensors in, tensors out)."""

    def __init__(self, env, obs_dim: int, goal_dim: int, feat_dim: int, goal_range: float,
                 c: int = 10, correction: bool = True, hidden=(300, 300), buffer: int = 200_000,
                 batch_size: int = 100, low_noise: float = 0.1, high_noise: float = 0.1,
                 high_reward_scale: float = 0.1, gamma: float = 0.99, tau: float = 0.005,
                 actor_lr: float = 1e-4, critic_lr: float = 1e-3, candidates: int = 10,
                 device="cpu"):
        self.env, self.c, self.correction = env, c, correction
        self.goal_dim, self.goal_range = goal_dim, torch.full((goal_dim,), float(goal_range), device=device)
        self.batch_size, self.low_noise, self.high_noise = batch_size, low_noise, high_noise
        self.num_random = candidates - 2
        act = env.single_action_space
        common = dict(hidden=hidden, gamma=gamma, tau=tau, actor_lr=actor_lr, critic_lr=critic_lr,
                      device=device)
        self.low = TD3(feat_dim + goal_dim, act.low, act.high, **common)
        self.high = TD3(obs_dim, -self.goal_range.cpu(), self.goal_range.cpu(),
                        reward_scale=high_reward_scale, **common)
        a = act.shape[0]
        self.low_replay = Replay(buffer, {"obs": (feat_dim + goal_dim,), "action": (a,), "reward": (),
                                          "next_obs": (feat_dim + goal_dim,), "done": ()}, device)
        self.high_replay = Replay(max(buffer // c, 1), {
            "obs": (obs_dim,), "action": (goal_dim,), "reward": (), "next_obs": (obs_dim,), "done": (),
            "states": (c + 1, obs_dim), "actions": (c, a)}, device)
        self.relabel_stats = {"kept": 0, "delta": 0, "sampled": 0}

    def low_input(self, obs, goal):
        return torch.cat([self.env.low_features(obs), goal], -1)

    # ---- acting: the caller steps the environment, these keep the goal
    def high_act(self, obs, explore: bool, random: bool, generator=None):
        if random:
            return self.high.random_action(len(obs), generator)
        return self.high.act(obs, self.high_noise if explore else 0.0, generator)

    def low_act(self, obs, goal, explore: bool, random: bool, generator=None):
        if random:
            return self.low.random_action(len(obs), generator)
        return self.low.act(self.low_input(obs, goal), self.low_noise if explore else 0.0, generator)

    def next_goal(self, obs, goal, next_obs):
        return goal_transition(self.env.goal_part(obs), goal, self.env.goal_part(next_obs))

    # ---- storing
    def store_low(self, obs, goal, action, next_obs):
        s, s2 = self.env.goal_part(obs), self.env.goal_part(next_obs)
        g2 = goal_transition(s, goal, s2)
        n = len(obs)
        self.low_replay.add(obs=self.low_input(obs, goal), action=action, reward=goal_reward(s, goal, s2),
                            next_obs=self.low_input(next_obs, g2), done=torch.zeros(n))

    def store_high(self, states, actions, goal, reward_sum, done):
        """states (n, c+1, obs), actions (n, c, a): one finished segment per env."""
        self.high_replay.add(obs=states[:, 0], action=goal, reward=reward_sum, next_obs=states[:, -1],
                             done=done, states=states, actions=actions)

    # ---- learning
    def update_low(self, generator=None):
        if len(self.low_replay) >= self.batch_size:
            self.low.update(self.low_replay.sample(self.batch_size, generator), generator)

    def update_high(self, generator=None):
        if len(self.high_replay) < self.batch_size:
            return
        batch = self.high_replay.sample(self.batch_size, generator)
        if self.correction:
            st = batch["states"]
            goals, best = relabel_goals(self.low.actor, self.env.goal_part(st), self.env.low_features(st[:, :-1]),
                                        batch["actions"], batch["action"], self.goal_range, self.num_random,
                                        generator)
            batch["action"] = goals
            counts = torch.bincount(best.clamp(max=2), minlength=3).tolist()
            for k, v in zip(("kept", "delta", "sampled"), counts):
                self.relabel_stats[k] += v
        self.high.update(batch, generator)

    def state_dict(self) -> dict:
        return {"low": self.low.state_dict(), "high": self.high.state_dict(),
                "low_replay": self.low_replay.state_dict(), "high_replay": self.high_replay.state_dict(),
                "relabel_stats": dict(self.relabel_stats)}

    def load_state_dict(self, state: dict) -> None:
        self.low.load_state_dict(state["low"])
        self.high.load_state_dict(state["high"])
        self.low_replay.load_state_dict(state["low_replay"])
        self.high_replay.load_state_dict(state["high_replay"])
        self.relabel_stats = dict(state["relabel_stats"])


class Flat:
    """The "no HRL" ablation: one TD3 on the environment's reward, same budget."""

    def __init__(self, env, obs_dim: int, hidden=(300, 300), buffer: int = 200_000, batch_size: int = 100,
                 noise: float = 0.1, gamma: float = 0.99, tau: float = 0.005, actor_lr: float = 1e-4,
                 critic_lr: float = 1e-3, device="cpu"):
        act = env.single_action_space
        self.batch_size, self.noise = batch_size, noise
        self.td3 = TD3(obs_dim, act.low, act.high, hidden=hidden, gamma=gamma, tau=tau, actor_lr=actor_lr,
                       critic_lr=critic_lr, device=device)
        self.replay = Replay(buffer, {"obs": (obs_dim,), "action": (act.shape[0],), "reward": (),
                                      "next_obs": (obs_dim,), "done": ()}, device)

    def act(self, obs, explore: bool, random: bool, generator=None):
        if random:
            return self.td3.random_action(len(obs), generator)
        return self.td3.act(obs, self.noise if explore else 0.0, generator)

    def store(self, obs, action, reward, next_obs, done):
        self.replay.add(obs=obs, action=action, reward=reward, next_obs=next_obs, done=done)

    def update(self, generator=None):
        if len(self.replay) >= self.batch_size:
            self.td3.update(self.replay.sample(self.batch_size, generator), generator)

    def state_dict(self) -> dict:
        return {"td3": self.td3.state_dict(), "replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.td3.load_state_dict(state["td3"])
        self.replay.load_state_dict(state["replay"])
