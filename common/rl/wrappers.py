"""Environment wrappers and goal helpers.

- ``VectorTimeLimit``: truncates every sub-environment of a gymnasium
  ``VectorEnv`` after ``max_steps`` steps (the official HIRO code also caps its
  500-step episodes in the training loop, not in the environment:
  tensorflow/models#6660).  Single environments use gymnasium's own
  ``gymnasium.wrappers.TimeLimit``; ``time_limited`` picks the right one.
- Goal helpers for relative goals (HIRO, Nachum et al. 2018, eqs. 2-3), all
  batched over any leading dimensions:
  ``goal_transition(s, g, s')  = s + g - s'``  (eq. 2, the goal re-based each step),
  ``goal_reward(s, g, s')      = -||s + g - s'||_2``  (eq. 3, the low-level reward),
  ``rebase_goals(states, g0)``  every intermediate goal of a c-step segment at
  once: since ``s_i + g_i`` is invariant under eq. 2, ``g_i = s_0 + g_0 - s_i``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


def goal_transition(s, g, s_next):
    return s + g - s_next


def goal_reward(s, g, s_next):
    return -torch.linalg.vector_norm(s + g - s_next, dim=-1)


def rebase_goals(states: torch.Tensor, g0: torch.Tensor) -> torch.Tensor:
    """states (..., c, d), g0 (..., d) -> goals (..., c, d) with g_i = s_0 + g_0 - s_i,
    i.e. eq. 2 applied i times."""
    return (states[..., :1, :] + g0.unsqueeze(-2)) - states


class VectorTimeLimit(gym.vector.VectorWrapper):
    """Sets ``truncations`` once ``max_steps`` steps have passed since the last reset
    (every sub-environment is reset together: the wrapped env's episodes all have the
    same length)."""

    def __init__(self, env: gym.vector.VectorEnv, max_steps: int):
        super().__init__(env)
        self.max_steps = int(max_steps)
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, actions):
        obs, rew, term, trunc, info = self.env.step(actions)
        self.t += 1
        if self.t >= self.max_steps:
            trunc = np.ones_like(trunc, dtype=bool)
        return obs, rew, term, trunc, info


def time_limited(env, max_steps: int):
    if isinstance(env, gym.vector.VectorEnv):
        return VectorTimeLimit(env, max_steps)
    return gym.wrappers.TimeLimit(env, max_episode_steps=max_steps)
