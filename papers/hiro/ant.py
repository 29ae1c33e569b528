"""HIRO's Ant Maze, Ant Push and Ant Fall (Nachum et al. 2018, App. B) in MuJoCo, for
the full profile.  Needs the optional dependency ``mujoco`` (``pip install mujoco``, or
the hub's ``mujoco`` extra); imported lazily so that the rest of the package works
without it.

The MJCF is generated here from App. B's block layouts:

- The Ant: rllab's / gymnasium's body (a 0.25 torso sphere; four legs of capsules
  0.2 + 0.2 + 0.4 along the diagonals, radius 0.08; hips +-30 deg, ankles 30-70 deg),
  written out below, with App. B's changes: motor gear 30 (rllab: 150), timestep 0.02
  and frame skip 5 (one env step = 0.1 s).
- Blocks of 8 x 8: walls are 8 high; the movable block (Push: at (0, 8), sliding in x and
  y; Fall: at (8, 8), sliding in y and z) is a 7.5 x 7.5 x 4 box of mass 1 (the Ant's mass is
  ~0.9; App. B gives no mass) so that the Ant can push it.  Fall raises every free cell
  on a platform 4 high and leaves the chasm [-4, 12] x [12, 20] empty; pushing the block
  into it fills the chasm flush with the platform.
- Reward: -L2 distance of the torso to the target (x, y; x, y, z in Fall); success:
  within 5 of it, read at the final step by ``common.rl.evaluate``.  Observation:
  [qpos, qvel, target, t / T] (App. B: qpos, qvel, the time step and the target).
  Maze training targets are uniform in [-4, 20]^2, evaluation at (0, 16); Push (0, 19);
  Fall (0, 27, 4.5).  Reset: the rllab pose plus uniform noise of +-0.1 on qpos and
  0.1 x standard-normal qvel (our choice; App. B does not say).
- Goals (the hierarchy's): the torso's x, y (the point-mass worlds' goal space).  The
  paper's high level proposes all 15 position coordinates; this is a deviation, kept so
  that both profiles share the HIRO code unchanged.

The sub-environments are stepped in a Python loop over ``mujoco.MjData`` (training
uses one; evaluation 50).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from registry import ReproError

GEAR, TIMESTEP, FRAME_SKIP = 30.0, 0.02, 5
SCALE, WALL_HEIGHT, BLOCK_HEIGHT, FALL_PLATFORM = 8.0, 8.0, 4.0, 4.0
BLOCK_GAP = 0.25  # the movable block is 7.5 wide, so that it slides (and falls) clear of the walls
SUCCESS_RADIUS = 5.0
TORSO_Z = 0.75
INIT_JOINTS = (0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)

# cells in units of blocks (x, y); "wall" are drawn around the free cells' bounding box
WORLDS = {
    "maze": dict(free=[(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2)], block=None, chasm=[],
                 eval_target=(0.0, 16.0), train_targets=((-4.0, -4.0), (20.0, 20.0))),
    "push": dict(free=[(0, 0), (-1, 0), (-1, 1), (0, 1), (1, 1), (2, 1), (0, 2)], block=((0, 1), "xy"),
                 chasm=[], eval_target=(0.0, 19.0), train_targets=None),
    "fall": dict(free=[(0, 0), (1, 0), (0, 1), (1, 1), (0, 3), (1, 3)], block=((1, 1), "yz"),
                 chasm=[(0, 2), (1, 2)], eval_target=(0.0, 27.0, 4.5), train_targets=None),
}


def _leg(name: str, sx: int, sy: int, hip: int, ankle_range: str) -> str:
    ax = "-1 1 0" if sx * sy > 0 else "1 1 0"
    return f"""
      <body name="{name}_leg" pos="0 0 0">
        <geom fromto="0 0 0 {0.2 * sx} {0.2 * sy} 0" size="0.08" type="capsule"/>
        <body pos="{0.2 * sx} {0.2 * sy} 0">
          <joint name="hip_{hip}" type="hinge" axis="0 0 1" range="-30 30"/>
          <geom fromto="0 0 0 {0.2 * sx} {0.2 * sy} 0" size="0.08" type="capsule"/>
          <body pos="{0.2 * sx} {0.2 * sy} 0">
            <joint name="ankle_{hip}" type="hinge" axis="{ax}" range="{ankle_range}"/>
            <geom fromto="0 0 0 {0.4 * sx} {0.4 * sy} 0" size="0.08" type="capsule"/>
          </body>
        </body>
      </body>"""


def world_xml(world: str) -> str:
    """The MJCF of one App. B world with the Ant at its start."""
    spec = WORLDS[world]
    free = set(map(tuple, spec["free"]))
    chasm = set(map(tuple, spec["chasm"]))
    block_cell = spec["block"][0] if spec["block"] else None
    cells = free | chasm
    xs, ys = [c[0] for c in cells], [c[1] for c in cells]
    base = FALL_PLATFORM if world == "fall" else 0.0
    h = SCALE / 2
    geoms = []
    for i in range(min(xs) - 1, max(xs) + 2):
        for j in range(min(ys) - 1, max(ys) + 2):
            x, y = i * SCALE, j * SCALE
            if (i, j) in chasm:
                continue
            if (i, j) in free:
                if base > 0:
                    geoms.append(f'<geom name="platform_{i}_{j}" type="box" pos="{x} {y} {base / 2}" '
                                 f'size="{h} {h} {base / 2}" rgba="0.6 0.6 0.6 1" conaffinity="1"/>')
                continue
            top = base + WALL_HEIGHT
            geoms.append(f'<geom name="wall_{i}_{j}" type="box" pos="{x} {y} {top / 2}" size="{h} {h} {top / 2}" '
                         f'rgba="0.4 0.4 0.4 1" conaffinity="1"/>')
    block = ""
    if block_cell is not None:
        (bi, bj), axes = spec["block"]
        joints = "".join(f'<joint name="block_{a}" type="slide" axis="{"1 0 0" if a == "x" else "0 1 0" if a == "y" else "0 0 1"}" '
                         f'damping="1" limited="false"/>' for a in axes)
        block = (f'<body name="block" pos="{bi * SCALE} {bj * SCALE} {base + BLOCK_HEIGHT / 2}">{joints}'
                 f'<geom name="block_geom" type="box" size="{h - BLOCK_GAP} {h - BLOCK_GAP} {BLOCK_HEIGHT / 2}" '
                 f'mass="1" margin="0" '
                 f'rgba="0.8 0.4 0.1 1" conaffinity="1" contype="1"/></body>')
    legs = (_leg("front_left", 1, 1, 1, "30 70") + _leg("front_right", -1, 1, 2, "-70 -30")
            + _leg("back_left", -1, -1, 3, "-70 -30") + _leg("back_right", 1, -1, 4, "30 70"))
    motors = "".join(f'<motor joint="{j}_{k}" gear="{GEAR}" ctrllimited="true" ctrlrange="-1 1"/>'
                     for k in (4, 1, 2, 3) for j in ("hip", "ankle"))
    return f"""<mujoco model="hiro_ant_{world}">
  <compiler angle="degree" coordinate="local" inertiafromgeom="true"/>
  <option timestep="{TIMESTEP}" integrator="RK4"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom conaffinity="0" condim="3" density="5.0" friction="1 0.5 0.5" margin="0.01" rgba="0.8 0.6 0.4 1"/>
  </default>
  <worldbody>
    <light directional="true" pos="0 0 30" dir="0 0 -1"/>
    <geom name="floor" type="plane" pos="0 0 0" size="60 60 1" conaffinity="1" rgba="0.8 0.9 0.8 1"/>
    {"".join(geoms)}
    {block}
    <body name="torso" pos="0 0 {base + TORSO_Z}">
      <geom name="torso_geom" type="sphere" size="0.25"/>
      <joint name="root" type="free" armature="0" damping="0" limited="false"/>{legs}
    </body>
  </worldbody>
  <actuator>{motors}</actuator>
</mujoco>"""


def _mujoco():
    try:
        import mujoco
    except ImportError as e:
        raise ReproError("the Ant worlds (HIRO's full profile) need MuJoCo: `pip install mujoco` "
                         "(or the hub's extra: `pip install -e .[mujoco]`)") from e
    return mujoco


class AntNav(gym.vector.VectorEnv):
    """``num_envs`` Ants in one App. B world; the interface of ``envs.PointMassNav``."""

    def __init__(self, world: str, num_envs: int, horizon: int = 500, evaluation: bool = False,
                 generator: torch.Generator | None = None):
        if world not in WORLDS:
            raise ReproError(f"unknown Ant world {world!r}; choose from {sorted(WORLDS)}")
        mj = _mujoco()
        self.mj, self.world, self.num_envs, self.horizon, self.evaluation = mj, world, num_envs, horizon, evaluation
        self.spec = WORLDS[world]
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.model = mj.MjModel.from_xml_string(world_xml(world))
        self.datas = [mj.MjData(self.model) for _ in range(num_envs)]
        self.frame_skip = FRAME_SKIP
        self.dt = self.model.opt.timestep * FRAME_SKIP
        self.torso = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_BODY, "torso")
        self.target_dim = len(self.spec["eval_target"])
        self.nq, self.nv = self.model.nq, self.model.nv
        self.obs_dim = self.nq + self.nv + self.target_dim + 1
        self.root_q = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_JOINT, "root")
        self.q0 = self.model.qpos0.copy()
        adr = self.model.jnt_qposadr[self.root_q]
        self.root_adr = adr
        self.q0[adr + 7: adr + 15] = INIT_JOINTS
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": None}
        self.success_radius = SUCCESS_RADIUS
        self.target = np.tile(np.array(self.spec["eval_target"]), (num_envs, 1))
        self.t = 0

    def torso_pos(self) -> np.ndarray:
        return np.stack([d.xpos[self.torso] for d in self.datas])

    def _obs(self) -> np.ndarray:
        q = np.stack([d.qpos for d in self.datas])
        v = np.stack([d.qvel for d in self.datas])
        return np.concatenate([q, v, self.target, np.full((self.num_envs, 1), self.t / self.horizon)],
                              1).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.t = 0
        n = self.num_envs
        u = torch.rand((n, self.nq), generator=self.generator, dtype=torch.float64).numpy()
        z = torch.randn((n, self.nv), generator=self.generator, dtype=torch.float64).numpy()
        for d, ui, zi in zip(self.datas, u, z):
            self.mj.mj_resetData(self.model, d)
            d.qpos[:] = self.q0 + 0.1 * (2 * ui - 1) * self._noise_mask()
            d.qvel[:] = 0.1 * zi
            self.mj.mj_forward(self.model, d)
        if self.evaluation or self.spec["train_targets"] is None:
            self.target = np.tile(np.array(self.spec["eval_target"]), (n, 1))
        else:
            lo, hi = (np.array(v) for v in self.spec["train_targets"])
            r = torch.rand((n, 2), generator=self.generator, dtype=torch.float64).numpy()
            self.target = lo + r * (hi - lo)
        return self._obs(), {}

    def _noise_mask(self) -> np.ndarray:
        """Reset noise on the Ant's own coordinates only, not on the block's."""
        m = np.zeros(self.nq)
        m[self.root_adr: self.root_adr + 15] = 1.0
        return m

    def step(self, actions):
        a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        for d, ai in zip(self.datas, a):
            d.ctrl[:] = ai
            self.mj.mj_step(self.model, d, nstep=self.frame_skip)
        self.t += 1
        pos = self.torso_pos()[:, : self.target_dim]
        dist = np.linalg.norm(pos - self.target, axis=1)
        info = {"success": dist <= self.success_radius, "distance": dist}
        zeros = np.zeros(self.num_envs, dtype=bool)
        return self._obs(), (-dist).astype(np.float32), zeros, zeros.copy(), info

    # ---- what the hierarchy needs from the observation
    def goal_part(self, obs):
        """The torso's x, y (qpos[0:2] of the free root joint)."""
        a = self.root_adr
        return obs[..., a: a + 2]

    def low_features(self, obs):
        """Everything of qpos and qvel but the torso's x, y (official ZERO_OBS); not the
        target nor the time."""
        a = self.root_adr
        return torch.cat([obs[..., :a], obs[..., a + 2: self.nq + self.nv]], -1) if torch.is_tensor(obs) else \
            np.concatenate([obs[..., :a], obs[..., a + 2: self.nq + self.nv]], -1)
