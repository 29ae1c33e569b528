"""ProcCity courier task speed, one thread: (1) the renderer's cache-hit cost against
rendering the same views on demand (what pre-rendering per node x heading buys, as
StreetLearn caches panoramas), (2) agent steps per second: environment steps alone
(cached views, random actions) and whole training (acting + V-trace learner) for
GoalNav and CityNav at the cpu profile's sizes.

    python benchmarks/citynav_speed.py [--repeats 5] [--clock process]

The cache and the renderer return the same uint8 views (checked first); sides are
interleaved after a warm-up round and the median of the per-repeat ratios printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _bench  # noqa: E402
from papers.city_nav import city as C  # noqa: E402
from papers.city_nav import experiment as E  # noqa: E402
from papers.city_nav import method as M  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--updates", type=int, default=20)
    _bench.add_clock_argument(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    city = C.make_city(1000, blocks=6, block_m=60.0, landmarks=12)
    t0 = time.perf_counter()
    cache = C.render_cache(city, size=32)
    build = time.perf_counter() - t0
    print(f"city: {city.n} nodes; cache of {city.n * C.HEADINGS} views built in {build:.2f} s "
          f"({cache.nbytes / 1e6:.1f} MB)")
    rng = np.random.default_rng(0)
    batches = [(rng.integers(city.n, size=args.batch), rng.integers(C.HEADINGS, size=args.batch))
               for _ in range(50)]
    n, h = batches[0]
    assert np.array_equal(cache[n, h], C.render(city, n, h, size=32)), "cache and renderer disagree"

    def hit():
        for n, h in batches:
            cache[n, h]

    def render():
        for n, h in batches[:5]:
            C.render(city, n, h, size=32)

    times = _bench.interleaved({"cache": hit, "render": render}, args.repeats, args.clock)
    per_hit = [t / 50 for t in times["cache"]]
    per_render = [t / 5 for t in times["render"]]
    ratio, rs = _bench.ratios({"r": per_render, "c": per_hit}, "r", "c")
    print(f"views, batch of {args.batch}: cache hit {1e6 * np.median(per_hit):.1f} us, render "
          f"{1e3 * np.median(per_render):.1f} ms -> rendering costs {ratio:.0f}x a cache hit "
          f"(repeats {_bench.fmt_ratios(rs)})")

    # environment steps alone
    tcfg = dict(num_envs=32, episode_steps=300, goal_radius_m=100.0, shaping_radius_m=200.0, reward_per_node=0.1,
                curriculum_start_m=200.0, curriculum_fraction=0.5, temperature_m=100.0)
    env = E.make_env([(city, cache)], tcfg, "landmarks", True, 32, 0)
    env.reset()
    acts = rng.integers(5, size=(1000, 32))
    now = _bench.clock(args.clock)
    t0 = now()
    for a in acts:
        env.step(a)
    env_sps = 1000 * 32 / (now() - t0)
    print(f"environment alone: {env_sps:,.0f} agent steps/s (32 envs, cached views, random actions)")

    lcfg = dict(frames=0, unroll=20, lr=5e-4, gamma=0.99, baseline_cost=0.5, entropy_cost=0.01, aux_cost=1.0,
                grad_clip=40.0, chunks=1, eval_episodes=1)
    acfg = dict(hidden=128, lstm=64, goal_lstm=64, bottleneck=32, dropout=0.5)
    gen = torch.Generator().manual_seed(0)
    for kind in ("goalnav", "citynav"):
        torch.manual_seed(0)
        model = M.GoalNav(12, size=32, **acfg) if kind == "goalnav" else M.CityNav(12, size=32, **acfg)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        B = 32
        s = {"core": model.initial_state(B), "prev_a": torch.zeros(B, dtype=torch.long), "prev_r": torch.zeros(B),
             "start": torch.ones(B, dtype=torch.bool), "ep_return": np.zeros(B), "ep_goals": np.zeros(B),
             "frames": 0, "obs": env.reset(), "city": env.city_index, "finished": []}
        t_act = t_learn = 0.0
        for u in range(args.updates + 2):
            t0 = now()
            batch = E.rollout(model, env, s, 20, gen)
            t1 = now()
            E.learner_step(model, opt, batch, s["city"], lcfg, kind == "citynav", list(model.parameters()))
            t2 = now()
            if u >= 2:  # warm-up
                t_act += t1 - t0
                t_learn += t2 - t1
        frames = args.updates * 20 * B
        print(f"{kind}: {frames / (t_act + t_learn):,.0f} agent steps/s training "
              f"(acting {frames / t_act:,.0f}/s, learner {frames / t_learn:,.0f}/s; {args.updates} updates "
              f"of 32 envs x 20 steps)")


if __name__ == "__main__":
    main()
