"""The agents of Mirowski et al., "Learning to Navigate in Cities Without a Map"
(NeurIPS 2018), as in google-deepmind/streetlearn's agent code (the paper body was not
available): a conv torso, then

- GoalNav: one LSTM over [torso, goal, previous action, previous reward] -> policy, value.
- CityNav: a locale-specific *goal LSTM* over [torso, goal] with an auxiliary heading
  head (16 bins), a tanh bottleneck, then the *policy LSTM* over [bottleneck, torso
  (skip connection), previous action, previous reward] -> policy, value.
- MultiCityNav: one goal pathway per city, shared torso and policy LSTM; transfer to a
  new city trains only a fresh pathway with the shared modules frozen.

Widths are the paper's at full (conv 16/32, FC 256, LSTMs 256, bottleneck 64) and
smaller at cpu.  Trained with IMPALA's loss (common/rl/vtrace.py) from synchronous
in-process actors: the actors act with the learner's current weights, so the only
behaviour/target mismatch is dropout's mask (V-trace truncates it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from papers.city_nav.city import HEADINGS

N_ACTIONS = 5


class Torso(nn.Module):
    """Conv 8x8/4 (16) -> conv 4x4/2 (32) -> FC (ReLU), as StreetLearn's agents."""

    def __init__(self, size: int = 32, hidden: int = 256):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 8, 4), nn.ReLU(), nn.Conv2d(16, 32, 4, 2), nn.ReLU(),
                                  nn.Flatten())
        with torch.no_grad():
            n = self.conv(torch.zeros(1, 3, size, size)).shape[1]
        self.fc = nn.Linear(n, hidden)
        self.out = hidden

    def forward(self, view_u8):
        return F.relu(self.fc(self.conv(view_u8.float() / 255.0)))


def _extras(prev_action, prev_reward):
    return torch.cat([F.one_hot(prev_action, N_ACTIONS).float(), prev_reward.clamp(-1, 1)[..., None]], -1)


def _mask(state, keep):
    """Zero an LSTM state where an episode starts (keep = 0)."""
    return tuple(s * keep[:, None] for s in state)


class GoalNav(nn.Module):
    def __init__(self, goal_dim: int, size: int = 32, hidden: int = 256, lstm: int = 256, **_):
        super().__init__()
        self.torso = Torso(size, hidden)
        self.core = nn.LSTMCell(hidden + goal_dim + N_ACTIONS + 1, lstm)
        self.policy = nn.Linear(lstm, N_ACTIONS)
        self.value = nn.Linear(lstm, 1)
        self.lstm = lstm

    def initial_state(self, batch: int):
        z = torch.zeros(batch, self.lstm)
        return {"core": (z, z.clone())}

    def unroll(self, feats, goal, prev_a, prev_r, starts, state, city=None):
        """feats (T, B, F) torso features; goal (T, B, G); prev_a, prev_r, starts (T, B).
        Returns logits (T, B, A), values (T, B), heading logits or None, final state."""
        h = state["core"]
        outs = []
        for t in range(feats.shape[0]):
            h = _mask(h, 1.0 - starts[t].float())
            h = self.core(torch.cat([feats[t], goal[t], _extras(prev_a[t], prev_r[t])], -1), h)
            outs.append(h[0])
        o = torch.stack(outs)
        return self.policy(o), self.value(o).squeeze(-1), None, {"core": h}


class GoalPathway(nn.Module):
    """CityNav's locale-specific part: goal LSTM, heading head, tanh bottleneck."""

    def __init__(self, feat: int, goal_dim: int, lstm: int, bottleneck: int, dropout: float):
        super().__init__()
        self.cell = nn.LSTMCell(feat + goal_dim, lstm)
        self.heading = nn.Sequential(nn.Linear(lstm, lstm), nn.ReLU(), nn.Linear(lstm, HEADINGS))
        self.drop = nn.Dropout(dropout)
        self.bottleneck = nn.Linear(lstm, bottleneck)


class MultiCityNav(nn.Module):
    """Shared torso and policy LSTM, one goal pathway per city.  ``city`` (B,) says which
    pathway each environment uses; CityNav is the one-city case (``CityNav``)."""

    def __init__(self, goal_dim: int, cities: int = 1, size: int = 32, hidden: int = 256, lstm: int = 256,
                 goal_lstm: int = 256, bottleneck: int = 64, dropout: float = 0.5, skip: bool = True, **_):
        super().__init__()
        self.torso = Torso(size, hidden)
        self._pathway_args = (hidden, goal_dim, goal_lstm, bottleneck, dropout)
        self.pathways = nn.ModuleList(GoalPathway(*self._pathway_args) for _ in range(cities))
        self.skip = skip
        self.core = nn.LSTMCell(bottleneck + (hidden if skip else 0) + N_ACTIONS + 1, lstm)
        self.policy = nn.Linear(lstm, N_ACTIONS)
        self.value = nn.Linear(lstm, 1)
        self.lstm, self.goal_lstm = lstm, goal_lstm

    def add_city(self) -> int:
        """A fresh pathway for a new city (transfer); returns its index."""
        self.pathways.append(GoalPathway(*self._pathway_args))
        return len(self.pathways) - 1

    def shared_parameters(self):
        return [*self.torso.parameters(), *self.core.parameters(), *self.policy.parameters(),
                *self.value.parameters()]

    def initial_state(self, batch: int):
        z = lambda n: torch.zeros(batch, n)  # noqa: E731
        return {"core": (z(self.lstm), z(self.lstm)), "goal": (z(self.goal_lstm), z(self.goal_lstm))}

    def unroll(self, feats, goal, prev_a, prev_r, starts, state, city):
        hg, hc = state["goal"], state["core"]
        groups = [(c, (city == c).nonzero().squeeze(1)) for c in city.unique().tolist()]
        outs, heads = [], []
        for t in range(feats.shape[0]):
            keep = 1.0 - starts[t].float()
            hg, hc = _mask(hg, keep), _mask(hc, keep)
            if len(groups) == 1:  # one city in the batch: no scatter
                p = self.pathways[groups[0][0]]
                hg = p.cell(torch.cat([feats[t], goal[t]], -1), hg)
                head, bott = p.heading(hg[0]), torch.tanh(p.bottleneck(p.drop(hg[0])))
            else:
                new_h, new_c = torch.empty_like(hg[0]), torch.empty_like(hg[1])
                bott = feats.new_empty(feats.shape[1], self._pathway_args[3])
                head = feats.new_empty(feats.shape[1], HEADINGS)
                for c, idx in groups:
                    p = self.pathways[c]
                    h, cc = p.cell(torch.cat([feats[t, idx], goal[t, idx]], -1), (hg[0][idx], hg[1][idx]))
                    new_h[idx], new_c[idx] = h, cc
                    head[idx] = p.heading(h)
                    bott[idx] = torch.tanh(p.bottleneck(p.drop(h)))
                hg = (new_h, new_c)
            x = [bott] + ([feats[t]] if self.skip else []) + [_extras(prev_a[t], prev_r[t])]
            hc = self.core(torch.cat(x, -1), hc)
            outs.append(hc[0])
            heads.append(head)
        o = torch.stack(outs)
        return self.policy(o), self.value(o).squeeze(-1), torch.stack(heads), {"core": hc, "goal": hg}


def CityNav(goal_dim: int, **kw) -> MultiCityNav:
    return MultiCityNav(goal_dim, cities=1, **kw)


AGENTS = {"goalnav": GoalNav, "citynav": CityNav}
