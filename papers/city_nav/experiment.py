"""citynav_proccity: the courier task of Mirowski et al. (NeurIPS 2018) on ProcCity, a
procedural stand-in for StreetLearn's Street View graphs.

Stages (each a resumable training run; a killed run resumes from its last chunk):

1. courier agents on one city per seed: GoalNav, CityNav (heading auxiliary head),
   CityNav without the auxiliary loss, CityNav with lat/long goals instead of landmark
   goals, and CityNav trained on long goals from the start with neither curriculum nor
   early reward shaping.  Each is evaluated on full-range goals (the whole city).
   A sixth agent, CityNav without the skip connection from the conv torso into the
   policy LSTM (the policy then sees the image only through the goal pathway's
   bottleneck), is the skip ablation.
2. transfer: for each k in ``pretrain_counts``, MultiCityNav pre-trained on the first k
   of the other cities (the same total number of agent steps for every k, split over
   the k cities), then a fresh goal pathway trained on one held-out city (the same for
   every k) with the shared torso and policy LSTM frozen; against CityNav trained on
   that city from scratch; area under the learning curve.

Every agent is trained by IMPALA's actor-critic loss with V-trace
(``common.rl.vtrace``) from ``num_envs`` in-process environments (``env.CourierVecEnv``).
"""

from __future__ import annotations

import math
import time

import gin
import numpy as np
import torch

from common.context import RunContext
from common.rl.vtrace import actor_critic_loss
from papers.city_nav import city as C
from papers.city_nav import figures
from papers.city_nav import method as M
from papers.city_nav.env import CourierVecEnv
from registry import Paper, register

PAPER = Paper(
    title="Learning to navigate in cities without a map",
    authors="Piotr Mirowski, Matthew Koichi Grimes, Mateusz Malinowski, Karl Moritz Hermann, Keith Anderson, "
            "Denis Teplyashin, Karen Simonyan, Koray Kavukcuoglu, Andrew Zisserman and Raia Hadsell",
    venue="NeurIPS 2018", arxiv="1804.00168", code="https://github.com/google-deepmind/streetlearn")


@gin.configurable(module="city_nav")
def world(blocks=12, block_m=70.0, landmarks=16, view=84, city_seed=1000):
    """ProcCity size (blocks x blocks of ``block_m``, nodes ~10 m apart), landmarks,
    view size (StreetLearn trains on 84x84); city ``city_seed + 10 k + seed`` is the
    k-th city of run ``seed``."""
    return dict(blocks=blocks, block_m=block_m, landmarks=landmarks, view=view, city_seed=city_seed)


@gin.configurable(module="city_nav")
def task(num_envs=32, episode_steps=1000, goal_radius_m=100.0, shaping_radius_m=200.0, reward_per_node=0.1,
         curriculum_start_m=500.0, curriculum_fraction=0.5, temperature_m=100.0):
    """StreetLearn's courier task; the curriculum anneals the maximum goal distance
    linearly from ``curriculum_start_m`` to the city's whole extent over the first
    ``curriculum_fraction`` of training (StreetLearn: 500 m -> 3.5 km)."""
    return dict(num_envs=num_envs, episode_steps=episode_steps, goal_radius_m=goal_radius_m,
                shaping_radius_m=shaping_radius_m, reward_per_node=reward_per_node,
                curriculum_start_m=curriculum_start_m, curriculum_fraction=curriculum_fraction,
                temperature_m=temperature_m)


@gin.configurable(module="city_nav")
def agent(hidden=256, lstm=256, goal_lstm=256, bottleneck=64, dropout=0.5):
    """Network widths (StreetLearn's defaults)."""
    return dict(hidden=hidden, lstm=lstm, goal_lstm=goal_lstm, bottleneck=bottleneck, dropout=dropout)


@gin.configurable(module="city_nav")
def learn(frames=10_000_000, unroll=50, lr=3e-4, gamma=0.99, baseline_cost=0.5, entropy_cost=0.01,
          aux_cost=1.0, grad_clip=40.0, chunks=20, eval_episodes=2):
    """IMPALA-style learner (unroll length, Adam, V-trace with rho = c = 1 truncation);
    ``chunks``: checkpoints (and learning-curve points) per training run."""
    return dict(frames=frames, unroll=unroll, lr=lr, gamma=gamma, baseline_cost=baseline_cost,
                entropy_cost=entropy_cost, aux_cost=aux_cost, grad_clip=grad_clip, chunks=chunks,
                eval_episodes=eval_episodes)


@gin.configurable(module="city_nav")
def plan(variants=("goalnav", "citynav", "citynav_noaux", "citynav_latlong", "citynav_noshaping", "citynav_noskip"),
         transfer=True, pretrain_counts=(1, 2, 4), pretrain_frames=None, transfer_frames=None):
    """Which stages run; ``pretrain_counts``: the numbers of pre-training cities for the
    transfer stage (each pre-training run has ``pretrain_frames`` agent steps in total,
    whatever its number of cities); frames default to ``learn.frames``."""
    return dict(variants=tuple(variants), transfer=transfer, pretrain_counts=tuple(pretrain_counts),
                pretrain_frames=pretrain_frames, transfer_frames=transfer_frames)


VARIANTS = {  # agent, goal descriptor, heading aux loss, curriculum + shaping, skip connection
    "goalnav": ("goalnav", "landmarks", False, True, False),
    "citynav": ("citynav", "landmarks", True, True, True),
    "citynav_noaux": ("citynav", "landmarks", False, True, True),
    "citynav_latlong": ("citynav", "latlong", True, True, True),
    "citynav_noshaping": ("citynav", "landmarks", True, False, True),
    "citynav_noskip": ("citynav", "landmarks", True, True, False),
}


# ------------------------------------------------------------------ cities and environments
def build_city(wcfg: dict, seed: int):
    c = C.make_city(seed, blocks=wcfg["blocks"], block_m=wcfg["block_m"], landmarks=wcfg["landmarks"])
    return c, C.render_cache(c, size=wcfg["view"])


class MultiEnv:
    """Several cities' environments stepped as one batch (contiguous slices per city)."""

    def __init__(self, envs):
        self.envs = envs
        self.sizes = [e.num_envs for e in envs]
        self.num_envs = sum(self.sizes)
        self.city_index = torch.cat([torch.full((n,), i) for i, n in enumerate(self.sizes)])

    def _cat(self, parts):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def reset(self):
        return self._cat([e.reset()[0] for e in self.envs])

    def observe(self):
        return self._cat([e.observe() for e in self.envs])

    def step(self, actions):
        out, s = [], 0
        for e, n in zip(self.envs, self.sizes):
            out.append(e.step(actions[s:s + n]))
            s += n
        obs = self._cat([o[0] for o in out])
        cat = lambda i: np.concatenate([o[i] for o in out])  # noqa: E731
        info = self._cat([o[4] for o in out])
        return obs, cat(1), cat(2), cat(3), info

    def set_max_goal(self, m):
        for e in self.envs:
            e.set_max_goal(m)

    def state_dict(self):
        return {str(i): e.state_dict() for i, e in enumerate(self.envs)}

    def load_state_dict(self, s):
        for i, e in enumerate(self.envs):
            e.load_state_dict(s[str(i)])


def make_env(cities, tcfg, goal, shaping, num_envs, seed, pathway_ids=None):
    per = num_envs // len(cities)
    envs = [CourierVecEnv(c, cache, num_envs=per, seed=seed + 7919 * i, goal=goal,
                          goal_radius_m=tcfg["goal_radius_m"], shaping_radius_m=tcfg["shaping_radius_m"],
                          shaping=shaping, reward_per_node=tcfg["reward_per_node"],
                          episode_steps=tcfg["episode_steps"], temperature_m=tcfg["temperature_m"])
            for i, (c, cache) in enumerate(cities)]
    env = MultiEnv(envs)
    if pathway_ids is not None:
        env.city_index = torch.cat([torch.full((n,), p) for p, n in zip(pathway_ids, env.sizes)])
    return env


def curriculum(frac: float, tcfg: dict, extent: float, on: bool) -> float:
    if not on:
        return extent
    a = min(1.0, frac / max(tcfg["curriculum_fraction"], 1e-9))
    return tcfg["curriculum_start_m"] + a * (extent - tcfg["curriculum_start_m"])


# ------------------------------------------------------------------ acting and learning
def _t(obs):
    return (torch.from_numpy(obs["view"]), torch.from_numpy(obs["goal"]), torch.from_numpy(obs["heading"]))


@torch.no_grad()
def act(model, obs, core, prev_a, prev_r, start, city, gen):
    view, goal, _ = _t(obs)
    feats = model.torso(view)
    logits, value, _, core = model.unroll(feats[None], goal[None], prev_a[None], prev_r[None], start[None],
                                          core, city)
    probs = torch.softmax(logits[0], -1)
    a = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return a, torch.log(probs.gather(1, a[:, None]).squeeze(1)), core


def rollout(model, env, s, T, gen):
    """T steps of every environment with the current weights; ``s`` carries the actor's
    observation, recurrent state, previous action / reward and episode statistics."""
    buf = {k: [] for k in ("view", "goal", "heading", "prev_a", "prev_r", "start", "action", "logp",
                           "reward", "done")}
    core0 = s["core"]
    for _ in range(T):
        view, goal, heading = _t(s["obs"])
        a, logp, s["core"] = act(model, s["obs"], s["core"], s["prev_a"], s["prev_r"], s["start"],
                                 s["city"], gen)
        for k, v in (("view", view), ("goal", goal), ("heading", heading), ("prev_a", s["prev_a"]),
                     ("prev_r", s["prev_r"]), ("start", s["start"]), ("action", a), ("logp", logp)):
            buf[k].append(v)
        obs, r, term, trunc, info = env.step(a.numpy())
        done = term | trunc
        buf["reward"].append(torch.from_numpy(r))
        buf["done"].append(torch.from_numpy(done))
        s["ep_return"] += r
        s["ep_goals"] += info["goal_reached"]
        for i in np.flatnonzero(done):
            s["finished"].append((float(s["ep_return"][i]), int(s["ep_goals"][i])))
        s["ep_return"][done], s["ep_goals"][done] = 0.0, 0
        s["obs"] = obs
        s["prev_a"] = torch.where(torch.from_numpy(done), 0, a)
        s["prev_r"] = torch.where(torch.from_numpy(done), 0.0, torch.from_numpy(r))
        s["start"] = torch.from_numpy(done)
        s["frames"] += env.num_envs
    batch = {k: torch.stack(v) for k, v in buf.items()}
    view, goal, heading = _t(s["obs"])  # the bootstrap step
    for k, v in (("view", view), ("goal", goal), ("prev_a", s["prev_a"]), ("prev_r", s["prev_r"]),
                 ("start", s["start"])):
        batch[k] = torch.cat([batch[k], v[None]])
    batch["core0"] = core0
    return batch


def learner_step(model, opt, batch, city, lcfg, aux: bool, params):
    T1, B = batch["view"].shape[:2]
    feats = model.torso(batch["view"].flatten(0, 1)).view(T1, B, -1)
    logits, values, heads, _ = model.unroll(feats, batch["goal"], batch["prev_a"], batch["prev_r"],
                                            batch["start"], batch["core0"], city)
    discounts = lcfg["gamma"] * (1.0 - batch["done"].float())
    loss, parts = actor_critic_loss(logits[:-1], batch["action"], values[:-1], batch["logp"], batch["reward"],
                                    discounts, values[-1].detach(), baseline_cost=lcfg["baseline_cost"],
                                    entropy_cost=lcfg["entropy_cost"])
    if aux and heads is not None:
        ce = torch.nn.functional.cross_entropy(heads[:-1].flatten(0, 1), batch["heading"].flatten(),
                                               reduction="sum")
        loss = loss + lcfg["aux_cost"] * ce
        parts["heading_acc"] = (heads[:-1].argmax(-1) == batch["heading"]).float().mean().item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, lcfg["grad_clip"])
    opt.step()
    return parts


def _core_to(core, fn):
    return {k: tuple(fn(x) for x in v) for k, v in core.items()}


def train_agent(ctx: RunContext, key: str, model, env, frames: int, lcfg: dict, tcfg: dict, extent: float,
                curriculum_on: bool, aux: bool, params=None):
    """Train ``model`` on ``env`` for ``frames`` agent steps, in ``chunks`` resumable chunks;
    returns the learning curve (frames, mean return and goals per finished episode per
    chunk) and the agent-steps-per-second of the run."""
    params = list(params if params is not None else model.parameters())
    opt = torch.optim.Adam(params, lr=lcfg["lr"])
    gen = ctx.generator(f"{key}/actions")
    B, T = env.num_envs, lcfg["unroll"]
    updates = max(1, frames // (B * T))
    chunks = min(lcfg["chunks"], updates)
    state = {"curve": [], "core": None, "prev_a": None, "prev_r": None, "start": None,
             "ep_return": None, "ep_goals": None, "frames": 0, "seconds": 0.0}
    loop = ctx.resumable(key, {"model": model, "opt": opt, "env": env, "gen": gen}, state)
    s = None
    for chunk in loop.epochs(chunks):
        t0 = time.perf_counter()
        if s is None:  # fresh start or just resumed: rebuild the actor's state
            if state["core"] is None:
                obs = env.reset()
                s = {"core": model.initial_state(B), "prev_a": torch.zeros(B, dtype=torch.long),
                     "prev_r": torch.zeros(B), "start": torch.ones(B, dtype=torch.bool),
                     "ep_return": np.zeros(B), "ep_goals": np.zeros(B, dtype=np.int64), "frames": 0}
            else:
                obs = env.observe()
                s = {"core": _core_to(state["core"], lambda x: x.clone()), "prev_a": state["prev_a"].clone(),
                     "prev_r": state["prev_r"].clone(), "start": state["start"].clone(),
                     "ep_return": state["ep_return"].numpy().copy(), "ep_goals": state["ep_goals"].numpy().copy(),
                     "frames": state["frames"]}
            s["obs"], s["city"] = obs, env.city_index
        s["finished"] = []
        model.train()
        stop = updates * (chunk + 1) // chunks
        done_updates = s["frames"] // (B * T)
        logs = []
        for _ in range(stop - done_updates):
            env.set_max_goal(curriculum(s["frames"] / frames, tcfg, extent, curriculum_on))
            batch = rollout(model, env, s, T, gen)
            logs.append(learner_step(model, opt, batch, s["city"], lcfg, aux, params))
        fin = s["finished"]
        point = {"frames": s["frames"], "max_goal_m": env.envs[0].max_goal_m,
                 "episodes": len(fin),
                 "return": float(np.mean([f[0] for f in fin])) if fin else math.nan,
                 "goals": float(np.mean([f[1] for f in fin])) if fin else math.nan}
        for k in logs[0] if logs else ():
            point[k] = float(np.mean([lg[k] for lg in logs]))
        state["curve"].append(point)
        state["seconds"] += time.perf_counter() - t0
        state.update(core=_core_to(s["core"], lambda x: x.clone()), prev_a=s["prev_a"], prev_r=s["prev_r"],
                     start=s["start"], ep_return=torch.from_numpy(s["ep_return"].copy()),
                     ep_goals=torch.from_numpy(s["ep_goals"].copy()), frames=s["frames"])
        ctx.log(f"[{key}] {s['frames']} frames: return {point['return']:.2f}, goals/episode "
                f"{point['goals']:.2f}, max goal {point['max_goal_m']:.0f} m"
                + (f", heading acc {point['heading_acc']:.2f}" if "heading_acc" in point else ""))
    return {"curve": state["curve"], "steps_per_second": state["frames"] / max(state["seconds"], 1e-9)}


@torch.no_grad()
def evaluate(model, env, episodes: int, gen, trajectories: int = 0) -> dict:
    """``episodes`` episodes of every environment with full-range goals (the policy's
    samples); goals reached and return per episode; the first envs' paths are kept."""
    model.eval()
    B = env.num_envs
    obs = env.reset()
    core = model.initial_state(B)
    prev_a, prev_r = torch.zeros(B, dtype=torch.long), torch.zeros(B)
    start = torch.ones(B, dtype=torch.bool)
    steps = env.envs[0].episode_steps * episodes
    ret, goals = np.zeros(B), np.zeros(B)
    paths = [[] for _ in range(trajectories)]
    for _ in range(steps):
        e0 = env.envs[0]
        for i in range(trajectories):
            paths[i].append((int(e0.node[i]), int(e0.goal[i])))
        a, _, core = act(model, obs, core, prev_a, prev_r, start, env.city_index, gen)
        obs, r, term, trunc, info = env.step(a.numpy())
        ret += r
        goals += info["goal_reached"]
        done = torch.from_numpy(term | trunc)
        prev_a, prev_r, start = torch.where(done, 0, a), torch.where(done, 0.0, torch.from_numpy(r)), done
    return {"goals": float(goals.mean() / episodes), "return": float(ret.mean() / episodes),
            "goals_per_env": (goals / episodes).tolist(), "paths": paths}


class RandomPolicy(torch.nn.Module):
    """Uniform actions: the floor every trained agent must beat."""

    def __init__(self):
        super().__init__()
        self.torso = lambda v: torch.zeros(len(v), 1)

    def initial_state(self, batch):
        return {}

    def unroll(self, feats, goal, prev_a, prev_r, starts, state, city=None):
        return torch.zeros(*feats.shape[:2], M.N_ACTIONS), torch.zeros(feats.shape[:2]), None, state


def new_agent(kind: str, goal_dim: int, wcfg: dict, acfg: dict, cities: int = 1, skip: bool = True):
    if kind == "goalnav":
        return M.GoalNav(goal_dim, size=wcfg["view"], **acfg)
    return M.MultiCityNav(goal_dim, cities=cities, size=wcfg["view"], skip=skip, **acfg)


def auc(curve) -> float:
    """Area under the learning curve (goals per episode vs fraction of training), by the
    trapezoid rule over the chunks (the first chunk's value also stands for frame 0)."""
    y = np.array([p["goals"] for p in curve], float)
    x = np.array([p["frames"] for p in curve], float)
    if len(y) == 0 or not np.isfinite(y).all():
        return math.nan
    x, y = np.concatenate([[0.0], x]) / x[-1], np.concatenate([[y[0]], y])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def cities_slope(counts, aucs) -> float:
    """Least-squares slope of ``aucs`` against log2 of the numbers of pre-training
    cities (AUC gained per doubling); nan with fewer than two counts."""
    x, y = np.log2(np.asarray(counts, float)), np.asarray(aucs, float)
    if len(x) < 2 or not np.isfinite(y).all():
        return math.nan
    x = x - x.mean()
    return float(np.sum(x * (y - y.mean())) / np.sum(x * x))


@register("citynav_proccity", paper=PAPER,
          figures=[figures.learning_curves, figures.trajectories, figures.views, figures.transfer_curves])
def run(ctx: RunContext) -> dict:
    """GoalNav vs CityNav (heading aux), landmark vs lat/long goals, curriculum + shaping,
    and transfer with frozen shared modules, on ProcCity (a stand-in for Street View)."""
    torch.set_grad_enabled(True)
    wcfg, tcfg, acfg, lcfg, pcfg = world(), task(), agent(), learn(), plan()
    ctx.save_json("config", {"world": wcfg, "task": tcfg, "agent": acfg, "learn": lcfg, "plan": pcfg})
    seed_city = lambda k: wcfg["city_seed"] + 10 * k + ctx.seed  # noqa: E731
    metrics, results = {}, {"cities": {}, "courier": {}, "transfer": {}}
    main_city = build_city(wcfg, seed_city(0))
    results["cities"]["courier"] = seed_city(0)
    c0 = main_city[0]
    extent = float(c0.size)
    metrics["city/nodes"] = c0.n
    metrics["city/extent_m"] = extent
    eval_seed = ctx.seed_for("eval")

    def eval_env(cities, goal, pathway_ids=None):
        return make_env(cities, tcfg, goal, True, tcfg["num_envs"], eval_seed, pathway_ids)

    # floor: a uniform random policy on full-range goals
    rnd = ctx.once("random/eval", lambda: evaluate(RandomPolicy(), eval_env([main_city], "landmarks"),
                                                   lcfg["eval_episodes"], ctx.generator("random/eval")))
    metrics["random/eval_goals"] = rnd["goals"]

    # ---- 1. courier agents on one city
    for name in pcfg["variants"]:
        kind, goal, aux, cur, skip = VARIANTS[name]
        gdim = wcfg["landmarks"] if goal == "landmarks" else 2
        torch.manual_seed(ctx.seed_for(f"{name}/init"))
        model = new_agent(kind, gdim, wcfg, acfg, skip=skip)
        env = make_env([main_city], tcfg, goal, cur, tcfg["num_envs"], ctx.seed_for(f"{name}/env"))
        tr = train_agent(ctx, name, model, env, lcfg["frames"], lcfg, tcfg, extent, cur, aux)
        ev = ctx.once(f"{name}/eval", lambda: evaluate(model, eval_env([main_city], goal), lcfg["eval_episodes"],
                                                       ctx.generator(f"{name}/eval"), trajectories=4))
        results["courier"][name] = {**tr, "eval": ev}
        metrics[f"{name}/eval_goals"] = ev["goals"]
        metrics[f"{name}/eval_return"] = ev["return"]
        metrics[f"{name}/auc"] = auc(tr["curve"])
        metrics[f"{name}/final_goals"] = tr["curve"][-1]["goals"]
        metrics[f"{name}/steps_per_second"] = tr["steps_per_second"]
        if "heading_acc" in tr["curve"][-1]:
            metrics[f"{name}/heading_acc"] = tr["curve"][-1]["heading_acc"]

    # ---- 2. transfer to a held-out city with the shared modules frozen, after
    # pre-training on k = 1, 2, 4 other cities (equal total pre-training steps)
    if pcfg["transfer"]:
        pre_frames = pcfg["pretrain_frames"] or lcfg["frames"]
        tr_frames = pcfg["transfer_frames"] or lcfg["frames"]
        counts = sorted(pcfg["pretrain_counts"])
        kmax = counts[-1]
        pool = [build_city(wcfg, seed_city(1 + i)) for i in range(kmax)]
        new = build_city(wcfg, seed_city(1 + kmax))
        results["cities"]["pretrain"] = [seed_city(1 + i) for i in range(kmax)]
        results["cities"]["new"] = seed_city(1 + kmax)
        runs = {}
        for k in counts:
            pre = pool[:k]
            torch.manual_seed(ctx.seed_for(f"multi{k}/init"))
            multi = new_agent("citynav", wcfg["landmarks"], wcfg, acfg, cities=k)
            env = make_env(pre, tcfg, "landmarks", True, tcfg["num_envs"], ctx.seed_for(f"multi{k}/env"))
            trm = train_agent(ctx, f"multi{k}/pretrain", multi, env, pre_frames, lcfg, tcfg,
                              max(c.size for c, _ in pre), True, True)
            torch.manual_seed(ctx.seed_for(f"transfer{k}/init"))
            pid = multi.add_city()
            for p in multi.shared_parameters():
                p.requires_grad_(False)
            env = make_env([new], tcfg, "landmarks", True, tcfg["num_envs"], ctx.seed_for(f"transfer{k}/env"), [pid])
            trf = train_agent(ctx, f"transfer{k}/frozen", multi, env, tr_frames, lcfg, tcfg, float(new[0].size),
                              True, True, params=multi.pathways[pid].parameters())
            runs[str(k)] = {"cities": k, "pretrain": trm, "frozen": trf}
            metrics[f"transfer/k{k}/frozen/auc"] = auc(trf["curve"])
            metrics[f"transfer/k{k}/frozen/final_goals"] = trf["curve"][-1]["goals"]
            metrics[f"transfer/k{k}/pretrain/final_goals"] = trm["curve"][-1]["goals"]
            metrics["transfer/frozen_trainable_params"] = sum(p.numel() for p in multi.pathways[pid].parameters())
        torch.manual_seed(ctx.seed_for("scratch/init"))
        scratch = new_agent("citynav", wcfg["landmarks"], wcfg, acfg)
        env = make_env([new], tcfg, "landmarks", True, tcfg["num_envs"], ctx.seed_for("scratch/env"))
        trs = train_agent(ctx, "transfer/scratch", scratch, env, tr_frames, lcfg, tcfg, float(new[0].size), True,
                          True)
        results["transfer"] = {"runs": runs, "scratch": trs}
        metrics["transfer/scratch/auc"] = auc(trs["curve"])
        metrics["transfer/scratch/final_goals"] = trs["curve"][-1]["goals"]
        metrics["transfer/scratch_trainable_params"] = sum(p.numel() for p in scratch.parameters())
        # the two-city run is the headline frozen-vs-scratch comparison (as last stop)
        ref = 2 if 2 in counts else counts[0]
        metrics["transfer/frozen/auc"] = metrics[f"transfer/k{ref}/frozen/auc"]
        metrics["transfer/frozen/final_goals"] = metrics[f"transfer/k{ref}/frozen/final_goals"]
        # least-squares slope of the held-out AUC against log2(number of pre-training cities)
        metrics["transfer/cities_slope"] = cities_slope(counts, [metrics[f"transfer/k{k}/frozen/auc"]
                                                                 for k in counts])
    ctx.save_json("results", results)
    return metrics
