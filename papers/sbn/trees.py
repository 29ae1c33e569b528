"""Unrooted binary trees as arrays of clade bitsets (Zhang & Matsen 2018, §2-§4).

A clade is a set of taxa stored as the bits of one ``uint64`` (so at most 64
taxa; DS1-DS4 have 27-41).  A tree on n taxa is parsed from Newick into
``2n - 2`` nodes: leaves ``0..n-1`` are the taxa, internal nodes ``n..2n-3``
are numbered in post-order, so the top-level trifurcation (MrBayes writes
unrooted trees that way) is the last node.  Every non-root node ``v`` names
one of the ``2n - 3`` edges (the one above it); the edge's two *directed*
versions are ``down(v) = v`` (clade ``C_v``) and ``up(v) = E + v`` (clade
``~C_v``), with ``E = 2n - 3``.

From there everything the estimators need is bit arithmetic on batches of
trees with the same n (no per-tree Python in the hot paths):

- ``topology`` rows: the sorted canonical non-trivial splits, the tree's
  identity as an *unrooted* topology (whatever the Newick rotation/rooting);
- ``root_split``: the canonical split of each of the E possible root edges;
- PCSP *slots* (parent-child subsplit pairs, §3): a tree holds ``7n - 18``
  distinct PCSPs over all its rootings, each a triple (sibling clade S,
  child clade B, child subsplit Y) together with the set of root edges under
  which it appears; ``activity`` turns those sets into an index array
  ``(trees, E, n - 2)``: for each rooting, the n - 2 PCSPs of that rooted
  tree (§4: a rooted tree has one PCSP per non-root internal node).

A child subsplit Y of clade B is stored as the smaller (as an integer) of
its two halves; a split as the side without taxon 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import permutations

import numpy as np

_TOKEN = re.compile(r"[(),;]|[^(),;\s]+")


class NewickError(ValueError):
    pass


def parse_newick(text: str, label_to_taxon: dict, n: int):
    """One Newick string -> (children lists by node, clade ints, first child of the root).

    Leaves are numbered by taxon; internal nodes n.. in post-order.  Branch
    lengths (``:x``) and internal labels are ignored.  Raises NewickError
    unless the tree is binary and unrooted (a trifurcation at the top level)
    with every taxon exactly once."""
    stack: list[list[int]] = [[]]
    children: dict[int, list[int]] = {}
    clade = [0] * (2 * n - 2)
    seen = 0
    nxt = n
    prev = None
    for tok in _TOKEN.findall(text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) < 2:
                raise NewickError("unbalanced ')'")
            kids = stack.pop()
            if nxt >= 2 * n - 2:
                raise NewickError(f"more internal nodes than an unrooted binary tree on {n} taxa has")
            children[nxt] = kids
            bits = 0
            for k in kids:
                bits |= clade[k]
            clade[nxt] = bits
            stack[-1].append(nxt)
            nxt += 1
        elif tok == ";":
            break
        elif tok != ",":
            if prev == ")":  # an internal-node label (or its branch length): ignore
                prev = "label"
                continue
            label = tok.split(":", 1)[0]
            taxon = label_to_taxon.get(label)
            if taxon is None:
                raise NewickError(f"unknown taxon label {label!r}")
            if seen >> taxon & 1:
                raise NewickError(f"taxon {label!r} appears twice")
            seen |= 1 << taxon
            clade[taxon] = 1 << taxon
            stack[-1].append(taxon)
        prev = tok
    if len(stack) != 1:
        raise NewickError("unbalanced '(' (truncated tree?)")
    if seen != (1 << n) - 1:
        missing = [t for t in range(n) if not seen >> t & 1]
        raise NewickError(f"{len(missing)} taxa missing from the tree")
    if nxt != 2 * n - 2 or len(stack[0]) != 1:
        raise NewickError(f"not an unrooted binary tree on {n} taxa "
                          f"({nxt - n} internal nodes, expected {n - 2})")
    root = nxt - 1
    for node, kids in children.items():
        want = 3 if node == root else 2
        if len(kids) != want:
            raise NewickError(f"not an unrooted binary tree: a node with {len(kids)} children "
                              f"(expected 2, and 3 at the top level)")
    return children, clade, children[root][0]


@dataclass
class Trees:
    """A batch of parsed unrooted trees on the same n taxa (row t = tree t)."""

    n: int
    children: np.ndarray  # (T, 2n-2, 3) int32, -1 padded; leaves have none
    clade: np.ndarray  # (T, 2n-2) uint64
    ref_child: np.ndarray  # (T,) first child of the top-level node (CCD's reference edge)

    def __len__(self) -> int:
        return len(self.clade)

    @property
    def full(self) -> np.uint64:
        return np.uint64((1 << self.n) - 1) if self.n < 64 else np.uint64(2**64 - 1)

    @classmethod
    def from_newick(cls, strings, label_to_taxon: dict, n: int, where=None) -> "Trees":
        """Parse strings; ``where(i)`` names string i in error messages."""
        T, N = len(strings), 2 * n - 2
        if not 4 <= n <= 64:
            raise ValueError(f"{n} taxa: supported are 4 to 64")
        children = np.full((T, N, 3), -1, dtype=np.int32)
        clade = np.zeros((T, N), dtype=np.uint64)
        ref = np.zeros(T, dtype=np.int32)
        for i, s in enumerate(strings):
            try:
                kids, bits, ref[i] = parse_newick(s, label_to_taxon, n)
            except NewickError as exc:
                raise NewickError(f"{where(i) if where else f'tree {i}'}: {exc}") from None
            for node, k in kids.items():
                children[i, node, :len(k)] = k
            clade[i] = np.array(bits, dtype=np.uint64)
        return cls(n, children, clade, ref)

    def subset(self, idx) -> "Trees":
        return Trees(self.n, self.children[idx], self.clade[idx], self.ref_child[idx])


def canon(c: np.ndarray, full) -> np.ndarray:
    """A split as the side that does not hold taxon 0."""
    return np.where(c & np.uint64(1), c ^ full, c)


def n_rootings(n: int) -> int:
    return 2 * n - 3


def topology(trees: Trees) -> np.ndarray:
    """(T, n-3) sorted canonical non-trivial splits: the unrooted topology's identity."""
    n = trees.n
    return np.sort(canon(trees.clade[:, n:2 * n - 3], trees.full), axis=1)


def edge_splits(trees: Trees) -> np.ndarray:
    """(T, E) canonical split of every edge (also the root split of that rooting)."""
    return canon(trees.clade[:, :n_rootings(trees.n)], trees.full)


def _out_edges(trees: Trees) -> np.ndarray:
    """(T, n-2, 3) directed-edge ids of the three edges leaving each internal node."""
    n, E = trees.n, n_rootings(trees.n)
    internal = np.arange(n, 2 * n - 2)
    ch = trees.children[:, internal, :]  # (T, n-2, 3)
    out = ch.astype(np.int64).copy()
    is_root = internal == 2 * n - 3
    out[:, ~is_root, 2] = E + internal[~is_root]  # up(u) for a non-root internal node
    return out


def _dclade(trees: Trees) -> np.ndarray:
    """(T, 2E) clade of every directed edge: down(v) = C_v, up(v) = ~C_v."""
    c = trees.clade[:, :n_rootings(trees.n)]
    return np.concatenate([c, c ^ trees.full], axis=1)


@dataclass
class Encoded:
    """Per-tree PCSP slots and clade/subsplit keys (see the module docstring)."""

    pcsp: np.ndarray  # (T, S, 3) uint64: (sibling S, child B, subsplit Y), S = 7n - 18
    region: np.ndarray  # (T, S) uint64: the slot is live when the root edge lies inside
    region_is_edge: np.ndarray  # (S,) bool: root slots (live only at one edge)
    region_edge: np.ndarray  # (T, S) int: that edge for root slots
    clade_sub: np.ndarray  # (T, n-2, 3, 2) uint64: (B, Y) of the in-edges of each internal node
    edge_clade: np.ndarray  # (T, E) uint64


def encode(trees: Trees) -> Encoded:
    n, E, full = trees.n, n_rootings(trees.n), trees.full
    T = len(trees)
    out = _out_edges(trees)  # (T, I, 3)
    dcl = _dclade(trees)
    oc = np.take_along_axis(dcl, out.reshape(T, -1), 1).reshape(out.shape)  # out-edge clades
    # the in-edge reverse(out[i]) carries clade ~oc[i] and subsplit {oc[j], oc[k]}
    j, k = np.array([1, 0, 0]), np.array([2, 2, 1])
    in_B = oc ^ full
    in_Y = np.minimum(oc[:, :, j], oc[:, :, k])
    clade_sub = np.stack([in_B, in_Y], axis=-1)  # (T, I, 3, 2)
    # subsplit at the head of every directed edge (0 when the head is a leaf)
    sub = np.zeros((T, 2 * E), dtype=np.uint64)
    rev = np.where(out < E, out + E, out - E)
    np.put_along_axis(sub, rev.reshape(T, -1), in_Y.reshape(T, -1), 1)

    # root slots: each in-edge of each internal node (a clade with a subsplit), parent = the
    # root split, live only when the root is on that very edge
    root_pcsp = np.stack([oc, in_B, in_Y], axis=-1).reshape(T, -1, 3)
    root_edge = (out % E).reshape(T, -1)
    # non-root slots: ordered pairs (d, s) of out-edges of u; live when the root is beyond x
    pairs = np.array([(a, b, 3 - a - b) for a, b in permutations(range(3), 2)])
    d, s, x = out[:, :, pairs[:, 0]], out[:, :, pairs[:, 1]], out[:, :, pairs[:, 2]]
    d_sub = np.take_along_axis(sub, d.reshape(T, -1), 1).reshape(d.shape)
    keep = d_sub != 0  # the child d must be a clade with a subsplit (not a leaf)
    per_tree = keep.reshape(T, -1).sum(1)
    if not (per_tree == 4 * (n - 3)).all():
        raise AssertionError("slot count mismatch: not an unrooted binary tree")
    sel = keep.reshape(T, -1)

    def pick(a):
        return a.reshape(T, -1)[sel].reshape(T, 4 * (n - 3))

    S_cl = pick(oc[:, :, pairs[:, 1]])
    B_cl = pick(oc[:, :, pairs[:, 0]])
    nr_pcsp = np.stack([S_cl, B_cl, pick(d_sub)], axis=-1)
    nr_region = pick(oc[:, :, pairs[:, 2]])
    del s, x
    nroot = root_pcsp.shape[1]  # 3(n - 2): every in-edge of every internal node
    pcsp = np.concatenate([root_pcsp, nr_pcsp], axis=1)
    region = np.concatenate([np.zeros((T, nroot), np.uint64), nr_region], axis=1)
    region_edge = np.concatenate([root_edge, np.zeros((T, nr_pcsp.shape[1]), np.int64)], axis=1)
    is_edge = np.r_[np.ones(nroot, bool), np.zeros(nr_pcsp.shape[1], bool)]
    return Encoded(pcsp, region, is_edge, region_edge, clade_sub, trees.clade[:, :E])


def activity(enc: Encoded, n: int, chunk: int = 256) -> np.ndarray:
    """(T, E, n-2) slot positions live under each rooting (each rooted tree has n-2 PCSPs)."""
    T, S = enc.region.shape
    E = n_rootings(n)
    full = np.uint64((1 << n) - 1) if n < 64 else np.uint64(2**64 - 1)
    out = np.empty((T, E, n - 2), dtype=np.int16 if S < 2**15 else np.int32)
    edges = np.arange(E)
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        ce = enc.edge_clade[a:b, :, None]  # (t, E, 1)
        notx = ~enc.region[a:b, None, :] & full  # (t, 1, S)
        inside = ((ce & notx) == 0) | (((ce ^ full) & notx) == 0)
        at_edge = enc.region_edge[a:b, None, :] == edges[None, :, None]
        live = np.where(enc.region_is_edge[None, None, :], at_edge, inside)
        counts = live.sum(-1)
        if not (counts == n - 2).all():
            raise AssertionError("a rooting does not have n - 2 PCSPs")
        out[a:b] = np.nonzero(live)[2].reshape(b - a, E, n - 2)
    return out


def ccd_rooting(enc: Encoded, trees: Trees) -> np.ndarray:
    """(T, n-2) which of its three in-edges (0-2 in ``clade_sub``) gives each internal
    node's clade when the tree is rooted on the edge above the top-level node's first
    child: the reference code's choice for unrooted CCD (zcrabbit/sbn models.py
    ``ccd_estimate``)."""
    T = len(trees)
    cr = trees.clade[np.arange(T), trees.ref_child][:, None, None]  # (T,1,1)
    B = enc.clade_sub[..., 0]  # (T, I, 3)
    away = ((B & ~cr & trees.full) == 0) | ((B & cr) == 0)  # B on one side of the root edge
    if not (away.sum(-1) == 1).all():
        raise AssertionError("CCD rooting: not exactly one away-pointing in-edge per node")
    return away.argmax(-1)


# ------------------------------------------------------------- tree spaces


def all_unrooted_newick(taxa: list[str]) -> list[str]:
    """Every unrooted binary topology on ``taxa`` ((2n-5)!! of them) as Newick, built by
    inserting taxon k on every edge of every tree on the first k-1 taxa."""
    if len(taxa) < 3:
        raise ValueError("need at least 3 taxa")
    # a tree is a nested tuple whose top level has three parts (the trifurcation)
    trees = [tuple(taxa[:3])]
    for name in taxa[3:]:
        new = []
        for t in trees:
            new.extend(_insert_everywhere(t, name, top=True))
        trees = new
    return [_to_newick(t) + ";" for t in trees]


def _insert_everywhere(node, name, top=False):
    """Every way to attach leaf ``name`` on an edge within ``node`` (or above it)."""
    results = [] if top else [(node, name)]
    if isinstance(node, tuple):
        for i, child in enumerate(node):
            for replaced in _insert_everywhere(child, name):
                results.append(node[:i] + (replaced,) + node[i + 1:])
    return results


def _to_newick(node) -> str:
    if isinstance(node, tuple):
        return "(" + ",".join(_to_newick(c) for c in node) + ")"
    return node


def double_factorial_count(n: int) -> int:
    """(2n - 5)!!: the number of unrooted binary topologies on n taxa."""
    out = 1
    for k in range(3, 2 * n - 4, 2):
        out *= k
    return out
