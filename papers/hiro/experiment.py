"""hiro_nav: HIRO vs HIRO without the off-policy correction vs flat TD3 (Nachum et al.
2018, Fig. 4 ablations and Table 1's HIRO column) on the point-mass Maze and Push
re-creations of App. B (cpu) or the Ant worlds (full, needs MuJoCo).

One run = one seed; it trains every (environment, method) pair in turn, each a
resumable stage: ``ctx.once`` keeps a finished pair's learning curve, and inside a
pair ``ctx.resumable`` checkpoints networks, optimisers, both replay buffers and
every generator after each evaluation interval, so a killed run resumes where it
stopped, replay included.  Both environments sit in one experiment because the
claim "the correction matters most on Push" compares them within a seed.
Evaluation (App. C.4): every ``eval_every`` steps, ``eval_episodes`` episodes at the
evaluation target, deterministic policies, success = within reach of the target at
the final step.
"""

from __future__ import annotations

import time

import gin
import numpy as np
import torch

from common.context import RunContext
from common.rl.evaluate import evaluate, rollout
from common.rl.wrappers import time_limited
from papers.hiro import envs as E
from papers.hiro import figures
from papers.hiro.method import HIRO, Flat
from registry import Paper, register

PAPER = Paper(
    title="Data-Efficient Hierarchical Reinforcement Learning",
    authors="Ofir Nachum, Shixiang Gu, Honglak Lee and Sergey Levine",
    venue="NeurIPS 2018", arxiv="1805.08296",
    code="https://github.com/tensorflow/models/tree/master/research/efficient-hrl")

METHODS = ("hiro", "nocorr", "flat", "pretrain")


@gin.configurable(module="hiro")
def setup(envs=(("maze", "ant_maze"), ("push", "ant_push"), ("fall", "ant_fall")),
          methods=METHODS, steps=10_000_000, horizon=500, eval_every=50_000, eval_episodes=50,
          speed=0.15):
    """(metric name, environment) pairs; env steps per method; episode length (App. B:
    500); evaluation interval and episodes (App. C.4); point-mass speed per step."""
    return dict(envs=tuple(tuple(e) for e in envs), methods=tuple(methods), steps=steps, horizon=horizon,
                eval_every=eval_every, eval_episodes=eval_episodes, speed=speed)


@gin.configurable(module="hiro")
def agent(c=10, goal_range=10.0, hidden=(300, 300), buffer=200_000, batch_size=100, low_noise=1.0 / 30,
          high_noise=0.1, gamma=0.99, tau=0.005, actor_lr=1e-4, critic_lr=1e-3, high_reward_scale=0.1,
          candidates=10, start_steps=2_500, pretrain_steps=2_000_000):
    """App. C: c = 10, (300, 300) nets, replay 200k, batch 100, gamma 0.99, tau 0.005, Adam
    1e-4 / 1e-3, high-level reward x 0.1, 10 candidates.  Exploration sigma 1.0 at both levels
    in the Ant's units (torque range 30, x-y goal range 10): as fractions of the half-range
    1/30 (low) and 1/10 (high).  ``start_steps`` uniform-random steps first (official:
    initial_episodes = 5 x 500).  ``pretrain_steps``: the "pre-training" ablation's low-level
    training on random goals before it is frozen (Fig. 4: 2M steps)."""
    return dict(c=c, goal_range=goal_range, hidden=tuple(hidden), buffer=buffer, batch_size=batch_size,
                low_noise=low_noise, high_noise=high_noise, gamma=gamma, tau=tau, actor_lr=actor_lr,
                critic_lr=critic_lr, high_reward_scale=high_reward_scale, candidates=candidates,
                start_steps=start_steps, pretrain_steps=pretrain_steps)


def to_t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def make_agent(method: str, env, acfg: dict, device):
    obs_dim = env.obs_dim
    if method == "flat":
        return Flat(env, obs_dim, hidden=acfg["hidden"], buffer=acfg["buffer"], batch_size=acfg["batch_size"],
                    noise=acfg["low_noise"], gamma=acfg["gamma"], tau=acfg["tau"], actor_lr=acfg["actor_lr"],
                    critic_lr=acfg["critic_lr"], device=device)
    feat_dim = env.low_features(np.zeros((1, obs_dim))).shape[-1]
    return HIRO(env, obs_dim, 2, feat_dim, acfg["goal_range"], c=acfg["c"], correction=(method != "nocorr"),
                hidden=acfg["hidden"], buffer=acfg["buffer"], batch_size=acfg["batch_size"],
                low_noise=acfg["low_noise"], high_noise=acfg["high_noise"],
                high_reward_scale=acfg["high_reward_scale"], gamma=acfg["gamma"], tau=acfg["tau"],
                actor_lr=acfg["actor_lr"], critic_lr=acfg["critic_lr"], candidates=acfg["candidates"],
                device=device)


def policy_fn(method: str, ag, device, log=None):
    """A deterministic evaluation policy(obs, t); HIRO's keeps and re-bases its goal, and
    ``log`` (optional) receives every new subgoal as an absolute position."""
    if method == "flat":
        return lambda obs, t: ag.act(to_t(obs).to(device), False, False).cpu().numpy()
    mem = {}

    def pol(obs, t):
        o = to_t(obs).to(device)
        if t % ag.c == 0:
            mem["g"] = ag.high_act(o, False, False)
            if log is not None:
                log.append((ag.env.goal_part(o) + mem["g"]).cpu().numpy().tolist())
        else:
            mem["g"] = ag.next_goal(mem["o"], mem["g"], o)
        mem["o"] = o
        return ag.low_act(o, mem["g"], False, False).cpu().numpy()

    return pol


def train_episode(method: str, ag, env, gen: torch.Generator, steps_done: int, start_steps: int, device,
                  phase: str = "joint"):
    """One exploring episode in every sub-environment, learning as it goes.  HIRO's
    ``phase``: "joint" (both levels learn), "pretrain" (uniformly random goals, only the
    low level learns; Fig. 4's pre-training) or "frozen" (only the high level learns, on
    top of a pre-trained low level that no longer changes)."""
    obs = to_t(env.reset()[0]).to(device)
    n, T = env.num_envs, env.unwrapped.horizon
    if method == "flat":
        for t in range(T):
            random = steps_done < start_steps
            a = ag.act(obs, True, random, gen)
            nxt, r, *_ = env.step(a.cpu().numpy())
            nxt = to_t(nxt).to(device)
            ag.store(obs, a, to_t(r), nxt, torch.full((n,), float(t == T - 1)))
            ag.update(gen)
            obs, steps_done = nxt, steps_done + n
        return steps_done
    c = ag.c
    for t in range(T):
        random = steps_done < start_steps
        if t % c == 0:
            g = ag.high_act(obs, True, random or phase == "pretrain", gen)
            g0, states, actions, rsum = g, [obs], [], torch.zeros(n)
        a = ag.low_act(obs, g, True, random and phase != "frozen", gen)
        nxt, r, *_ = env.step(a.cpu().numpy())
        nxt = to_t(nxt).to(device)
        if phase != "frozen":
            ag.store_low(obs, g, a, nxt)
        g = ag.next_goal(obs, g, nxt)
        states.append(nxt)
        actions.append(a)
        rsum += to_t(r)
        if phase != "frozen":
            ag.update_low(gen)
        if (t + 1) % c == 0 and phase != "pretrain":
            ag.store_high(torch.stack(states, 1), torch.stack(actions, 1), g0, rsum,
                          torch.full((n,), float(t == T - 1)))
            ag.update_high(gen)
        obs, steps_done = nxt, steps_done + n
    return steps_done


def train_pair(ctx: RunContext, env_key: str, env_name: str, method: str, scfg: dict, acfg: dict) -> dict:
    key = f"{env_key}/{method}"
    dev = ctx.device
    gens = {"env": ctx.generator(f"{key}/env"), "agent": ctx.generator(f"{key}/agent"),
            "eval": ctx.generator(f"{key}/eval")}
    horizon = scfg["horizon"]
    env = time_limited(E.make_env(env_name, 1, horizon, generator=gens["env"], speed=scfg["speed"]), horizon)
    eval_env = time_limited(E.make_env(env_name, scfg["eval_episodes"], horizon, evaluation=True,
                                       generator=gens["eval"], speed=scfg["speed"]), horizon)
    base = env.unwrapped
    ag = make_agent(method, base, acfg, dev)
    episodes_per_epoch = max(1, scfg["eval_every"] // horizon)
    epochs = max(1, scfg["steps"] // (episodes_per_epoch * horizon))
    # "pretrain": the low level first learns alone on random goals for pretrain_steps (not
    # counted in "steps", not evaluated), then is frozen while the high level learns
    pre_epochs = (max(1, acfg["pretrain_steps"] // (episodes_per_epoch * horizon))
                  if method == "pretrain" else 0)
    state = {"steps": 0, "pre_steps": 0, "curve": [], "seconds": 0.0}
    loop = ctx.resumable(key, {"learner": ag, **{f"gen_{k}": g for k, g in gens.items()}}, state)
    for epoch in loop.epochs(pre_epochs + epochs):
        t0 = time.perf_counter()
        if epoch < pre_epochs:
            for _ in range(episodes_per_epoch):
                state["pre_steps"] = train_episode(method, ag, env, gens["agent"], state["pre_steps"],
                                                   acfg["start_steps"], dev, phase="pretrain")
            state["seconds"] += time.perf_counter() - t0
            ctx.log(f"[{key}] low-level pre-training: {state['pre_steps']} steps ({state['seconds']:.0f} s)")
            continue
        for _ in range(episodes_per_epoch):
            state["steps"] = train_episode(method, ag, env, gens["agent"], state["steps"], acfg["start_steps"],
                                           dev, phase="frozen" if method == "pretrain" else "joint")
        res = evaluate(eval_env, policy_fn(method, ag, dev))
        state["seconds"] += time.perf_counter() - t0
        state["curve"].append({"steps": state["steps"], "success": res["success"],
                               "success_ci": res["success_ci"], "return": res["return"]})
        ctx.log(f"[{key}] {state['steps']} steps: success {res['success']:.2f} "
                f"return {res['return']:.1f} ({state['seconds']:.0f} s)")
    # a trajectory of the trained agent at the evaluation target, subgoals included
    traj_env = time_limited(E.make_env(env_name, 1, horizon, evaluation=True, speed=scfg["speed"]), horizon)
    frames, subgoals = [], []
    rollout(traj_env, policy_fn(method, ag, dev, log=subgoals),
            record=lambda obs, t: frames.append(np.asarray(obs)[0].tolist()))
    out = {"curve": state["curve"], "seconds": state["seconds"], "trajectory": frames,
           "subgoals": [s[0] for s in subgoals]}
    if method != "flat":
        out["relabel"] = ag.relabel_stats
    return out


@register("hiro_nav", paper=PAPER, figures=[figures.success_curves, figures.trajectories])
def run(ctx: RunContext) -> dict:
    """HIRO vs no off-policy correction vs flat TD3 on point-mass Maze and Push (Ant at full)."""
    torch.set_grad_enabled(True)
    scfg, acfg = setup(), agent()
    metrics, results = {}, {}
    for env_key, env_name in scfg["envs"]:
        for method in scfg["methods"]:
            key = f"{env_key}/{method}"
            res = ctx.once(key, lambda: train_pair(ctx, env_key, env_name, method, scfg, acfg))
            results[key] = res
            succ = [p["success"] for p in res["curve"]]
            metrics[f"{key}/success_final"] = succ[-1]
            metrics[f"{key}/success_auc"] = float(np.mean(succ))
            metrics[f"{key}/success_best"] = max(succ)
            metrics[f"{key}/return_auc"] = float(np.mean([p["return"] for p in res["curve"]]))
            metrics[f"{key}/seconds"] = res["seconds"]
            if "relabel" in res:
                tot = max(1, sum(res["relabel"].values()))
                metrics[f"{key}/relabel_kept_fraction"] = res["relabel"]["kept"] / tot
        if {"hiro", "nocorr"} <= set(scfg["methods"]):
            metrics[f"{env_key}/correction_gain_auc"] = (metrics[f"{env_key}/hiro/success_auc"]
                                                         - metrics[f"{env_key}/nocorr/success_auc"])
    ctx.save_json("training", results)
    ctx.save_json("config", {"setup": scfg, "agent": acfg})
    return metrics
