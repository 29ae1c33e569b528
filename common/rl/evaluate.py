"""Evaluate a policy over N episodes at once on a gymnasium ``VectorEnv`` whose
N sub-environments run one episode each (fixed-length episodes, reset together),
and summarise returns and success rates with ``common.stats.bootstrap_ci``.

``policy(obs, t) -> actions`` sees the batch of observations and the step index
(a hierarchical policy uses ``t`` to pick new goals every c steps).  Success is
read from ``info["success"]`` at each episode's FINAL step (HIRO App. B: within
distance 5 of the target at the last step), not "ever reached".
"""

from __future__ import annotations

import numpy as np

from common.stats import bootstrap_ci


def rollout(env, policy, seed: int | None = None, record=None) -> dict:
    """One episode in every sub-environment; ``record(obs, t)`` (optional) sees every
    observation, e.g. to draw a trajectory."""
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    returns = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    success = np.zeros(n)
    t = 0
    while not done.all():
        if record is not None:
            record(obs, t)
        obs, rew, term, trunc, info = env.step(policy(obs, t))
        returns += np.where(done, 0.0, rew)
        ended = (np.asarray(term) | np.asarray(trunc)) & ~done
        success[ended] = np.asarray(info["success"], dtype=float)[ended]
        done |= ended
        t += 1
    if record is not None:
        record(obs, t)
    return {"returns": returns, "success": success, "steps": t}


def evaluate(env, policy, seed: int | None = None) -> dict:
    """Success rate and mean return over ``env.num_envs`` episodes, with bootstrap
    95 % intervals; per-episode values included."""
    out = rollout(env, policy, seed=seed)
    s, r = bootstrap_ci(out["success"]), bootstrap_ci(out["returns"])
    return {"success": s.mean, "success_ci": [s.low, s.high], "return": r.mean,
            "return_ci": [r.low, r.high], "episodes": int(env.num_envs),
            "per_episode_success": out["success"].tolist()}
