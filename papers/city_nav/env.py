"""The courier task on ProcCity, as a batched gymnasium ``VectorEnv`` (numpy, in process).

StreetLearn's rules (google-deepmind/streetlearn, ``courier_game.py`` and
``curriculum_courier_game.py``; default_config), kept here:

- 5 actions: forward, turn left / right by 22.5 degrees (one heading bin), turn left /
  right by 67.5 degrees (three bins).  Forward moves to the neighbour whose bearing is
  within 30 degrees of the heading and is a no-op when there is none.
- A goal node is sampled; it counts as reached within ``goal_radius_m`` (100 m) in
  straight-line distance.  The goal reward is proportional to the number of nodes on
  the shortest path from where the goal was assigned (``reward_per_node`` each).
- Early reward shaping: within ``shaping_radius_m`` (200 m) the agent is paid
  ``goal_reward * (200 - d) / (200 - 100)``, but only on reaching a new minimum
  distance d to the current goal.
- After success a new goal is sampled; an episode ends after ``episode_steps`` steps
  (StreetLearn: 1000; the cpu profile scales it down, stated in its config).
- Curriculum: goals are sampled among nodes at most ``max_goal_m`` away (straight
  line), which the trainer anneals (``set_max_goal``) from a start value to the whole
  city (StreetLearn: 500 m to 3.5 km; here scaled to the city's size).

Auto-reset is gymnasium's "same step" mode: the observation returned with
``truncated`` is already the first one of the next episode.
"""

from __future__ import annotations

import numpy as np
import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

from papers.city_nav import city as C

FORWARD, LEFT, RIGHT, LEFT3, RIGHT3 = range(5)
TURN = np.array([0, 1, -1, 3, -3])


class CourierVecEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    _STATE = ("node", "heading", "goal", "t", "goal_reward", "min_dist")

    def __init__(self, city: C.City, cache: np.ndarray, num_envs: int = 16, seed: int = 0,
                 goal: str = "landmarks", goal_radius_m: float = 100.0, shaping_radius_m: float = 200.0,
                 shaping: bool = True, reward_per_node: float = 0.1, episode_steps: int = 1000,
                 max_goal_m: float = np.inf, temperature_m: float = 100.0):
        self.city, self.cache = city, cache
        self.num_envs = num_envs
        self.goal_kind, self.goal_radius, self.shaping_radius = goal, goal_radius_m, shaping_radius_m
        self.shaping, self.reward_per_node, self.episode_steps = shaping, reward_per_node, episode_steps
        self.max_goal_m, self.temperature_m = max_goal_m, temperature_m
        self.rng = np.random.default_rng(seed)
        gdim = len(city.landmarks) if goal == "landmarks" else 2
        size = cache.shape[-1]
        self.single_observation_space = gym.spaces.Dict({
            "view": gym.spaces.Box(0, 255, (3, size, size), np.uint8),
            "goal": gym.spaces.Box(0.0, 1.0, (gdim,), np.float32),
            "heading": gym.spaces.Discrete(C.HEADINGS)})
        self.single_action_space = gym.spaces.Discrete(5)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        z = lambda dt=np.int64: np.zeros(num_envs, dt)  # noqa: E731
        self.node, self.heading, self.goal, self.t = z(), z(), z(), z()
        self.goal_reward, self.min_dist = z(np.float64), z(np.float64)

    # ---- state (saved with a checkpoint, so a killed run resumes exactly)
    def state_dict(self) -> dict:
        import torch  # tensors, so that checkpoints load weights-only

        arrays = {k: torch.from_numpy(getattr(self, k).copy()) for k in self._STATE}
        return {**arrays, "max_goal_m": float(self.max_goal_m), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, s: dict) -> None:
        for k in self._STATE:
            v = s[k]
            setattr(self, k, (v.numpy() if hasattr(v, "numpy") else np.asarray(v)).copy())
        self.max_goal_m = float(s["max_goal_m"])
        self.rng.bit_generator.state = s["rng"]

    def set_max_goal(self, metres: float) -> None:
        self.max_goal_m = float(metres)

    # ---- the task
    def _new_goals(self, idx: np.ndarray) -> None:
        for i in idx:
            d = self.city.distances(self.node[i], np.arange(self.city.n))
            cand = np.flatnonzero((d > self.goal_radius) & (d <= max(self.max_goal_m, self.goal_radius + 1)))
            if len(cand) == 0:
                cand = np.flatnonzero(d > self.goal_radius)
            g = self.rng.choice(cand)
            self.goal[i] = g
            self.min_dist[i] = d[g]
            self.goal_reward[i] = self.reward_per_node * self.city.hops[self.node[i], g]

    def _start(self, idx: np.ndarray) -> None:
        self.node[idx] = self.rng.integers(self.city.n, size=len(idx))
        self.heading[idx] = self.rng.integers(C.HEADINGS, size=len(idx))
        self.t[idx] = 0
        self._new_goals(idx)

    def goal_features(self, nodes: np.ndarray) -> np.ndarray:
        if self.goal_kind == "landmarks":
            return C.goal_landmarks(self.city, nodes, self.temperature_m)
        return C.goal_latlong(self.city, nodes)

    def observe(self) -> dict:
        return {"view": self.cache[self.node, self.heading], "goal": self.goal_features(self.goal),
                "heading": self.heading.copy()}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._start(np.arange(self.num_envs))
        return self.observe(), {}

    def step(self, actions):
        a = np.asarray(actions, dtype=np.int64)
        fwd = self.city.forward[self.node, self.heading]
        move = (a == FORWARD) & (fwd >= 0)
        self.node = np.where(move, fwd, self.node)
        self.heading = (self.heading + TURN[a]) % C.HEADINGS
        self.t += 1
        d = self.city.distances(self.node, self.goal)
        reached = d < self.goal_radius
        better = (d < self.min_dist) & (d < self.shaping_radius) & ~reached
        shaped = self.goal_reward * (self.shaping_radius - d) / (self.shaping_radius - self.goal_radius)
        reward = np.where(reached, self.goal_reward, np.where(better & self.shaping, shaped, 0.0))
        self.min_dist = np.where(better, d, self.min_dist)
        info = {"goal_reached": reached.copy(), "goal_reward": np.where(reached, self.goal_reward, 0.0)}
        self._new_goals(np.flatnonzero(reached))
        truncated = self.t >= self.episode_steps
        self._start(np.flatnonzero(truncated))
        terminated = np.zeros(self.num_envs, bool)
        return self.observe(), reward.astype(np.float32), terminated, truncated, info
