"""Point-mass re-creations of HIRO's Ant Maze and Ant Push (Nachum et al. 2018,
App. B), vectorised in NumPy behind gymnasium's ``VectorEnv`` interface, and the
environment factory (the full profile's Ant worlds are in ``papers.hiro.ant``).

App. B builds both worlds from 8x8 blocks; here a block is 1x1 (every length
divided by 8) and the Ant is a square body of half-width ``radius`` = 0.1 (the Ant's
leg tips rest at +-0.8 in x and y, / 8) that moves by ``speed * action`` per step
(action in [-1, 1]^2), swept against walls and the block axis by axis (``move``):

- Maze: free cells (0,0),(1,0),(2,0),(2,1),(2,2),(1,2),(0,2) (the paper's "⊃"),
  start (0,0); training targets uniform in [-0.5, 2.5]^2 (the paper's
  [-4, 20]^2 / 8), evaluation target (0, 2) (the paper's (0, 16)).
- Push: free cells (0,0),(-1,0),(-1,1),(0,1),(1,1),(2,1),(0,2), a movable 1x1
  block at (0,1) that the body pushes along the axis it moves on (as far as the
  block's own walls allow), target (0, 2.375) (the paper's (0, 19)).  Pushing
  the block up jams it into the target's dead end; the solution goes left, then
  pushes the block right by at least 2 x radius and walks up.  (Last stop's world
  had a point with no body, which slipped past the block's corner after nudging it
  0.02: the only Push success of that sweep.)

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

TOL = 1e-9      # contact tolerance
SUBSTEP = 0.25  # longest sub-step of a swept move (less than a cell, and than the body)

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
                 generator: torch.Generator | None = None, radius: float = 0.1):
        if layout not in LAYOUTS:
            raise ReproError(f"unknown point-mass layout {layout!r}; choose from {sorted(LAYOUTS)}")
        spec = LAYOUTS[layout]
        self.layout, self.num_envs, self.speed, self.horizon = layout, num_envs, speed, horizon
        self.success_radius, self.evaluation = success_radius, evaluation
        if not 0.0 <= radius < 0.5:
            raise ReproError(f"body radius {radius} must lie in [0, 0.5) (the corridors are 1 wide)")
        self.radius = float(radius)
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

    # ---- geometry (vectorised over the batch).  The agent is a square body of half-width
    # ``radius`` (the Ant's footprint, not a point); the block a unit square; walls are the
    # non-free unit cells.  Motion is swept axis by axis in sub-steps of at most SUBSTEP, and
    # each sub-step is clamped at the first wall boundary or block face its leading edge meets,
    # so a body can neither slip past a corner it overlaps nor tunnel through a wall.
    def free(self, p: np.ndarray) -> np.ndarray:
        """Whether points (..., 2) lie in a free cell."""
        idx = np.floor(p + 0.5).astype(int) - self.offset
        inside = (idx >= 0).all(-1) & (idx[..., 0] < self.grid.shape[0]) & (idx[..., 1] < self.grid.shape[1])
        idx = np.clip(idx, 0, np.array(self.grid.shape) - 1)
        return inside & self.grid[idx[..., 0], idx[..., 1]]

    def _cell_free(self, i: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
        """Whether the cell at index i along axis k and j along the other axis is free."""
        x, y = (i, j) if k == 0 else (j, i)
        gx, gy = x - self.offset[0], y - self.offset[1]
        inside = (gx >= 0) & (gy >= 0) & (gx < self.grid.shape[0]) & (gy < self.grid.shape[1])
        return inside & self.grid[np.clip(gx, 0, self.grid.shape[0] - 1), np.clip(gy, 0, self.grid.shape[1] - 1)]

    def wall_room(self, centre: np.ndarray, half: float, k: int, step: np.ndarray) -> np.ndarray:
        """How far (signed, |.| <= |step| <= SUBSTEP) a square of half-width ``half`` at
        ``centre`` (n, 2) can move along axis k before touching a wall cell."""
        s = np.sign(step)
        lead = centre[:, k] + s * half
        # the next cell boundary (k + 0.5) at or beyond the leading edge, in the direction of motion
        bound = np.where(s > 0, np.ceil(lead - 0.5 - TOL) + 0.5, np.floor(lead + 0.5 + TOL) - 0.5)
        crosses = s * (lead + step - bound) > 0
        cell = np.round(bound + 0.5 * s).astype(int)
        p = centre[:, 1 - k]
        lo = np.floor(p - half + 0.5 + TOL).astype(int)
        hi = np.floor(p + half + 0.5 - TOL).astype(int)  # at most two cells across (half <= 0.5)
        blocked = crosses & ~(self._cell_free(cell, lo, k) & self._cell_free(cell, hi, k))
        return np.where(blocked, bound - lead, step)

    def move(self, action: np.ndarray) -> None:
        d = self.speed * np.clip(action, -1.0, 1.0)
        n_sub = max(1, int(np.ceil(np.abs(d).max() / SUBSTEP - 1e-9)))
        for _ in range(n_sub):
            for k in (0, 1):  # axis by axis: a body slides along the walls it touches
                want = self.wall_room(self.pos, self.radius, k, d[:, k] / n_sub)
                if self.has_block:
                    want = self._push(k, want)
                self.pos[:, k] += want

    def _push(self, k: int, want: np.ndarray) -> np.ndarray:
        """The body's move along axis k given the block: it moves freely up to the block's
        face, then pushes the block as far as the block's own walls allow, and stops there."""
        s = np.sign(want)
        lead = self.pos[:, k] + s * self.radius
        gap = s * (self.block[:, k] - s * 0.5 - lead)          # distance to the near face
        overlap = np.abs(self.pos[:, 1 - k] - self.block[:, 1 - k]) < self.radius + 0.5 - TOL
        contact = (s != 0) & overlap & (gap > -TOL) & (np.abs(want) > gap)
        gap = np.maximum(gap, 0.0)
        rest = np.where(contact, want - s * gap, 0.0)
        pushed = self.wall_room(self.block, 0.5, k, rest)
        self.block[:, k] += np.where(contact, pushed, 0.0)
        return np.where(contact, s * gap + pushed, want)

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
    """``point_maze`` / ``point_push`` (cpu); ``ant_maze`` / ``ant_push`` / ``ant_fall`` (the
    full profile, App. B: rllab Ant with gear 30, dt 0.02 x frame skip 5; ``papers.hiro.ant``)
    need the optional dependency MuJoCo and raise, naming it, without it."""
    if name.startswith("point_"):
        return PointMassNav(name[len("point_"):], num_envs, speed=speed, horizon=horizon,
                            evaluation=evaluation, generator=generator)
    if name in ("ant_maze", "ant_push", "ant_fall"):
        from papers.hiro import ant  # imports mujoco, or raises naming `pip install mujoco`

        return ant.AntNav(name[len("ant_"):], num_envs, horizon=horizon, evaluation=evaluation,
                          generator=generator)
    raise ReproError(f"unknown environment {name!r}; known: point_maze, point_push, "
                     f"ant_maze, ant_push, ant_fall")
