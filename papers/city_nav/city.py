"""ProcCity: a procedurally generated, seeded stand-in for StreetLearn's Street View
graphs (Street View imagery cannot be had offline).

A city is a perturbed grid of intersections (``block_m`` apart, jittered), a few
streets removed (larger blocks, dead ends), a diagonal avenue, some blocks left as
parks, and short dead-end stubs.  Every street is subdivided into nodes about
``spacing_m`` apart (StreetLearn's panoramas are ~10 m apart); the graph is the
largest connected component, so every node reaches every other.  Buildings fill the
blocks (16 m tiles of a per-city palette, 8-30 m tall), and a handful of tall,
uniquely coloured landmark towers stand above the roofs; the same landmarks anchor the
goal descriptor (``goal_landmarks``).

First-person views are rendered by a column raycaster from the geometry (60-degree
field of view, as StreetLearn's default crop) for every node x one of 16 headings
(22.5 degrees apart: the 5 actions turn by 1 or 3 of these) and PRE-RENDERED into a
cache, as StreetLearn caches panoramas.  A red "stop" patch is drawn when the street
ahead ends within two nodes (StreetLearn draws stop signs before graph boundaries so
that agents do not learn that street ends are traversable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, shortest_path

HEADINGS = 16
STEP_RAD = 2 * np.pi / HEADINGS
SUN_AZIMUTH = np.deg2rad(60.0)


@dataclass
class City:
    seed: int
    pos: np.ndarray          # (N, 2) node positions, metres
    neighbours: list         # list of int arrays
    forward: np.ndarray      # (N, 16) the node "forward" leads to, -1 where none (no-op)
    hops: np.ndarray         # (N, N) shortest-path length in nodes
    landmarks: np.ndarray    # (L, 2) landmark positions
    landmark_height: np.ndarray
    landmark_colour: np.ndarray  # (L, 3) in [0, 1]
    grid: np.ndarray         # (GX, GY) building height per 2 m cell (0: open)
    grid_colour: np.ndarray  # (GX, GY, 3) facade colour per cell
    park: np.ndarray         # (GX, GY) bool
    origin: np.ndarray       # world position of cell (0, 0)
    res: float
    size: float              # side of the bounding square, metres
    stop: np.ndarray         # (N, 16) bool: the street ahead ends within two nodes

    @property
    def n(self) -> int:
        return len(self.pos)

    def distances(self, a, b) -> np.ndarray:
        """Straight-line distance in metres between node arrays a and b (as StreetLearn)."""
        return np.linalg.norm(self.pos[a] - self.pos[b], axis=-1)


def forward_table(pos: np.ndarray, neighbours: list, max_deg: float = 30.0) -> np.ndarray:
    """For every node and heading, the neighbour whose bearing is closest to the heading
    if within ``max_deg`` degrees, else -1 (forward is then a no-op)."""
    n = len(pos)
    out = np.full((n, HEADINGS), -1, dtype=np.int64)
    heads = np.arange(HEADINGS) * STEP_RAD
    for i in range(n):
        nb = neighbours[i]
        if len(nb) == 0:
            continue
        d = pos[nb] - pos[i]
        bearing = np.arctan2(d[:, 1], d[:, 0])
        diff = np.abs((heads[:, None] - bearing[None, :] + np.pi) % (2 * np.pi) - np.pi)  # (16, k)
        j = diff.argmin(1)
        ok = diff[np.arange(HEADINGS), j] <= np.deg2rad(max_deg) + 1e-9
        out[i, ok] = nb[j[ok]]
    return out


def _palette(rng) -> np.ndarray:
    hue = rng.uniform(0, 1)
    cols = []
    for k in range(5):
        h = (hue + rng.uniform(-0.08, 0.08) + 0.5 * (k % 2)) % 1.0
        s, v = rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.85)
        cols.append(_hsv(h, s, v))
    return np.array(cols)


def _hsv(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def make_city(seed: int, blocks: int = 6, block_m: float = 60.0, spacing_m: float = 10.0,
              jitter_m: float = 6.0, p_remove: float = 0.12, parks: int = 2, stubs: int = 4,
              landmarks: int = 8, res: float = 2.0) -> City:
    rng = np.random.default_rng(seed)
    k = blocks + 1
    lattice = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="ij"), -1).reshape(-1, 2)
    ipos = lattice * block_m + rng.uniform(-jitter_m, jitter_m, size=lattice.shape)
    idx = lambda i, j: i * k + j  # noqa: E731
    edges = []
    for i in range(k):
        for j in range(k):
            if i + 1 < k:
                edges.append((idx(i, j), idx(i + 1, j)))
            if j + 1 < k:
                edges.append((idx(i, j), idx(i, j + 1)))
    keep = rng.uniform(size=len(edges)) >= p_remove
    edges = [e for e, kp in zip(edges, keep) if kp]
    edges += [(idx(i, i), idx(i + 1, i + 1)) for i in range(blocks)]  # a diagonal avenue
    pts = [p for p in ipos]
    # dead-end stubs: half a block into a block from a random intersection
    for _ in range(stubs):
        a = rng.integers(len(ipos))
        ang = rng.integers(4) * np.pi / 2 + np.pi / 4
        pts.append(ipos[a] + 0.5 * block_m * np.array([np.cos(ang), np.sin(ang)]))
        edges.append((a, len(pts) - 1))
    pts = np.array(pts)
    # subdivide every street into nodes ~spacing_m apart
    pos = list(pts)
    links = []
    for a, b in edges:
        m = max(1, int(round(np.linalg.norm(pts[b] - pts[a]) / spacing_m)))
        chain = [a]
        for s in range(1, m):
            pos.append(pts[a] + (pts[b] - pts[a]) * s / m)
            chain.append(len(pos) - 1)
        chain.append(b)
        links += list(zip(chain[:-1], chain[1:]))
    pos = np.array(pos)
    links = np.array(links)
    n = len(pos)
    adj = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(float)
    _, lab = connected_components(adj, directed=False)
    big = np.bincount(lab).argmax()
    keep_nodes = np.flatnonzero(lab == big)
    remap = -np.ones(n, dtype=np.int64)
    remap[keep_nodes] = np.arange(len(keep_nodes))
    adj = adj[keep_nodes][:, keep_nodes].tocsr()
    street_pos = pos  # every street (even the disconnected ones) is drawn as open ground
    pos = pos[keep_nodes]
    neighbours = [adj.indices[adj.indptr[i]:adj.indptr[i + 1]].astype(np.int64) for i in range(len(pos))]
    hops = shortest_path(adj, unweighted=True, directed=False).astype(np.int32)
    fwd = forward_table(pos, neighbours)

    # ---- geometry raster: open streets, parks, building tiles
    lo = -block_m / 2
    size = blocks * block_m + block_m
    g = int(np.ceil(size / res))
    origin = np.array([lo, lo])
    street = np.zeros((g, g), bool)
    for a, b in links:
        for t in np.linspace(0, 1, max(2, int(np.linalg.norm(street_pos[b] - street_pos[a]) / (res / 2)))):
            p = street_pos[a] + t * (street_pos[b] - street_pos[a])
            c = ((p - origin) / res).astype(int)
            if 0 <= c[0] < g and 0 <= c[1] < g:
                street[c[0], c[1]] = True
    street = ndimage.binary_dilation(street, iterations=max(1, int(6.0 / res)))
    centres = (np.arange(g) + 0.5) * res + lo
    cx, cy = np.meshgrid(centres, centres, indexing="ij")
    block = np.stack([np.floor(cx / block_m), np.floor(cy / block_m)], -1).astype(int)
    inside = (block >= 0).all(-1) & (block < blocks).all(-1)
    park_blocks = rng.choice(blocks * blocks, size=parks, replace=False)
    bid = block[..., 0] * blocks + block[..., 1]
    park = inside & np.isin(bid, park_blocks) & ~street
    tiles = np.floor(np.stack([cx, cy], -1) / 16.0).astype(int)
    tid = (tiles[..., 0] + 1000) * 4096 + (tiles[..., 1] + 1000)
    uniq, inv = np.unique(tid, return_inverse=True)
    inv = inv.reshape(tid.shape)
    heights = rng.uniform(8, 30, size=len(uniq))
    pal = _palette(rng)
    tcol = pal[rng.integers(len(pal), size=len(uniq))] * rng.uniform(0.85, 1.15, size=(len(uniq), 1))
    building = inside & ~street & ~park
    grid = np.where(building, heights[inv], 0.0).astype(np.float32)
    grid_colour = np.clip(tcol[inv], 0, 1).astype(np.float32)

    # ---- landmarks: tall towers on building cells, unique hues
    cand = np.argwhere(building)
    pick = cand[rng.choice(len(cand), size=landmarks, replace=False)]
    lpos = (pick + 0.5) * res + origin
    lheight = rng.uniform(70, 140, size=landmarks)
    lcol = np.array([_hsv((i / landmarks + rng.uniform(0, 0.05)) % 1, 0.9, 1.0) for i in range(landmarks)])

    # ---- stop cue: the street ahead ends (forward becomes a no-op at a dead end) within 2 nodes
    deg = np.array([len(nb) for nb in neighbours])
    stop = np.zeros_like(fwd, dtype=bool)
    cur = np.broadcast_to(np.arange(len(pos))[:, None], fwd.shape).copy()
    alive = np.ones_like(stop)
    hd = np.broadcast_to(np.arange(HEADINGS)[None], fwd.shape)
    for _ in range(3):
        nxt = fwd[cur, hd]
        stop |= alive & (nxt < 0) & (deg[cur] == 1)
        alive &= nxt >= 0
        cur = np.where(alive, nxt, cur)
    return City(seed, pos, neighbours, fwd, hops, lpos, lheight, lcol, grid, grid_colour, park,
                origin, res, float(size), stop)


def goal_landmarks(city: City, nodes: np.ndarray, temperature_m: float = 100.0) -> np.ndarray:
    """The paper's goal descriptor: a softmax over negative distances from the goal to
    every landmark, g_i ~ exp(-d_i / temperature) (alpha was not found in the paper)."""
    d = np.linalg.norm(city.pos[nodes][:, None] - city.landmarks[None], axis=-1)
    z = -d / temperature_m
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def goal_latlong(city: City, nodes: np.ndarray) -> np.ndarray:
    """The alternative descriptor: the goal's coordinates, scaled to [0, 1] over the city."""
    return ((city.pos[nodes] - city.origin) / city.size).astype(np.float32)


# ------------------------------------------------------------------ rendering
def march_distances(res: float, max_dist: float) -> np.ndarray:
    """Sample distances along a ray: half a cell apart near the camera, growing by 3%
    per step (at most 4 m: narrower than any building tile) further out."""
    ts, t = [], res / 2
    while t < max_dist:
        ts.append(t)
        t += min(max(res / 2, 0.03 * t), 4.0)
    return np.array(ts, np.float32)


def render(city: City, nodes: np.ndarray, headings: np.ndarray, size: int = 32, fov_deg: float = 60.0,
           max_dist: float = 250.0, cam_h: float = 2.0) -> np.ndarray:
    """First-person views (V, 3, size, size) uint8 for node/heading pairs, by marching
    one ray per image column through the building raster (``march_distances``)."""
    V, W, H = len(nodes), size, size
    fov = np.deg2rad(fov_deg)
    f = (W / 2) / np.tan(fov / 2)
    phi = fov / 2 - (np.arange(W) + 0.5) * fov / W                      # column angle, left positive
    theta = headings * STEP_RAD
    alpha = theta[:, None] + phi[None]                                   # (V, W)
    p = city.pos[nodes]                                                  # (V, 2)
    ts = march_distances(city.res, max_dist)                             # (S,)
    dx, dy = np.cos(alpha).astype(np.float32), np.sin(alpha).astype(np.float32)
    gx = ((p[:, 0, None, None] + ts * dx[..., None] - city.origin[0]) / city.res).astype(np.int32)
    gy = ((p[:, 1, None, None] + ts * dy[..., None] - city.origin[1]) / city.res).astype(np.int32)
    g = city.grid.shape[0]
    inb = (gx >= 0) & (gx < g) & (gy >= 0) & (gy < g)
    gxc, gyc = np.clip(gx, 0, g - 1), np.clip(gy, 0, g - 1)
    hit = inb & (city.grid[gxc, gyc] > 0)
    any_hit = hit.any(-1)
    first = hit.argmax(-1)                                              # (V, W)
    vi, wi = np.arange(V)[:, None], np.arange(W)[None]
    hx, hy = gxc[vi, wi, first], gyc[vi, wi, first]
    t_hit = np.where(any_hit, ts[first], np.inf) * np.cos(phi)[None]    # perpendicular distance
    bh = np.where(any_hit, city.grid[hx, hy], 0.0)
    bcol = city.grid_colour[hx, hy]                                     # (V, W, 3)
    rows = np.arange(H) + 0.5
    horizon = H / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # inf: the ray hit nothing
        top = horizon - f * (bh - cam_h) / t_hit                        # (V, W)
        z = cam_h + (horizon - rows[None, None]) * t_hit[..., None] / f  # world height per row (V, W, H)
    # sky and ground
    img = np.empty((V, W, H, 3), np.float32)
    # the sky's tint turns with the azimuth (a colour wheel: a global heading cue standing in
    # for the sun and shadows of real panoramas); facades are lit from a fixed sun azimuth
    sun = np.cos(alpha - SUN_AZIMUTH).astype(np.float32)                # (V, W)
    sky = np.array([0.55, 0.72, 0.95], np.float32) * (0.75 + 0.25 * rows / H)[:, None]  # (H, 3)
    wheel = 0.18 * np.cos(alpha[..., None] - np.array([0.0, 2.094, 4.189], np.float32)).astype(np.float32)
    sky = np.clip(sky[None, None] + wheel[:, :, None, :], 0, 1)         # (V, W, H, 3)
    ground = np.array([0.38, 0.38, 0.40], np.float32)
    img[:] = np.where((rows < horizon)[None, None, :, None], sky, ground)
    # landmarks: the nearest tower in each column, drawn where no nearer building covers
    # the pixel (a farther tower peeking above a nearer one is not drawn)
    if len(city.landmarks):
        d = city.landmarks[None] - p[:, None]                           # (V, L, 2)
        dist = np.linalg.norm(d, axis=-1)
        bear = np.arctan2(d[..., 1], d[..., 0])
        diff = np.abs((alpha[..., None] - bear[:, None] + np.pi) % (2 * np.pi) - np.pi)  # (V, W, L)
        col = diff < np.maximum(np.arctan2(6.0, dist), 0.5 * fov / W)[:, None]
        dperp = np.where(col, dist[:, None] * np.cos(phi)[None, :, None], np.inf)
        li = dperp.argmin(-1)                                           # (V, W)
        ld = np.take_along_axis(dperp, li[..., None], -1)[..., 0]
        has = np.isfinite(ld)
        ld = np.where(has, ld, 1.0)
        ltop = horizon - f * (city.landmark_height[li] - cam_h) / ld
        lbot = horizon + f * cam_h / ld
        r3 = rows[None, None]
        cover = has[..., None] & (r3 >= ltop[..., None]) & (r3 <= lbot[..., None])
        cover &= ~((t_hit < ld)[..., None] & (r3 >= top[..., None]))
        band = (0.8 + 0.2 * (((horizon - rows) // 3) % 2)).astype(np.float32)[None, None, :, None]
        lcol = city.landmark_colour.astype(np.float32)[li][:, :, None, :]
        img = np.where(cover[..., None], lcol * band, img)
    # facades: rows between the roof line and the ground, windows every 3.5 m x 4 m
    wall = (rows[None, None] >= top[..., None]) & (z >= 0) & any_hit[..., None]
    along = (hx + hy) % 2
    with np.errstate(invalid="ignore"):
        window = ((z % 3.5) > 2.0) & (along[..., None] == 1)
    fog = np.clip(1.0 - t_hit / max_dist, 0.35, 1.0)[..., None, None]
    shade = np.where(window[..., None], 0.55, 1.0)
    lit = (0.8 - 0.2 * sun)[..., None, None]  # walls facing the sun (rays looking away from it) are brighter
    facade = bcol[:, :, None] * shade * lit * fog + (1 - fog) * 0.7
    img = np.where(wall[..., None], facade, img)
    # stop cue: a red patch in the middle of the view when the street ahead ends
    stop = city.stop[nodes, headings]
    c0 = W // 2 - 2
    patch = img[:, c0:c0 + 4, H // 2 - 5:H // 2 - 1]
    patch[stop] = np.array([0.9, 0.05, 0.05], np.float32)
    img[:, c0:c0 + 4, H // 2 - 5:H // 2 - 1] = patch
    # (V, W, H, 3) -> (V, 3, H, W), row 0 at the top
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8).transpose(0, 3, 2, 1)


def render_cache(city: City, size: int = 32, chunk: int = 256, **kw) -> np.ndarray:
    """Every node x heading pre-rendered: (N, 16, 3, size, size) uint8."""
    nodes = np.repeat(np.arange(city.n), HEADINGS)
    heads = np.tile(np.arange(HEADINGS), city.n)
    out = np.empty((len(nodes), 3, size, size), np.uint8)
    for s in range(0, len(nodes), chunk):
        out[s:s + chunk] = render(city, nodes[s:s + chunk], heads[s:s + chunk], size=size, **kw)
    return out.reshape(city.n, HEADINGS, 3, size, size)
