"""Point-mass re-creations of HIRO's Ant Maze and Ant Push (Nachum et al. 2018,
App. B), vectorised in NumPy behind gymnasium's ``VectorEnv`` interface, and the
Ant factory of the full profile (MuJoCo is not installed here).

App. B builds both worlds from 8x8 blocks; here a block is 1x1 (every length
divided by 8) and the Ant is a point that moves by ``speed * action`` per step
(action in [-1, 1]^2), stopped by walls axis by axis:

- Maze: free cells (0,0),(1,0),(2,0),(2,1),(2,2),(1,2),(0,2) (the paper's "⊃"),
  start (0,0); training targets uniform in [-0.5, 2.5]^2 (the paper's
  [-4, 20]^2 / 8), evaluation target (0, 2) (the paper's (0, 16)).
- Push: free cells (0,0),(-1,0),(-1,1),(0,1),(1,1),(2,1),(0,2), a movable 1x1
  block at (0,1) that the point pushes along the axis it moves on (when the
  block's new square is free), target (0, 2.375) (the paper's (0, 19)).  Pushing
  the block up jams it into the target's dead end; the solution goes left, then
  pushes the block right and walks up.

Reward: -L2 distance of the point to the target (App. B's dense reward); success:
within 0.625 (= 5/8) of the target at the FINAL step.  Observation:
[x, y, (block x, block y), target x, target y, t / T] (App. B includes the time
step and the target).  The episode length is imposed by the caller
(``common.rl.wrappers.VectorTimeLimit``), as in the official code.
Targets are drawn from a ``torch.Generator`` so that the environment's randomness
is checkpointed with the run.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from registry import ReproError

EPS = 1e-6

LAYOUTS = {
    "maze": dict(free=[(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2)], block=None,
                 eval_target=(0.0, 2.0), train_targets=((-0.5, -0.5), (2.5, 2.5))),
    "push": dict(free=[(0, 0), (-1, 0), (-1, 1), (0, 1), (1, 1), (2, 1), (0, 2)], block=(0.0, 1.0),
                 eval_target=(0.0, 2.375), train_targets=None),
}


class PointMassNav(gym.vector.VectorEnv):
    """``num_envs`` point masses in one layout; ``evaluation=True`` fixes the target to
    the evaluation target (Push always uses its one target)."""

    def __init__(self, layout: str, num_envs: int, speed: float = 0.15, horizon: int = 100,
                 success_radius: float = 0.625, evaluation: bool = False,
                 generator: torch.Generator | None = None):
        if layout not in LAYOUTS:
            raise ReproError(f"unknown point-mass layout {layout!r}; choose from {sorted(LAYOUTS)}")
        spec = LAYOUTS[layout]
        self.layout, self.num_envs, self.speed, self.horizon = layout, num_envs, speed, horizon
        self.success_radius, self.evaluation = success_radius, evaluation
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        cells = np.array(spec["free"])
        self.offset = cells.min(0) - 1
        grid = np.zeros(tuple(cells.max(0) - self.offset + 2), dtype=bool)
        grid[tuple((cells - self.offset).T)] = True
        self.grid = grid
        self.has_block = spec["block"] is not None
        self.block0 = np.array(spec["block"] or (0.0, 0.0))
        self.eval_target = np.array(spec["eval_target"])
        self.train_targets = spec["train_targets"]
        self.obs_dim = 2 + 2 * self.has_block + 2 + 1
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": None}
        self.pos = np.zeros((num_envs, 2))
        self.block = np.tile(self.block0, (num_envs, 1))
        self.target = np.tile(self.eval_target, (num_envs, 1))
        self.t = 0

    # ---- geometry (vectorised over the batch)
    def free(self, p: np.ndarray) -> np.ndarray:
        """Whether points (..., 2) lie in a free cell."""
        idx = np.floor(p + 0.5).astype(int) - self.offset
        inside = (idx >= 0).all(-1) & (idx[..., 0] < self.grid.shape[0]) & (idx[..., 1] < self.grid.shape[1])
        idx = np.clip(idx, 0, np.array(self.grid.shape) - 1)
        return inside & self.grid[idx[..., 0], idx[..., 1]]

    def square_free(self, centre: np.ndarray) -> np.ndarray:
        """Whether the unit square at ``centre`` (n, 2) lies inside free cells."""
        h = 0.5 - 1e-3
        corners = centre[:, None, :] + np.array([[-h, -h], [-h, h], [h, -h], [h, h]])
        return self.free(corners).all(-1)

    def in_block(self, p: np.ndarray) -> np.ndarray:
        if not self.has_block:
            return np.zeros(len(p), dtype=bool)
        return (np.abs(p - self.block) < 0.5 - EPS).all(-1)

    def move(self, action: np.ndarray) -> None:
        d = self.speed * np.clip(action, -1.0, 1.0)
        for k in (0, 1):  # axis by axis: slide along walls
            new = self.pos.copy()
            new[:, k] += d[:, k]
            ok = self.free(new)
            if self.has_block:
                hit = ok & self.in_block(new)
                # push: the block's near edge goes to the point's new position
                nb = self.block.copy()
                nb[:, k] = new[:, k] + 0.5 * np.sign(d[:, k]) + np.sign(d[:, k]) * EPS
                can = hit & (d[:, k] != 0) & self.square_free(nb)
                self.block = np.where(can[:, None], nb, self.block)
                ok &= ~hit | can
            self.pos = np.where(ok[:, None], new, self.pos)

    # ---- gymnasium interface
    def _obs(self) -> np.ndarray:
        parts = [self.pos] + ([self.block] if self.has_block else []) + \
                [self.target, np.full((self.num_envs, 1), self.t / self.horizon)]
        return np.concatenate(parts, 1).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.t = 0
        self.pos = np.zeros((self.num_envs, 2))
        self.block = np.tile(self.block0, (self.num_envs, 1))
        if self.evaluation or self.train_targets is None:
            self.target = np.tile(self.eval_target, (self.num_envs, 1))
        else:
            lo, hi = (np.array(v) for v in self.train_targets)
            u = torch.rand((self.num_envs, 2), generator=self.generator, dtype=torch.float64).numpy()
            self.target = lo + u * (hi - lo)
        return self._obs(), {}

    def step(self, actions):
        self.move(np.asarray(actions, dtype=np.float64))
        self.t += 1
        dist = np.linalg.norm(self.pos - self.target, axis=1)
        info = {"success": dist <= self.success_radius, "distance": dist}
        zeros = np.zeros(self.num_envs, dtype=bool)
        return self._obs(), (-dist).astype(np.float32), zeros, zeros.copy(), info

    # ---- what the hierarchy needs from the observation
    def goal_part(self, obs):
        """The goal space: the point's position (the Ant's positions in the paper)."""
        return obs[..., :2]

    def low_features(self, obs):
        """What the low level sees besides its goal: the block relative to the point
        (Push), nothing in the Maze; the point's own x, y are hidden from the low level
        as the official configs do (ZERO_OBS), and so are the target and time."""
        if self.has_block:
            return obs[..., 2:4] - obs[..., :2]
        return obs[..., :0]


def make_env(name: str, num_envs: int, horizon: int, evaluation: bool = False,
             generator: torch.Generator | None = None, speed: float = 0.15):
    """``point_maze`` / ``point_push`` here; ``ant_maze`` / ``ant_push`` / ``ant_fall`` (the
    full profile, App. B: rllab Ant with gear 30, dt 0.02 x frame skip 5) need MuJoCo."""
    if name.startswith("point_"):
        return PointMassNav(name[len("point_"):], num_envs, speed=speed, horizon=horizon,
                            evaluation=evaluation, generator=generator)
    if name in ("ant_maze", "ant_push", "ant_fall"):
        raise ReproError(
            f"{name} (HIRO App. B: rllab Ant, gear 30, dt 0.02 x frame skip 5, 500-step "
            f"episodes) needs MuJoCo and an Ant world built from App. B's blocks, which this "
            f"hub does not ship: install `mujoco` (pip install mujoco) and implement the "
            f"world in papers/hiro/envs.py; the cpu profile uses point_maze / point_push")
    raise ReproError(f"unknown environment {name!r}; known: point_maze, point_push, "
                     f"ant_maze, ant_push, ant_fall")
