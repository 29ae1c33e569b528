"""TD3 throughput on the point-mass Maze: ``common.rl`` (the hub's TD3 + replay, driven by
papers/hiro's flat-TD3 loop) vs a PEER: a plain single-file CleanRL-style TD3 loop
written here (two separate Q networks, a NumPy replay buffer, the usual
``target.data.copy_(tau * p + (1 - tau) * target)`` loop), on the same environment,
networks and batch size.  Both do one environment step and one TD3 update per step
(delayed actor/target updates every 2), after a warm-up round, interleaved.

    python benchmarks/hiro_td3.py [--steps 2000] [--hidden 64 64] [--repeats 3] [--threads 1]

Prints environment steps (+ updates) per second of each and the median of the per-repeat
ratios ours / peer (> 1: ours is faster).  The peer is our own code, in the style of
CleanRL's td3_continuous_action.py, not CleanRL itself (not installed).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_clock_argument, fmt_ratios, interleaved, ratios  # noqa: E402
from common.rl.wrappers import time_limited  # noqa: E402
from papers.hiro import envs as E  # noqa: E402
from papers.hiro import experiment as X  # noqa: E402
from papers.hiro.method import Flat  # noqa: E402


# ----------------------------------------------------------------- the peer (CleanRL-style)
class QNetwork(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class PeerActor(nn.Module):
    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc_mu = nn.Linear(hidden[1], act_dim)

    def forward(self, x):
        return torch.tanh(self.fc_mu(F.relu(self.fc2(F.relu(self.fc1(x))))))


def peer_td3(env, steps, hidden, batch_size=100, gamma=0.99, tau=0.005, seed=0):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    obs_dim, act_dim = env.unwrapped.obs_dim, 2
    actor, qf1, qf2 = PeerActor(obs_dim, act_dim, hidden), QNetwork(obs_dim, act_dim, hidden), \
        QNetwork(obs_dim, act_dim, hidden)
    actor_t, qf1_t, qf2_t = copy.deepcopy(actor), copy.deepcopy(qf1), copy.deepcopy(qf2)
    q_opt = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=1e-3)
    a_opt = torch.optim.Adam(actor.parameters(), lr=1e-4)
    cap = steps + 1
    B = {"o": np.zeros((cap, obs_dim), np.float32), "a": np.zeros((cap, act_dim), np.float32),
         "r": np.zeros(cap, np.float32), "o2": np.zeros((cap, obs_dim), np.float32), "d": np.zeros(cap, np.float32)}
    n = 0
    obs, _ = env.reset()
    horizon = env.unwrapped.horizon
    for step in range(steps):
        with torch.no_grad():
            a = actor(torch.as_tensor(obs)).numpy()
        a = np.clip(a + 0.1 * rng.standard_normal(a.shape), -1, 1).astype(np.float32)
        obs2, r, term, trunc, _ = env.step(a)
        B["o"][n], B["a"][n], B["r"][n], B["o2"][n] = obs[0], a[0], r[0], obs2[0]
        B["d"][n] = float(env.unwrapped.t >= horizon)
        n += 1
        obs = obs2
        if env.unwrapped.t >= horizon:
            obs, _ = env.reset()
        if n < batch_size:
            continue
        idx = rng.integers(0, n, batch_size)
        o, ac, rr, o2, d = (torch.as_tensor(B[k][idx]) for k in ("o", "a", "r", "o2", "d"))
        with torch.no_grad():
            noise = (torch.randn_like(ac) * 0.2).clamp(-0.5, 0.5)
            a2 = (actor_t(o2) + noise).clamp(-1, 1)
            q_next = torch.min(qf1_t(o2, a2), qf2_t(o2, a2)).view(-1)
            y = rr + (1 - d) * gamma * q_next
        q_loss = F.mse_loss(qf1(o, ac).view(-1), y) + F.mse_loss(qf2(o, ac).view(-1), y)
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        if step % 2 == 0:
            a_loss = -qf1(o, actor(o)).mean()
            a_opt.zero_grad()
            a_loss.backward()
            a_opt.step()
            for net, tgt in ((actor, actor_t), (qf1, qf1_t), (qf2, qf2_t)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.data.copy_(tau * p.data + (1 - tau) * tp.data)
    return n


# ----------------------------------------------------------------- ours
def ours_td3(env, steps, hidden, batch_size=100, seed=0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ag = Flat(env.unwrapped, env.unwrapped.obs_dim, hidden=hidden, buffer=steps + 1, batch_size=batch_size)
    done = 0
    while done < steps:
        done = X.train_episode("flat", ag, env, gen, done, 0, "cpu")
    return done


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--hidden", type=int, nargs=2, default=[64, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    add_clock_argument(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = (args.steps // 100) * 100  # whole 100-step episodes for both

    def env():
        return time_limited(E.make_env("point_maze", 1, 100), 100)

    sides = {"ours": lambda: ours_td3(env(), steps, tuple(args.hidden)),
             "peer": lambda: peer_td3(env(), steps, tuple(args.hidden))}
    times = interleaved(sides, args.repeats, args.clock)
    for k, ts in times.items():
        print(f"{k}: {', '.join(f'{steps / t:.0f}' for t in ts)} env steps (+ updates) per second")
    med, rs = ratios({"ours": times["peer"], "peer": times["ours"]}, "ours", "peer")
    print(f"speed ratio ours / peer: {med:.2f} (repeats {fmt_ratios(rs)}), {args.clock} clock, "
          f"{args.threads} thread(s), hidden {tuple(args.hidden)}, {steps} steps")


if __name__ == "__main__":
    main()
