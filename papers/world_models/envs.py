"""Environments for world_models_doom, all with the gymnasium vector API
(``reset(seed=...) -> obs, info``; ``step(actions) -> obs, reward, terminated,
truncated, info``), so ``rollout`` runs the same controller code in the dream and in
the real game.

* ``DoomTakeCover``: one VizDoom "take_cover" game (vizdoom's own take_cover.cfg),
  no window, 160x120 RGB, the HUD cropped off (the reference crops 400 of 480 rows),
  resized to 64x64 uint8; one step per game tic (no frame skip), reward 1 per step
  survived, truncated at 2100 steps (the paper's cap); action in [-1, 1] thresholded
  at +-1/3 into left / none / right as the reference's wrapper.
* ``RealLatentEnv``: a batch of those games run in lockstep; each frame is encoded
  by V (the posterior mean) and M's LSTM state is advanced with (z_t, a_t), so the
  observation is [z_t, c_t, h_t] exactly as in the dream.
* ``DreamEnv``: M alone ("DoomRNN"): z_0 drawn from V's posterior of real first
  frames, z_{t+1} sampled from M's mixture at temperature tau (per row), done when
  M's done logit > 0 (the reference; ``done_mode="sample"``: death drawn with M's
  probability, the done weighting undone), reward 1 per step alive, truncated at ``max_steps``.  Rows that
  are done stay done (no auto-reset); each step runs M once on the rows still alive.

Worker processes (``parallel_map``) run random-policy collection and real-game
evaluation, each worker owning its own games.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import gymnasium as gym
import numpy as np
import torch

from papers.world_models import method as M
from registry import ReproError

MAX_STEPS = 2100


def _resize64(frame: np.ndarray) -> np.ndarray:
    from PIL import Image

    h = frame.shape[0] * 400 // 480  # drop the HUD strip at the bottom, as the reference
    return np.asarray(Image.fromarray(frame[:h]).resize((64, 64), Image.BILINEAR))


class DoomTakeCover(gym.Env):
    """VizDoom take_cover as a gymnasium Env with 64x64x3 uint8 observations."""

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = MAX_STEPS):
        import vizdoom as vzd

        self.game = vzd.DoomGame()
        self.game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        # vizdoom writes its ini into the working directory otherwise (a tracked file here)
        self.game.set_doom_config_path(os.path.join(tempfile.gettempdir(), f"_vizdoom_{os.getpid()}.ini"))
        self.game.set_window_visible(False)
        self.game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
        self.game.set_screen_format(vzd.ScreenFormat.RGB24)
        self.game.set_mode(vzd.Mode.PLAYER)
        self.game.init()
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0
        self.frame = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.set_seed(int(seed) % (2**31))
        self.game.new_episode()
        self.t = 0
        self.frame = _resize64(self.game.get_state().screen_buffer)
        return self.frame, {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        self.game.make_action(M.doom_buttons(a))
        reward = 1.0  # the score is the number of steps survived
        self.t += 1
        terminated = self.game.is_episode_finished()
        if not terminated:
            self.frame = _resize64(self.game.get_state().screen_buffer)
        truncated = (not terminated) and self.t >= self.max_steps
        return self.frame, reward, terminated, truncated, {}

    def close(self):
        self.game.close()


class _LatentState:
    """obs = [z, c, h] for a batch, with M's LSTM state."""

    @staticmethod
    def obs(z, state, hidden):
        if state is None:
            zeros = torch.zeros(z.shape[0], 2 * hidden)
            return torch.cat([z, zeros], -1)
        h, c = state
        return torch.cat([z, c[0], h[0]], -1)


class DreamEnv(gym.vector.VectorEnv):
    """M as a batched environment ("DoomRNN"); see the module docstring."""

    def __init__(self, mdn: M.MDNRNN, init_mu: torch.Tensor, init_logvar: torch.Tensor, tau,
                 num_envs: int, max_steps: int = MAX_STEPS, generator: torch.Generator | None = None,
                 done_mode: str = "threshold", done_factor: float = 10.0):
        self.mdn, self.num_envs, self.max_steps = mdn, num_envs, max_steps
        self.done_mode, self.done_factor = done_mode, done_factor
        self.init_mu, self.init_logvar = init_mu, init_logvar
        self.tau = torch.as_tensor(tau, dtype=torch.float32).expand(num_envs).clone()
        self.generator = generator
        d = mdn.z_dim + 2 * mdn.hidden
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (mdn.action_dim,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (num_envs, d), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (num_envs, mdn.action_dim), np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))
        B, H = self.num_envs, self.mdn.hidden
        idx = torch.randint(len(self.init_mu), (B,), generator=self.generator)
        eps = torch.randn((B, self.mdn.z_dim), generator=self.generator)
        self.z = self.init_mu[idx] + torch.exp(0.5 * self.init_logvar[idx]) * eps
        self.h, self.c = torch.zeros(B, H), torch.zeros(B, H)
        self.done = torch.zeros(B, dtype=torch.bool)
        self.t = 0
        return self.observation(), {}

    def observation(self):
        return torch.cat([self.z, self.c, self.h], -1)

    @torch.no_grad()
    def step(self, actions):
        a = torch.as_tensor(actions, dtype=torch.float32).reshape(self.num_envs, -1)
        alive = (~self.done).nonzero()[:, 0]
        reward = (~self.done).float()
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        if len(alive):
            state = (self.h[alive][None], self.c[alive][None])
            (logmix, mean, logstd, done_logit), (h, c) = self.mdn.step(self.z[alive], a[alive], state)
            self.z[alive] = M.sample_next_z(logmix, mean, logstd, self.tau[alive], self.generator)
            self.h[alive], self.c[alive] = h[0], c[0]
            if done_logit is not None:
                if self.done_mode == "threshold":
                    terminated[alive] = done_logit > 0
                else:
                    p = M.done_probability(done_logit, self.done_factor)
                    terminated[alive] = torch.rand(p.shape, generator=self.generator) < p
        self.t += 1
        truncated = (~self.done) & ~terminated & (self.t >= self.max_steps)
        self.done |= terminated | truncated
        return self.observation(), reward, terminated, truncated, {}


class RealLatentEnv(gym.vector.VectorEnv):
    """``num_envs`` DoomTakeCover games in lockstep, observed through V and M."""

    def __init__(self, vae: M.ConvVAE, mdn: M.MDNRNN, num_envs: int, max_steps: int = MAX_STEPS,
                 games: list | None = None):
        self.vae, self.mdn, self.num_envs, self.max_steps = vae, mdn, num_envs, max_steps
        self.games = games if games is not None else [DoomTakeCover(max_steps) for _ in range(num_envs)]
        self.owns_games = games is None
        d = mdn.z_dim + 2 * mdn.hidden
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (d,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (mdn.action_dim,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (num_envs, d), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (num_envs, mdn.action_dim), np.float32)

    @torch.no_grad()
    def _encode(self, frames):
        return self.vae.encode(M.frames_to_tensor(np.stack(frames)))[0]

    def reset(self, *, seed=None, options=None):
        seeds = options.get("seeds") if options else None
        if seeds is None:
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        frames = [g.reset(seed=s)[0] for g, s in zip(self.games, seeds)]
        B, H = self.num_envs, self.mdn.hidden
        self.z = self._encode(frames)
        self.h, self.c = torch.zeros(B, H), torch.zeros(B, H)
        self.done = torch.zeros(B, dtype=torch.bool)
        return self.observation(), {}

    def observation(self):
        return torch.cat([self.z, self.c, self.h], -1)

    @torch.no_grad()
    def step(self, actions):
        a = torch.as_tensor(actions, dtype=torch.float32).reshape(self.num_envs, -1)
        alive = (~self.done).nonzero()[:, 0]
        reward = (~self.done).float()
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        truncated = torch.zeros(self.num_envs, dtype=torch.bool)
        if len(alive):
            _, (h, c) = self.mdn.step(self.z[alive], a[alive], (self.h[alive][None], self.c[alive][None]))
            self.h[alive], self.c[alive] = h[0], c[0]
            frames, still = [], []
            for i in alive.tolist():
                frame, _, term, trunc, _ = self.games[i].step(a[i].numpy())
                terminated[i], truncated[i] = term, trunc
                if not term:
                    frames.append(frame)
                    still.append(i)
            if still:
                self.z[still] = self._encode(frames)
        self.done |= terminated | truncated
        return self.observation(), reward, terminated, truncated, {}

    def close(self, **kwargs):
        if self.owns_games:
            for g in self.games:
                g.close()


@torch.no_grad()
def rollout(env, policy, seed=None, options=None, max_steps: int = MAX_STEPS) -> torch.Tensor:
    """Run a batched env until every row is done; ``policy(obs) -> actions (B, A)``.
    Returns each row's return.  The same function serves the dream and the game."""
    obs, _ = env.reset(seed=seed, options=options)
    total = torch.zeros(env.num_envs)
    done = torch.zeros(env.num_envs, dtype=torch.bool)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += torch.as_tensor(reward)
        done |= torch.as_tensor(terminated) | torch.as_tensor(truncated)
        if bool(done.all()):
            break
    return total


# ----------------------------------------------------------------------------- workers
def parallel_map(fn, jobs: list, workers: int, progress=None):
    """``[fn(job) for job in jobs]`` in ``workers`` forked processes (one thread
    each), in order; ``progress`` wraps the iterator (a tqdm bar).

    A worker that dies (a VizDoom segfault, the OOM killer) raises ``ReproError``
    instead of leaving the run waiting: ``multiprocessing.Pool`` replaces a dead worker
    and waits forever for the job it lost, ``ProcessPoolExecutor`` marks itself broken."""
    wrap = progress or (lambda it, **kw: it)
    if workers <= 1:
        return [fn(j) for j in wrap(jobs, total=len(jobs))]
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_worker_init)
    try:
        out = list(wrap(pool.map(fn, jobs), total=len(jobs)))
    except BrokenProcessPool as exc:
        pool.shutdown(wait=True, cancel_futures=True)
        raise ReproError(f"a worker process of {getattr(fn, '__name__', fn)} died ({exc}); "
                         f"the run stops here and --resume continues from its last checkpoint") from None
    except BaseException:  # Ctrl-C or a job's own error: stop the other workers now
        for proc in list((pool._processes or {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)  # workers return and run their finalizers (closing the games)
    return out


def _worker_init():
    from multiprocessing import util

    torch.set_num_threads(1)
    util.Finalize(None, close_games, exitpriority=10)


def close_games():
    """Close this process's cached games (each game runs a vizdoom child process)."""
    for key in [k for k in _GAMES if k[0] == os.getpid()]:
        for game in _GAMES.pop(key):
            game.close()


_GAMES: dict = {}


def _worker_games(n: int, max_steps: int) -> list:
    """``n`` games of this process with this cap, started once and reused across
    episodes and jobs (starting a game costs more than a random episode)."""
    games = _GAMES.setdefault((os.getpid(), max_steps), [])
    while len(games) < n:
        games.append(DoomTakeCover(max_steps))
    return games[:n]


def random_episode(job: dict) -> dict:
    """One random-policy episode (the reference's "more diverse" policy: a uniform
    action in [-1, 1] held for 1-10 steps), written to ``job['path']`` as npz (uint8
    frames, float32 actions); returns its length.  Skipped if the file exists."""
    path = job["path"]
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                return {"length": int(len(f["action"])), "terminated": bool(f["terminated"])}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # not written by us (ours are atomic): play the episode again
    rng = np.random.default_rng(job["seed"])
    env = _worker_games(1, job.get("max_steps", MAX_STEPS))[0]
    frame, _ = env.reset(seed=job["seed"])
    frames, actions = [frame], []
    repeat, a = 0, 0.0
    term = trunc = False
    while True:
        if repeat == 0:
            a = float(rng.uniform(-1, 1))
            repeat = int(rng.integers(1, 11))
        repeat -= 1
        frame, _, term, trunc, _ = env.step(a)
        actions.append(a)
        if term or trunc:
            break
        frames.append(frame)
    frames = np.stack(frames[:len(actions)]).astype(np.uint8)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, frames=frames, action=np.asarray(actions, np.float32), terminated=term)
    os.replace(tmp, path)
    return {"length": len(actions), "terminated": bool(term)}


def evaluate_episodes(job: dict) -> list[float]:
    """Real-game returns of one controller over ``job['seeds']`` (one batch of games in
    lockstep), with V and M rebuilt from their state dicts in this worker."""
    torch.set_num_threads(1)
    vae = M.ConvVAE(**job["vae_args"])
    vae.load_state_dict(job["vae_state"])
    mdn = M.MDNRNN(**job["mdn_args"])
    mdn.load_state_dict(job["mdn_state"])
    vae.eval(), mdn.eval()
    cap = job.get("max_steps", MAX_STEPS)
    env = RealLatentEnv(vae, mdn, len(job["seeds"]), cap, games=_worker_games(len(job["seeds"]), cap))
    if job["kind"] == "random":  # the paper's random baseline: a uniform action every step
        gen = torch.Generator().manual_seed(int(job["seeds"][0]))

        def policy(obs):
            return torch.rand((obs.shape[0], 1), generator=gen) * 2 - 1
    else:
        params = torch.as_tensor(job["params"], dtype=torch.float32)[None]

        def policy(obs):
            return M.controller_actions(job["kind"], params, obs[None], mdn.z_dim)[0]

    returns = rollout(env, policy, options={"seeds": job["seeds"]}, max_steps=job.get("max_steps", MAX_STEPS))
    env.close()
    return returns.tolist()
