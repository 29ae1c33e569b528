"""Is CityNav's heading head slow to learn because of a bug, or because the cpu profile
gives it few updates?  Trains only the heading loss (no RL) of a cpu-width CityNav on
i.i.d. (node, heading) views of one cpu-profile ProcCity (seed 1011), in 21-step unrolls of 32
sequences as the learner sees them (Adam, lr 5e-4, clip 40: the cpu profile's learner),
and prints the accuracy every 50 updates.  The courier agents of the cpu profile get
375 learner updates (240k agent steps / (32 x 20)).

    python benchmarks/citynav_heading_probe.py [updates]

Issue 25 (one thread, shared machine): 0.08, 0.07, 0.18, 0.20, 0.31, 0.32, 0.38, 0.38,
0.39 at 0, 50, ..., 400 updates: the labels match the views (a bug would stay at 1/16),
but even alone the head needs ~300 updates to pass 0.125 by a wide margin.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from papers.city_nav import city as C
from papers.city_nav import method as M


def main(updates: int = 400):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    city = C.make_city(1011, blocks=6, block_m=60.0, landmarks=12)  # a cpu-profile city
    cache = torch.from_numpy(C.render_cache(city, size=32))
    m = M.CityNav(12, size=32, hidden=128, lstm=64, goal_lstm=64, bottleneck=32, dropout=0.5)
    opt = torch.optim.Adam(m.parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    T, B = 21, 32
    zl, zf = torch.zeros(T, B, dtype=torch.long), torch.zeros(T, B)
    t0 = time.process_time()
    for u in range(updates + 1):
        nodes, heads = rng.integers(city.n, size=(T, B)), rng.integers(C.HEADINGS, size=(T, B))
        feats = m.torso(cache[nodes, heads].flatten(0, 1)).view(T, B, -1)
        _, _, logits, _ = m.unroll(feats, torch.zeros(T, B, 12), zl, zf, torch.zeros(T, B, dtype=torch.bool),
                                   m.initial_state(B), torch.zeros(B, dtype=torch.long))
        y = torch.from_numpy(heads)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 40.0)
        opt.step()
        if u % 50 == 0:
            acc = (logits.argmax(-1) == y).float().mean().item()
            print(f"update {u:4d}: heading accuracy {acc:.3f}  ({time.process_time() - t0:.0f} s CPU)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
