"""The DS1-DS4 tree posteriors: MrBayes ``.trprobs`` NEXUS files, found offline.

Layout (as in zcrabbit/sbn ``data/`` and in this project's shared data)::

    <root>/sbn/raw_data_DS1-4/DSk/rep_{1..10}/DSk.trprobs      golden runs (ground truth)
    <root>/sbn/short_run_data_DS1-4/DSk/rep_{1..10}/DSk.trprobs  the samples to fit
    (the reference repository's folder name short_run_data_DS1-8 is accepted too)

``<root>`` is ``--data-dir``, else ``$REPRO_DATA``, else ``~/.cache/repro-hub/data``
(``common.data.default_root``).  A missing file raises one error listing every
place looked.  Files are checked against the md5s in ``checksums.py`` (those of
the copies taken from zcrabbit/sbn); a file that exists but differs is an error.

Weights follow the reference code (zcrabbit/sbn utils.py ``summary`` and
experiments/real-data.ipynb): each golden replicate's probabilities are
multiplied by 750,001 and rounded to counts, the counts of a topology are
pooled over the 10 replicates and divided by 10 x 750,001 (not renormalised);
a short run's weights are renormalised to sum to one.  Topologies are
identified by their split sets, never by Newick strings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.data import ChecksumError, DatasetNotFound, default_root
from papers.sbn import trees as tr
from registry import ReproError

DATASETS = ("DS1", "DS2", "DS3", "DS4")
GOLDEN_SCALE = 750001  # the reference's sample count per golden replicate
_TREE = re.compile(r"^\s*tree\s+(\S+?)\s*(?:\[[^\]]*\]\s*)?=\s*(.*)$", re.I)
_WEIGHT = re.compile(r"\[&W\s+([^\]\s]+)\s*\]", re.I)
_COMMENT = re.compile(r"\[[^\]]*\]")


class NexusError(ReproError):
    pass


@dataclass
class TreeFile:
    path: Path
    taxa: list[str]  # in translate order
    newick: list[str]  # with taxon names substituted for the translate keys
    weights: np.ndarray
    lines: list[int]  # 1-based line numbers, for error messages


def read_trprobs(path) -> TreeFile:
    """Parse a MrBayes .trprobs file: the translate block, then one
    ``tree NAME [...] = [&W w] (newick);`` per line.  Any malformed or
    truncated input is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise NexusError(f"{path}: not a text file") from None
    lines = text.splitlines()

    def fail(i, msg):
        raise NexusError(f"{path}:{i + 1}: {msg}")

    if not lines or lines[0].strip().upper() != "#NEXUS":
        fail(0, "not a NEXUS file (first line is not #NEXUS)")
    i = 1
    while i < len(lines) and lines[i].strip().lower() != "begin trees;":
        i += 1
    if i == len(lines):
        fail(i - 1, "no 'begin trees;' block (truncated file?)")
    i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or lines[i].strip().lower() != "translate":
        fail(min(i, len(lines) - 1), "expected a 'translate' block after 'begin trees;'")
    keys, taxa = {}, []
    while True:
        i += 1
        if i == len(lines):
            fail(i - 1, "translate block never ends (truncated file?)")
        entry = lines[i].strip()
        last = entry.endswith(";")
        entry = entry.rstrip(",;").strip()
        if entry:
            parts = entry.split()
            if len(parts) != 2:
                fail(i, f"bad translate entry {lines[i].strip()!r}: expected 'KEY NAME,'")
            if parts[0] in keys or parts[1] in taxa:
                fail(i, f"duplicate translate entry {entry!r}")
            keys[parts[0]] = len(taxa)
            taxa.append(parts[1])
        if last:
            break
    newick, weights, where = [], [], []
    ended = False
    for i in range(i + 1, len(lines)):
        line = lines[i].strip()
        if not line:
            continue
        if line.lower() == "end;":
            ended = True
            break
        m = _TREE.match(line)
        if not m:
            fail(i, f"expected 'tree NAME = [&W weight] (newick);', got {line[:60]!r}")
        body = m.group(2)
        w = _WEIGHT.search(body)
        if not w:
            fail(i, "tree has no [&W weight] comment")
        try:
            weight = float(w.group(1))
        except ValueError:
            fail(i, f"bad tree weight {w.group(1)!r}")
        if not np.isfinite(weight) or weight < 0:
            fail(i, f"bad tree weight {weight}")
        nwk = _COMMENT.sub("", body).strip()
        if not nwk.startswith("(") or not nwk.endswith(";"):
            fail(i, "tree is not a complete Newick string ending in ';' (truncated?)")
        newick.append(nwk)
        weights.append(weight)
        where.append(i + 1)
    if not ended:
        fail(len(lines) - 1, "file ends without 'end;' (truncated?)")
    if not newick:
        fail(i, "no trees")
    # substitute names for translate keys, so trees from files with different
    # translate numberings share one taxon index
    sub = re.compile(r"(?<=[(,])\s*([^(),;:\s]+)")
    named = []
    for s, ln in zip(newick, where):
        def repl(m, ln=ln):
            key = m.group(1)
            if key not in keys:
                raise NexusError(f"{path}:{ln}: taxon {key!r} is not in the translate block")
            return taxa[keys[key]]
        named.append(sub.sub(repl, s))
    return TreeFile(path, taxa, named, np.asarray(weights, dtype=np.float64), where)


def parse_trees(files: list[TreeFile], taxa: list[str]) -> tuple[tr.Trees, list[np.ndarray]]:
    """Parse every distinct Newick string once; return the batch and, per file,
    the row of each of its trees."""
    index = {t: i for i, t in enumerate(taxa)}
    uniq: dict[str, int] = {}
    where: list[tuple[Path, int]] = []
    rows = []
    for f in files:
        if sorted(f.taxa) != sorted(taxa):
            raise NexusError(f"{f.path}: its taxa differ from those of {files[0].path}")
        r = np.empty(len(f.newick), dtype=np.int64)
        for k, s in enumerate(f.newick):
            if s not in uniq:
                uniq[s] = len(uniq)
                where.append((f.path, f.lines[k]))
            r[k] = uniq[s]
        rows.append(r)
    try:
        batch = tr.Trees.from_newick(list(uniq), index, len(taxa),
                                     where=lambda i: f"{where[i][0]}:{where[i][1]}")
    except tr.NewickError as exc:
        raise NexusError(str(exc)) from None
    return batch, rows


# ------------------------------------------------------------------ location


def _candidates(root: Path) -> list[Path]:
    return [root / "sbn", root / "sbn" / "data", root]


def _find(root: Path, kind: str, ds: str, rep: int) -> Path:
    folders = {"golden": ["raw_data_DS1-4"], "short": ["short_run_data_DS1-4", "short_run_data_DS1-8"]}
    tried = []
    for base in _candidates(root):
        for folder in folders[kind]:
            p = base / folder / ds / f"rep_{rep}" / f"{ds}.trprobs"
            tried.append(p)
            if p.is_file():
                return p
    looked = "\n  ".join(str(p) for p in tried)
    raise DatasetNotFound(
        f"SBN data: {ds} {kind}-run replicate {rep} not found. Looked in:\n  {looked}\n"
        f"Provide the MrBayes .trprobs files of zcrabbit/sbn (folders data/raw_data_DS1-4 and "
        f"data/short_run_data_DS1-8) under {root}/sbn/, or point --data-dir / $REPRO_DATA at "
        f"the folder holding sbn/ (this project's ../shared/data works).")


def _verify(path: Path) -> None:
    from papers.sbn.checksums import MD5

    key = "/".join(path.parts[-4:]).replace("short_run_data_DS1-8", "short_run_data_DS1-4")
    want = MD5.get(key)
    if want is None:
        return
    got = hashlib.md5(path.read_bytes()).hexdigest()
    if got != want:
        raise ChecksumError(f"{path} fails its checksum (md5 {got}, expected {want}): a "
                            f"corrupt or different file; replace it")


@dataclass
class Posterior:
    """One data set: its taxa, the ground truth and the short runs, over one batch of
    unique topologies (``trees``)."""

    name: str
    taxa: list[str]
    trees: tr.Trees  # every distinct topology of the golden and short runs
    truth_ids: np.ndarray  # rows of ``trees`` in the ground truth
    truth_w: np.ndarray  # their probabilities (pooled golden counts / (10 x 750,001))
    runs: list[tuple[np.ndarray, np.ndarray]]  # per short run: (rows, renormalised weights)


def load(ds: str, root=None, golden_reps=range(1, 11), short_reps=range(1, 11),
         verify: bool = True, max_trees: int = 0) -> Posterior:
    """Read a data set; the golden runs in replicate order, so each topology keeps the
    Newick layout of its first occurrence (which fixes CCD's reference edge, as in the
    reference code).  ``max_trees`` > 0 keeps only the first (most probable) trees of
    each file, as the reference's ``truncate`` (for smoke tests; the truth then no
    longer sums to one)."""
    root = default_root(root)
    gold_paths = [_find(root, "golden", ds, r) for r in golden_reps]
    short_paths = [_find(root, "short", ds, r) for r in short_reps]
    if verify:
        for p in gold_paths + short_paths:
            _verify(p)
    gold = [read_trprobs(p) for p in gold_paths]
    short = [read_trprobs(p) for p in short_paths]
    if max_trees:
        for f in gold + short:
            f.newick, f.weights, f.lines = (f.newick[:max_trees], f.weights[:max_trees],
                                            f.lines[:max_trees])
    taxa = gold[0].taxa
    batch, rows = parse_trees(gold + short, taxa)
    # unique topologies by split set
    uniq, first, inverse = np.unique(tr.topology(batch), axis=0, return_index=True,
                                     return_inverse=True)
    inverse = inverse.reshape(-1)
    # keep, for each topology, the Newick of its first occurrence in file order
    order = np.concatenate(rows)
    first_occ = {}
    for r in order:
        first_occ.setdefault(int(inverse[r]), int(r))
    keep = np.array([first_occ[u] for u in range(len(uniq))])
    trees = batch.subset(keep)
    topo = [inverse[r] for r in rows]

    counts = np.zeros(len(uniq))
    for f, t in zip(gold, topo[:len(gold)]):
        np.add.at(counts, t, np.round(f.weights * GOLDEN_SCALE))
    truth_ids = np.nonzero(counts)[0]
    truth_w = counts[truth_ids] / (len(gold) * GOLDEN_SCALE)
    runs = []
    for f, t in zip(short, topo[len(gold):]):
        w = np.zeros(len(uniq))
        np.add.at(w, t, f.weights)  # a topology listed twice in one file is pooled
        ids = np.nonzero(w)[0]
        runs.append((ids, w[ids] / w[ids].sum()))
    return Posterior(ds, taxa, trees, truth_ids, truth_w, runs)
