"""The mini-Pacman simulator of tdvae_minipacman: the maze, legal moves, observation windows
against a slow reference crop, food, the ghost, determinism; and the three models' losses on
its data."""

import math

import pytest
import torch

from papers.tdvae import method as M
from papers.tdvae import minipacman as P


def _sim(n=48, length=25, seed=0, **kw):
    return P.simulate(n, length, torch.Generator().manual_seed(seed), states=True, **kw)


def _is_wall(r, c):
    """Straight from the layout strings; outside the maze counts as wall."""
    return not (0 <= r < len(P.LAYOUT) and 0 <= c < len(P.LAYOUT[0])) or P.LAYOUT[r][c] == "#"


def test_maze_is_15_by_19_closed_connected_without_dead_ends():
    walls = P.walls()
    assert walls.shape == (15, 19)
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    free = {tuple(p) for p in P.free_cells().tolist()}
    start = next(iter(free))
    seen, stack = {start}, [start]
    while stack:
        r, c = stack.pop()
        for dr, dc in P.DIRECTIONS.tolist():
            if (r + dr, c + dc) in free and (r + dr, c + dc) not in seen:
                seen.add((r + dr, c + dc))
                stack.append((r + dr, c + dc))
    assert seen == free
    for r, c in free:
        assert sum((r + dr, c + dc) in free for dr, dc in P.DIRECTIONS.tolist()) >= 2


def test_walls_never_entered_and_pacman_moves_one_step():
    s = _sim()
    walls = P.walls()
    for who in ("pac", "ghost"):
        pos = s[who]
        assert not walls[pos[..., 0], pos[..., 1]].any(), f"{who} entered a wall"
    steps = (s["pac"][:, 1:] - s["pac"][:, :-1]).abs().sum(-1)
    assert (steps == 1).all()


def test_ghost_moves_one_step_or_respawns_out_of_view():
    s = _sim(n=64, length=40, chase=0.9)
    move = (s["ghost"][:, 1:] - s["ghost"][:, :-1]).abs().sum(-1)
    jumps = move != 1
    assert jumps.sum() == s["caught"].sum() > 0  # a respawn is never a unit move (see module)
    cheb = (s["ghost"] - s["pac"]).abs().amax(-1)
    assert (cheb[:, 1:][jumps] > P.PAD).all()  # respawned outside the window
    assert (cheb[:, 0] > P.PAD).all()  # and starts outside it


def test_observations_match_a_slow_reference_crop():
    """Reference windows from the layout strings, Pacman's path (food = every free cell it has
    not visited) and the ghost's position, cell by cell in Python."""
    s = _sim(n=6, length=25, chase=0.9, seed=3)
    assert s["obs"][:, :, 2].sum() > 0  # the ghost is seen at least once
    for i in range(6):
        visited = set()
        for t in range(25):
            pr, pc = s["pac"][i, t].tolist()
            visited.add((pr, pc))
            gr, gc = s["ghost"][i, t].tolist()
            ref = torch.zeros(3, P.VIEW, P.VIEW)
            for a in range(P.VIEW):
                for b in range(P.VIEW):
                    r, c = pr + a - P.PAD, pc + b - P.PAD
                    ref[0, a, b] = float(_is_wall(r, c))
                    ref[1, a, b] = float(not _is_wall(r, c) and (r, c) not in visited)
                    ref[2, a, b] = float((r, c) == (gr, gc))
            torch.testing.assert_close(s["obs"][i, t], ref, msg=f"episode {i}, time {t}")


def test_food_disappears_once_eaten_and_never_returns():
    s = _sim(n=32, length=30)
    food, pac = s["food"], s["pac"]
    n, T = pac.shape[:2]
    free = ~P.walls()
    assert (food[:, 0].sum((1, 2)) == free.sum() - 1).all()  # the start cell is eaten at once
    assert not food[torch.arange(n)[:, None], torch.arange(T), pac[..., 0], pac[..., 1]].any()
    assert not (food[:, 1:] & ~food[:, :-1]).any()  # never comes back
    eaten = food[:, :-1] & ~food[:, 1:]
    assert (eaten.sum((2, 3)) <= 1).all()  # at most the cell Pacman stepped on
    assert not (food & P.walls()).any()
    assert (s["obs"][:, :, 1, P.PAD, P.PAD] == 0).all()  # nothing left under Pacman


def test_keep_one_goes_straight_until_blocked():
    s = _sim(n=32, length=30, keep=1.0)
    d = s["pac"][:, 1:] - s["pac"][:, :-1]
    wall_p = torch.nn.functional.pad(P.walls(), (P.PAD,) * 4, value=True)
    for t in range(1, d.shape[1]):
        turned = (d[:, t] != d[:, t - 1]).any(-1)
        ahead = s["pac"][:, t] + d[:, t - 1]
        blocked = wall_p[ahead[:, 0] + P.PAD, ahead[:, 1] + P.PAD]
        assert (turned == blocked).all()


def test_persistence_rate_is_about_keep():
    """Where going straight is legal, Pacman keeps its heading with probability
    keep + (1 - keep) / (number of legal moves): between 0.85 and 0.9 in this maze."""
    s = _sim(n=400, length=30, keep=0.8)
    d = s["pac"][:, 1:] - s["pac"][:, :-1]
    wall_p = torch.nn.functional.pad(P.walls(), (P.PAD,) * 4, value=True)
    ahead = s["pac"][:, 1:-1] + d[:, :-1]
    open_ahead = ~wall_p[ahead[..., 0] + P.PAD, ahead[..., 1] + P.PAD]
    same = (d[:, 1:] == d[:, :-1]).all(-1)[open_ahead].float().mean().item()
    assert 0.84 < same < 0.91


def test_chasing_ghost_takes_a_closest_legal_move():
    s = _sim(n=32, length=20, chase=1.0)
    g, pac = s["ghost"], s["pac"]
    wall_p = torch.nn.functional.pad(P.walls(), (P.PAD,) * 4, value=True)
    for t in range(1, g.shape[1]):
        caught = (g[:, t] - g[:, t - 1]).abs().sum(-1) != 1
        nxt = g[:, t - 1, None, :] + P.DIRECTIONS
        legal = ~wall_p[nxt[..., 0] + P.PAD, nxt[..., 1] + P.PAD]
        dist = (nxt - pac[:, t, None, :]).abs().sum(-1).masked_fill(~legal, 10 ** 6)
        took = (g[:, t] - pac[:, t]).abs().sum(-1)
        assert (took[~caught] == dist.min(1).values[~caught]).all()


def test_deterministic_under_a_seed_and_burn_in_continues_the_same_episodes():
    a = P.sequences(20, 15, torch.Generator().manual_seed(7))
    b = P.sequences(20, 15, torch.Generator().manual_seed(7))
    c = P.sequences(20, 15, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    longer = P.sequences(20, 15, torch.Generator().manual_seed(7), burn_in=0)
    burnt = P.sequences(20, 10, torch.Generator().manual_seed(7), burn_in=5)
    assert torch.equal(longer, a)
    assert torch.equal(burnt, a[:, 5:])  # same draws per step, recording starts later


def test_shapes_binary_and_channel_major_flattening():
    s = _sim(n=10, length=12)
    x = P.sequences(10, 12, torch.Generator().manual_seed(0))
    assert x.shape == (10, 12, P.OBS_DIM) == (10, 12, 75) and x.dtype == torch.float32
    assert ((x == 0) | (x == 1)).all()
    torch.testing.assert_close(x[..., :25].view(10, 12, 5, 5), s["obs"][:, :, 0])
    torch.testing.assert_close(x[..., 25:50].view(10, 12, 5, 5), s["obs"][:, :, 1])
    assert (s["obs"][:, :, 2].sum((2, 3)) <= 1).all()  # one ghost, at most once in view
    assert s["pac"].shape == (10, 12, 2) and s["food"].shape == (10, 12, 15, 19)
    with pytest.raises(ValueError):
        P.simulate(2, 0)


@pytest.mark.parametrize("cls", [M.TDVAE, M.Filtering, M.MeanField])
def test_models_losses_and_likelihoods_finite_on_minipacman(cls):
    torch.manual_seed(0)
    x = P.sequences(6, 8, torch.Generator().manual_seed(0))
    model = cls(P.OBS_DIM, d_belief=16, z_dims=(4,), d_hidden=16, d_pre=16, decoder="bernoulli")
    loss, stats = model.sequential_loss(x, torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in model.named_parameters() if n.startswith(("belief", "decoder")))
    elbo, ll = M.importance_nll(model, x, 8, torch.Generator().manual_seed(2))
    assert elbo.shape == ll.shape == (6,)
    assert torch.isfinite(elbo).all() and torch.isfinite(ll).all() and (ll >= elbo - 1e-4).all()
