"""A small, offline, partially observed mini-Pacman for the TD-VAE comparison (figure 2's
table), simulated for a batch of episodes at once in torch.

The paper uses the MiniPacman of Racanière et al. (2017) -- a 15 x 19 frame of which the
agent sees a 5 x 5 window around Pacman -- and does not describe its data-collecting policy
(our notes: not found).  No packaged version exists, so this module is our own stand-in;
every choice below is ours.

World
    A fixed, hand-drawn 15 x 19 maze (``LAYOUT``: 15 rows, 19 columns, 139 free cells),
    left-right symmetric, connected, made of one-cell-wide corridors with loops and no dead
    ends or open 2 x 2 areas.  The maze is the same in every episode (as in Racanière et
    al.'s game); what differs is where Pacman and the ghost start and where they go.
    Every free cell holds a food pellet at the start of an episode; pellets never come back.

Pacman and its policy
    Pacman starts on a uniformly random free cell (and eats the pellet there).  The data
    come from a persistent random walk: at every step Pacman keeps its current direction
    with probability ``keep`` (0.8) if that move is legal; otherwise (or with probability
    1 - keep) it picks a direction uniformly among the legal ones (possibly the same one, or
    turning back).  Its first direction is uniform among the legal ones.  Moves into walls
    are never taken, and since the maze has no isolated cell Pacman moves at every step.

Ghost
    One ghost starts on a uniformly random free cell outside the 5 x 5 window (Chebyshev
    distance >= 3 from Pacman).  At every step, after Pacman, it chases with probability
    ``chase`` (0.5) -- it takes the legal move that brings it closest to Pacman in
    Manhattan distance, ties broken at random -- and otherwise moves to a uniformly random
    legal neighbour.  If it catches Pacman (they share a cell before or after the ghost's
    move, which includes swapping cells) the episode goes on: Pacman is unharmed and the
    ghost respawns on a uniformly random free cell outside the window, as at the start.

Observations
    A 5 x 5 window centred on Pacman with three binary channels -- wall, food, ghost --
    where cells outside the maze count as walls.  ``observe`` returns (n, 3, 5, 5);
    sequences are flattened channel-major to 75 = 3 * 5 * 5 values in {0, 1}.  The first
    observation of a sequence is the start state (after ``burn_in`` unrecorded steps, 0 by
    default); each later one follows one step of Pacman and the ghost, so a sequence of
    ``length`` observations spans ``length - 1`` steps.  Because eaten pellets stay eaten,
    the food channel carries a memory of where Pacman has been, and the ghost is seen only
    when it is within two cells: both make the process non-Markov in the observations.

All randomness comes from one ``torch.Generator`` and the number of draws per step does
not depend on what happens, so a simulation is determined by the generator's seed and
(n, length, keep, chase, burn_in).
"""

from __future__ import annotations

import torch

LAYOUT = (
    "###################",
    "#........#........#",
    "#.##.###.#.###.##.#",
    "#.................#",
    "#.##.#.#####.#.##.#",
    "#....#...#...#....#",
    "####.###.#.###.####",
    "#........#........#",
    "#.##.#.#####.#.##.#",
    "#..#.#.......#.#..#",
    "##.#.#.#####.#.#.##",
    "#....#...#...#....#",
    "#.######.#.######.#",
    "#.................#",
    "###################",
)
HEIGHT, WIDTH = len(LAYOUT), len(LAYOUT[0])
VIEW = 5  # the observation window is VIEW x VIEW, centred on Pacman
PAD = VIEW // 2
CHANNELS = ("wall", "food", "ghost")
OBS_DIM = len(CHANNELS) * VIEW * VIEW
# up, right, down, left as (row, column) offsets
DIRECTIONS = torch.tensor([[-1, 0], [0, 1], [1, 0], [0, -1]])


def walls() -> torch.Tensor:
    """(HEIGHT, WIDTH) bool, True on walls."""
    return torch.tensor([[ch == "#" for ch in row] for row in LAYOUT])


def free_cells() -> torch.Tensor:
    """(number of free cells, 2) long: the (row, column) of every free cell."""
    return (~walls()).nonzero()


def _padded_walls() -> torch.Tensor:
    """Walls with a PAD-wide border of wall around the maze: outside counts as wall."""
    return torch.nn.functional.pad(walls(), (PAD, PAD, PAD, PAD), value=True)


def legal_moves(pos: torch.Tensor, wall_p: torch.Tensor) -> torch.Tensor:
    """(n, 4) bool: which of the four DIRECTIONS lead from ``pos`` (n, 2) to a free cell."""
    nxt = pos[:, None, :] + DIRECTIONS  # (n, 4, 2)
    return ~wall_p[nxt[..., 0] + PAD, nxt[..., 1] + PAD]


def observe(pac: torch.Tensor, ghost: torch.Tensor, food_p: torch.Tensor, wall_p: torch.Tensor):
    """(n, 3, VIEW, VIEW) float windows (wall, food, ghost) around ``pac`` (n, 2).  ``food_p``
    is the (n, HEIGHT + 2 PAD, WIDTH + 2 PAD) padded food map, ``wall_p`` the padded walls."""
    n = pac.shape[0]
    offsets = torch.arange(VIEW)
    rows = (pac[:, 0, None] + offsets)[:, :, None]  # padded coordinates: pac + PAD - PAD + k
    cols = (pac[:, 1, None] + offsets)[:, None, :]
    wall_win = wall_p[rows, cols]
    food_win = food_p[torch.arange(n)[:, None, None], rows, cols]
    rel = ghost - pac + PAD
    inside = ((rel >= 0) & (rel < VIEW)).all(1)
    ghost_win = torch.zeros(n, VIEW, VIEW, dtype=torch.bool)
    idx = inside.nonzero()[:, 0]
    ghost_win[idx, rel[idx, 0], rel[idx, 1]] = True
    return torch.stack([wall_win, food_win, ghost_win], 1).float()


def _far_table(free: torch.Tensor):
    """(cell index map (HEIGHT, WIDTH) long, far (free, free) bool): far[i, j] says free cell j
    lies outside the window around free cell i (Chebyshev distance > PAD)."""
    index = torch.full((HEIGHT, WIDTH), -1, dtype=torch.long)
    index[free[:, 0], free[:, 1]] = torch.arange(len(free))
    far = (free[:, None, :] - free[None, :, :]).abs().amax(-1) > PAD
    return index, far


def _place_away(pac: torch.Tensor, free: torch.Tensor, index, far, generator) -> torch.Tensor:
    """A uniformly random free cell outside the window around each Pacman (n, 2), by
    inverting the cumulative count of allowed cells at one uniform draw per episode."""
    cum = far[index[pac[:, 0], pac[:, 1]]].long().cumsum(1)  # (n, free)
    u = torch.rand(pac.shape[0], generator=generator) * cum[:, -1]
    pick = torch.searchsorted(cum, u.long()[:, None], right=True)[:, 0]
    return free[pick]


def _uniform_legal(legal: torch.Tensor, generator) -> torch.Tensor:
    return torch.multinomial(legal.float(), 1, generator=generator)[:, 0]


def simulate(n: int, length: int, generator=None, keep: float = 0.8, chase: float = 0.5,
             burn_in: int = 0, states: bool = False) -> dict:
    """Simulate ``n`` episodes and record ``length`` observations of each.

    Returns ``obs`` (n, length, 3, VIEW, VIEW) float in {0, 1} and ``caught`` (the number of
    catches per episode during the recorded steps); with ``states`` also ``pac`` and ``ghost``
    (n, length, 2) positions and ``food`` (n, length, HEIGHT, WIDTH) bool, each at the time of
    the matching observation.
    """
    if length < 1 or burn_in < 0:
        raise ValueError(f"need length >= 1 and burn_in >= 0, not {length} and {burn_in}")
    g = generator
    wall_p, free = _padded_walls(), free_cells()
    index, far = _far_table(free)
    pac = free[torch.randint(len(free), (n,), generator=g)]
    ghost = _place_away(pac, free, index, far, g)
    heading = _uniform_legal(legal_moves(pac, wall_p), g)
    food_p = torch.nn.functional.pad(~walls(), (PAD, PAD, PAD, PAD), value=False)
    food_p = food_p.expand(n, -1, -1).clone()
    rows = torch.arange(n)
    food_p[rows, pac[:, 0] + PAD, pac[:, 1] + PAD] = False
    caught_count = torch.zeros(n, dtype=torch.long)
    record = {"obs": [], "pac": [], "ghost": [], "food": []}

    def save():
        record["obs"].append(observe(pac, ghost, food_p, wall_p))
        if states:
            record["pac"].append(pac.clone())
            record["ghost"].append(ghost.clone())
            record["food"].append(food_p[:, PAD:PAD + HEIGHT, PAD:PAD + WIDTH].clone())

    for step in range(burn_in + length - 1):
        if step >= burn_in:
            save()
        # Pacman: persistent random walk
        legal = legal_moves(pac, wall_p)
        keep_ok = legal.gather(1, heading[:, None])[:, 0] & (torch.rand(n, generator=g) < keep)
        heading = torch.where(keep_ok, heading, _uniform_legal(legal, g))
        pac = pac + DIRECTIONS[heading]
        food_p[rows, pac[:, 0] + PAD, pac[:, 1] + PAD] = False
        # ghost: chase with probability `chase`, else a random legal move
        g_legal = legal_moves(ghost, wall_p)
        dist = (ghost[:, None, :] + DIRECTIONS - pac[:, None, :]).abs().sum(-1).float()
        dist = dist + 0.5 * torch.rand(n, 4, generator=g)  # random tie-breaking
        toward = dist.masked_fill(~g_legal, float("inf")).argmin(1)
        g_dir = torch.where(torch.rand(n, generator=g) < chase, toward, _uniform_legal(g_legal, g))
        moved = ghost + DIRECTIONS[g_dir]
        caught = (ghost == pac).all(1) | (moved == pac).all(1)
        respawn = _place_away(pac, free, index, far, g)  # drawn every step: a fixed number of draws
        ghost = torch.where(caught[:, None], respawn, moved)
        if step >= burn_in:
            caught_count += caught.long()
    save()  # the state after the last step
    out = {"obs": torch.stack(record["obs"], 1), "caught": caught_count}
    if states:
        out.update(pac=torch.stack(record["pac"], 1), ghost=torch.stack(record["ghost"], 1),
                   food=torch.stack(record["food"], 1))
    return out


def sequences(n: int, length: int, generator=None, **kw) -> torch.Tensor:
    """(n, length, OBS_DIM) float in {0, 1}: observation windows flattened channel-major
    (wall 5 x 5, then food, then ghost); ``kw`` as for ``simulate``."""
    return simulate(n, length, generator, **kw)["obs"].flatten(2)
