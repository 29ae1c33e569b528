"""Synthetic "faces": the stand-in for VGG-Face / LFW that AmI (Tao et al., NeurIPS 2018)
needs and that is not available offline.

A 32x32 grey image is a face oval on a dark background with four part glyphs -- left eye,
right eye, nose, mouth -- each drawn as one of ``len(SHAPES)`` shapes (disk, ring,
horizontal bar, vertical bar, cross).  An identity is a combination of shapes, one per
part (``identity_table``: pairwise different in at least two parts).  With the default nuisances
(part jitter <= 1 px, scale <= 1.15) the boxes of one face never share a pixel.  Nuisances keep the
task from being trivial: the whole face shifts, each part jitters and rescales, face and
glyph brightness vary, Gaussian pixel noise is added.

Every glyph is drawn only inside its landmark box (the box is the glyph's own local
square [-1, 1]^2, mapped to pixels), so the boxes are known by construction: the AmI
landmark detector is not needed.  ``render`` takes explicit parameters, so that the two
probes of AmI's attribute-neuron inference are exact re-renderings of one image:
*substitution* of part a (only a's shape changes) and *preservation* of part a (a is kept,
every other part's shape and the face brightness change).  The paper transplants image
patches between real faces instead (§3.1); this proxy has no patch-blending artefacts.
"""

from __future__ import annotations

import torch

PARTS = ("left_eye", "right_eye", "nose", "mouth")
SHAPES = ("disk", "ring", "hbar", "vbar", "cross")
SIZE = 32
# nominal landmark centres (row, col) and half-sizes (rows, cols) in pixels
CENTRES = torch.tensor([[10.0, 9.5], [10.0, 22.5], [18.0, 16.0], [25.5, 16.0]])
HALF = torch.tensor([[2.4, 3.0], [2.4, 3.0], [2.6, 2.4], [2.0, 5.0]])


def shape_masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Every shape's mask (S, ...) on local coordinates (u across, v down); 1 on the
    glyph, 0 elsewhere; zero outside the local square |u|, |v| <= 1."""
    r = (u * u + v * v).sqrt()
    inside = ((u.abs() <= 1) & (v.abs() <= 1)).float()
    masks = torch.stack([
        (r <= 0.85).float(),                                   # disk
        ((r - 0.7).abs() <= 0.3).float(),                     # ring
        (v.abs() <= 0.45).float(),                             # horizontal bar
        (u.abs() <= 0.45).float(),                             # vertical bar
        (((u - v).abs() <= 0.45) | ((u + v).abs() <= 0.45)).float(),  # cross
    ])
    return masks * inside


def identity_table(classes: int, generator: torch.Generator, min_distance: int = 2) -> torch.Tensor:
    """(classes, parts) shape indices, pairwise different in >= ``min_distance`` parts."""
    rows: list[torch.Tensor] = []
    while len(rows) < classes:
        cand = torch.randint(0, len(SHAPES), (len(PARTS),), generator=generator)
        if all(int((cand != r).sum()) >= min_distance for r in rows):
            rows.append(cand)
    return torch.stack(rows)


def sample_params(labels: torch.Tensor, table: torch.Tensor, generator: torch.Generator,
                  jitter: float = 1.0, shift: float = 1.5, scale: tuple = (0.85, 1.15),
                  noise: float = 0.06) -> dict:
    """Random nuisance parameters for images of identities ``labels`` (N,)."""
    n, p = len(labels), len(PARTS)
    g = generator

    def unif(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    face_shift = unif(-shift, shift, n, 1, 2)
    centres = CENTRES[None] + face_shift + unif(-jitter, jitter, n, p, 2)
    half = HALF[None] * unif(scale[0], scale[1], n, p, 1)
    return {"glyph": table[labels].clone(), "centres": centres, "half": half,
            "face_shift": face_shift[:, 0], "face": unif(0.30, 0.45, n), "background": unif(0.0, 0.12, n),
            "ink": unif(0.8, 1.0, n, p), "noise": noise * torch.randn(n, SIZE, SIZE, generator=g)}


def part_masks(params: dict) -> torch.Tensor:
    """(N, parts, H, W) noise-free glyph masks."""
    rows = torch.arange(SIZE, dtype=torch.float32)
    cols = torch.arange(SIZE, dtype=torch.float32)
    c, h = params["centres"], params["half"]
    v = (rows[None, None, :, None] - c[..., 0, None, None]) / h[..., 0, None, None]
    u = (cols[None, None, None, :] - c[..., 1, None, None]) / h[..., 1, None, None]
    v, u = torch.broadcast_tensors(v, u)
    all_shapes = shape_masks(u, v)                              # (S, N, P, H, W)
    idx = params["glyph"][None, :, :, None, None].expand(1, *u.shape)
    return all_shapes.gather(0, idx)[0]


def render(params: dict) -> torch.Tensor:
    """Images (N, 1, 32, 32) in [0, 1] from explicit parameters."""
    n = len(params["glyph"])
    rows = torch.arange(SIZE, dtype=torch.float32)[None, :, None]
    cols = torch.arange(SIZE, dtype=torch.float32)[None, None, :]
    cy = 16.5 + params["face_shift"][:, 0, None, None]
    cx = 16.0 + params["face_shift"][:, 1, None, None]
    oval = (((rows - cy) / 14.0) ** 2 + ((cols - cx) / 11.5) ** 2 <= 1).float()
    bg = params["background"][:, None, None]
    img = bg + oval * (params["face"][:, None, None] - bg)
    masks = part_masks(params)
    for k in range(len(PARTS)):
        m = masks[:, k]
        img = img * (1 - m) + m * params["ink"][:, k, None, None]
    img = (img + params["noise"]).clamp(0, 1)
    return img.view(n, 1, SIZE, SIZE)


def boxes(params: dict) -> torch.Tensor:
    """Landmark boxes (N, parts, 4) as (row0, col0, row1, col1) in pixel coordinates
    (inclusive bounds on pixel centres): every glyph pixel lies inside its box."""
    c, h = params["centres"], params["half"]
    return torch.cat([c - h, c + h], dim=-1)


def substitute(params: dict, part: int, generator: torch.Generator) -> dict:
    """Attribute substitution: part ``part`` gets another shape; nothing else changes."""
    out = dict(params)
    g = params["glyph"].clone()
    step = torch.randint(1, len(SHAPES), (len(g),), generator=generator)
    g[:, part] = (g[:, part] + step) % len(SHAPES)
    out["glyph"] = g
    return out


def preserve(params: dict, part: int, generator: torch.Generator) -> dict:
    """Attribute preservation: part ``part`` is kept; every other part gets another
    shape and the face another brightness."""
    out = dict(params)
    g = params["glyph"].clone()
    for k in range(len(PARTS)):
        if k != part:
            step = torch.randint(1, len(SHAPES), (len(g),), generator=generator)
            g[:, k] = (g[:, k] + step) % len(SHAPES)
    out["glyph"] = g
    out["face"] = 0.30 + 0.15 * torch.rand(len(g), generator=generator)
    return out


def dataset(n: int, table: torch.Tensor, generator: torch.Generator, **nuisance) -> tuple:
    """(images, labels, params) for ``n`` images of uniformly drawn identities."""
    labels = torch.randint(0, len(table), (n,), generator=generator)
    params = sample_params(labels, table, generator, **nuisance)
    return render(params), labels, params
