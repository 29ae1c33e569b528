"""SBN (Zhang & Matsen 2018): hand-counted examples, tree-space counts, an independent
brute-force implementation (dicts and explicit rootings, the paper's definitions), the
reference code's printed per-run values, dendropy split frequencies, and input errors."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from papers.sbn import data as D
from papers.sbn import method as M
from papers.sbn import trees as tr
from registry import ReproError


def batch(newicks, taxa):
    return tr.Trees.from_newick(newicks, {t: i for i, t in enumerate(taxa)}, len(taxa))


def sbn_root():
    root = Path(os.environ.get("REPRO_DATA", "/nonexistent"))
    return root if (root / "sbn" / "raw_data_DS1-4").is_dir() else None


needs_data = pytest.mark.skipif(sbn_root() is None, reason="SBN data ($REPRO_DATA/sbn) not present")


# ------------------------------------------------------------ tree spaces


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8])
def test_tree_space_size_and_rootings(n):
    taxa = [chr(65 + i) for i in range(n)]
    newick = tr.all_unrooted_newick(taxa)
    assert len(newick) == tr.double_factorial_count(n)
    trees = batch(newick, taxa)
    topo = tr.topology(trees)
    assert len(np.unique(topo, axis=0)) == len(newick)  # all distinct unrooted topologies
    vocab = M.Vocab(trees)
    assert vocab.E == 2 * n - 3 and vocab.root.shape == (len(newick), 2 * n - 3)
    assert vocab.act.shape == (len(newick), 2 * n - 3, n - 2)  # n-2 PCSPs per rooted tree
    assert vocab.slot.shape[1] == 7 * n - 18
    # the PCSPs of a rooting are distinct, and every slot is used by some rooting
    for t in range(min(len(newick), 20)):
        assert all(len(set(r)) == n - 2 for r in vocab.act[t].tolist())
        assert set(vocab.act[t].ravel()) == set(vocab.slot[t])


def test_n8_has_10395_topologies():
    assert tr.double_factorial_count(8) == 10395
    assert len(tr.all_unrooted_newick(list("ABCDEFGH"))) == 10395


def test_topology_identity_ignores_newick_layout():
    taxa = list("ABCDEF")
    same = ["((A,B),C,(D,(E,F)));", "(C,(B,A),((F,E),D));", "(((A,B),C),D,(E,F));"]
    other = "((A,C),B,(D,(E,F)));"
    topo = tr.topology(batch(same + [other], taxa))
    assert (topo[0] == topo[1]).all() and (topo[0] == topo[2]).all()
    assert not (topo[0] == topo[3]).all()


# ---------------------------------------------------------- hand-counted


def test_four_taxa_hand_count():
    """Sample: AB|CD and AC|BD, half each.  Each tree has 5 rootings; under SBN-SA a
    pendant rooting, e.g. at A, has p(root {A}) = 1/5 and p(BCD -> B|CD | A, BCD) = 1/2
    (the other tree splits BCD into C|BD), so p = 1/10; the internal-edge rooting has
    p(AB|CD) = 1/10 and conditionals 1.  p(AB|CD) = 5/10 = 1/2 and p(AD|BC) = 0."""
    taxa = list("ABCD")
    trees = batch(["((A,B),C,D);", "((A,C),B,D);", "((A,D),B,C);"], taxa)
    vocab = M.Vocab(trees)
    ids, w = np.array([0, 1]), np.array([0.5, 0.5])
    sa = M.fit_sa(vocab, ids, w)
    rooted = np.exp(sa.rooted_loglik(np.array([0])))[0]
    assert np.allclose(sorted(rooted), [0.1] * 5)
    assert np.allclose(np.exp(sa.loglik(np.arange(3))), [0.5, 0.5, 0.0])
    em, _ = M.fit_em(vocab, ids, w, maxiter=60)
    assert np.allclose(np.exp(em.loglik(np.arange(3))), [0.5, 0.5, 0.0])
    # CCD rooted at the edge above A: p(split {A}) = 1, p(BCD -> B|CD) = 1/2, p(CD -> C|D) = 1
    assert np.allclose(np.exp(M.ccd_loglik(vocab, ids, w, np.arange(3))), [0.5, 0.5, 0.0])


def test_five_taxa_hand_count():
    """Sample: ((A,B),C,(D,E)) and ((A,B),D,(C,E)), half each (7 rootings each).  Rooted on
    the AB edge the first tree has p(AB|CDE) = (1/7 + 1/7)/2 = 1/7, p(CDE -> C|DE) = 1/2
    (the other tree gives D|CE) and p(DE -> D|E) = 1: 1/14."""
    taxa = list("ABCDE")
    trees = batch(["((A,B),C,(D,E));", "((A,B),D,(C,E));"], taxa)
    vocab = M.Vocab(trees)
    sa = M.fit_sa(vocab, np.array([0, 1]), np.array([0.5, 0.5]))
    rooted = np.exp(sa.rooted_loglik(np.array([0])))[0]
    ab = tr.canon(np.uint64(0b00011), trees.full)
    e_ab = int(np.nonzero(tr.edge_splits(trees)[0] == ab)[0][0])
    assert rooted[e_ab] == pytest.approx(1 / 14)
    assert np.exp(sa.loglik(np.array([0, 1]))) == pytest.approx([0.5, 0.5])


def test_kl_of_a_distribution_with_itself_is_zero_and_clipping():
    w = np.array([0.5, 0.3, 0.2])
    assert M.kl(w, np.log(w)) == pytest.approx(0.0, abs=1e-14)
    # an estimate of 0 counts as machine epsilon
    with np.errstate(divide="ignore"):
        zero = np.log([0.5, 0.5, 0.0])
    assert M.kl(w, zero) == pytest.approx(
        0.3 * math.log(0.3 / 0.5) + 0.2 * math.log(0.2 / np.finfo(float).eps), rel=1e-12)


def test_srf_on_the_full_sample_is_the_empirical_frequency():
    rng = np.random.default_rng(0)
    counts = rng.multinomial(500, rng.dirichlet(np.ones(105) * 0.3))
    ids = np.nonzero(counts)[0]
    w = counts[ids] / 500
    assert np.array_equal(M.srf(ids, w, np.arange(105))[ids], w)
    assert M.srf(ids, w, np.arange(105)).sum() == pytest.approx(1.0)
    assert M.kl(w, np.log(M.srf(ids, w, ids))) == pytest.approx(0.0, abs=1e-12)  # the +eps


# ------------------------------------------- independent brute force (paper's definitions)


def _graph(newick, with_top=False):
    """Adjacency of an unrooted tree from a Newick string (leaves keep their names); with
    ``with_top`` also the top-level node and its first child."""
    adj, stack, k, first = defaultdict(set), [[]], 0, {}
    for tok in tr._TOKEN.findall(newick):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            kids, node = stack.pop(), f"#{k}"
            k += 1
            first[node] = kids[0]
            for c in kids:
                adj[node].add(c)
                adj[c].add(node)
            stack[-1].append(node)
        elif tok not in ",;":
            stack[-1].append(tok)
    top = stack[0][0]
    return (adj, top, first[top]) if with_top else adj


def _rooted(adj, node, parent):
    """(clade, children) of the subtree at ``node`` seen from ``parent``."""
    kids = [_rooted(adj, c, node) for c in sorted(adj[node] - {parent})]
    if not kids:
        return (frozenset([node]), ())
    return (frozenset().union(*(c[0] for c in kids)), tuple(kids))


def _rootings(newick):
    adj = _graph(newick)
    edges = {frozenset((u, v)) for u in adj for v in adj[u]}
    for e in edges:
        u, v = tuple(e)
        yield _rooted(adj, u, v), _rooted(adj, v, u)


def _pcsps(a, b):
    """Root split and PCSPs (parent subsplit, child clade, child subsplit) of a rooted tree."""
    out = []

    def walk(child, sister):
        if child[1]:
            x, y = child[1]
            out.append((frozenset([child[0], sister[0]]), child[0], frozenset([x[0], y[0]])))
            walk(x, y)
            walk(y, x)

    walk(a, b)
    walk(b, a)
    return frozenset([a[0], b[0]]), out


class BruteSBN:
    """Counts over explicit rootings with dicts: eq. 2 of the paper, no vectorisation."""

    def __init__(self, newicks):
        self.rootings = [[_pcsps(a, b) for a, b in _rootings(s)] for s in newicks]

    def fit(self, ids, post):
        self.root, self.pc = defaultdict(float), defaultdict(float)
        for t, wr in zip(ids, post):
            for (rs, pcs), q in zip(self.rootings[t], wr):
                self.root[rs] += q
                for p in pcs:
                    self.pc[p] += q
        self.par = defaultdict(float)
        for (ps, c, _), v in self.pc.items():
            self.par[(ps, c)] += v

    def rooted_probs(self, t):
        out = []
        for rs, pcs in self.rootings[t]:
            p = self.root.get(rs, 0.0)
            for key in pcs:
                den = self.par.get(key[:2], 0.0)
                p *= self.pc.get(key, 0.0) / den if den else 0.0
            out.append(p)
        return np.array(out)

    def sa(self, ids, w):
        self.fit(ids, [np.full(len(self.rootings[t]), wt / len(self.rootings[t]))
                       for t, wt in zip(ids, w)])

    def em_step(self, ids, w):
        post = []
        for t, wt in zip(ids, w):
            r = self.rooted_probs(t)
            post.append(wt * r / r.sum())
        self.fit(ids, post)


def test_sa_and_em_match_a_brute_force_implementation():
    taxa = list("ABCDEF")
    newick = tr.all_unrooted_newick(taxa)  # 105 trees
    vocab = M.Vocab(batch(newick, taxa))
    rng = np.random.default_rng(1)
    ids = np.sort(rng.choice(105, 12, replace=False))
    w = rng.dirichlet(np.ones(12))
    brute = BruteSBN(newick)
    brute.sa(ids, w)
    want = np.array([brute.rooted_probs(t).sum() for t in range(105)])
    got = np.exp(M.fit_sa(vocab, ids, w).loglik(np.arange(105)))
    assert np.allclose(got, want, atol=1e-12)
    assert (want[np.setdiff1d(np.arange(105), ids)] > 0).any(), "SA should generalise here"
    for _ in range(4):
        brute.em_step(ids, w)
    em, lp = M.fit_em(vocab, ids, w, maxiter=4)
    want = np.array([brute.rooted_probs(t).sum() for t in range(105)])
    assert np.allclose(np.exp(em.loglik(np.arange(105))), want, atol=1e-12)
    assert (np.diff(lp) >= -1e-12).all(), "EM log-likelihood must not decrease"


def test_ccd_matches_brute_force():
    """CCD rooted on the edge above the first top-level child: p(split) x prod p(subsplit | clade)."""
    taxa = list("ABCDEF")
    newick = tr.all_unrooted_newick(taxa)
    vocab = M.Vocab(batch(newick, taxa))
    rng = np.random.default_rng(2)
    ids = np.sort(rng.choice(105, 15, replace=False))
    w = rng.dirichlet(np.ones(15))
    joint, split = defaultdict(float), defaultdict(float)
    for t, wt in zip(ids, w):
        adj = _graph(newick[t])
        for u in adj:
            for v in adj[u]:  # directed edge u -> v: the clade on v's side and its subsplit
                c = _rooted(adj, v, u)
                split[frozenset([c[0], frozenset(taxa) - c[0]])] += wt / 2
                if c[1]:
                    joint[(c[0], frozenset(k[0] for k in c[1]))] += wt
    clade = defaultdict(float)
    for (c, _), v in joint.items():
        clade[c] += v
    for t in range(105):
        adj, top, first = _graph(newick[t], with_top=True)
        a, b = _rooted(adj, first, top), _rooted(adj, top, first)
        p = split.get(frozenset([a[0], b[0]]), 0.0)
        stack = [a, b]
        while stack:
            c = stack.pop()
            if c[1]:
                key = (c[0], frozenset(k[0] for k in c[1]))
                p *= joint.get(key, 0.0) / clade[c[0]] if clade.get(c[0]) else 0.0
                stack.extend(c[1])
        got = math.exp(M.ccd_loglik(vocab, ids, w, np.array([t]))[0])
        assert got == pytest.approx(p, abs=1e-12), newick[t]


# --------------------------------------------------------------- real data


@needs_data
@pytest.mark.parametrize("ds,want", [
    # per-run values printed by zcrabbit/sbn experiments/real-data.ipynb, run 1:
    # CCD, SBN-SA, SBN-EM, SBN-EM-alpha, SRF
    ("DS2", (0.02919555, 0.02919555, 0.02919555, 0.0172743, 0.01756751)),
    ("DS3", (0.221534, 0.1271731, 0.1694643, 0.10760767, 0.42715164)),
])
def test_reference_per_run_values(ds, want):
    post = D.load(ds, sbn_root(), short_reps=[1])
    vocab = M.Vocab(post.trees)
    ids, w = post.runs[0]
    out = M.evaluate_all(vocab, ids, w, post.truth_ids, post.truth_w, alpha=1e-4, maxiter=1000)
    got = [out[m] for m in ("ccd", "sbn_sa", "sbn_em", "sbn_em_alpha", "srf")]
    assert np.allclose(got, want, rtol=2e-6, atol=2e-8)


@needs_data
def test_ground_truth_sizes_and_weighting():
    post = D.load("DS2", sbn_root(), short_reps=[1])
    assert len(post.taxa) == 29 and len(post.truth_ids) == 42
    assert len(post.runs[0][0]) == 7 and post.runs[0][1].sum() == pytest.approx(1.0)
    # pooled golden weights are integer counts / (10 x 750,001)
    counts = post.truth_w * 10 * D.GOLDEN_SCALE
    assert np.allclose(counts, np.round(counts))


@needs_data
def test_split_frequencies_match_dendropy():
    dendropy = pytest.importorskip("dendropy")
    path = sbn_root() / "sbn" / "short_run_data_DS1-4" / "DS3" / "rep_1" / "DS3.trprobs"
    f = D.read_trprobs(path)
    trees, rows = D.parse_trees([f], f.taxa)
    ours = defaultdict(float)
    n = len(f.taxa)
    splits = tr.topology(trees)
    for r, wt in zip(rows[0], f.weights):
        for s in splits[r]:
            ours[frozenset(f.taxa[i] for i in range(n) if int(s) >> i & 1)] += wt
    tl = dendropy.TreeList.get(path=str(path), schema="nexus", store_tree_weights=True,
                               rooting="force-unrooted")
    theirs = defaultdict(float)
    anchor = f.taxa[0]
    for t in tl:
        t.encode_bipartitions()
        for bp in t.bipartition_encoding:
            if bp.is_trivial():
                continue
            # dendropy reads unquoted underscores as spaces
            side = {x.label.replace(" ", "_") for x in bp.leafset_taxa(tl.taxon_namespace)}
            side = side if anchor not in side else set(f.taxa) - side
            theirs[frozenset(side)] += t.weight
    assert len(tl) == len(f.weights)
    assert len(ours) > 10 and set(ours) == set(theirs)
    assert all(ours[k] == pytest.approx(theirs[k], rel=1e-9) for k in ours)


# --------------------------------------------------------------- input errors


GOOD = """#NEXUS
begin trees;
   translate
    1 a,
    2 b,
    3 c,
    4 d;
   tree tree_1 [p = 0.6] = [&W 0.6] (1,(2,3),4);
   tree tree_2 [p = 0.4] = [&W 0.4] (1,(2,4),3);
end;
"""


def test_reads_a_small_file(tmp_path):
    p = tmp_path / "x.trprobs"
    p.write_text(GOOD)
    f = D.read_trprobs(p)
    assert f.taxa == list("abcd") and f.weights.tolist() == [0.6, 0.4]
    assert f.newick[0] == "(a,(b,c),d);"


@pytest.mark.parametrize("mutate,msg,line", [
    (lambda s: s[:s.index("end;")], "ends without 'end;'", None),
    (lambda s: s[:s.index("(2,4)") + 3], "truncated", 9),
    (lambda s: s.replace("[&W 0.4] ", ""), "no [&W weight]", 9),
    (lambda s: s.replace("(1,(2,4),3)", "(1,(2,9),3)"), "taxon '9'", 9),
    (lambda s: s.replace("(1,(2,3),4)", "(1,(2,3),4))"), "unbalanced", 8),
    (lambda s: s.replace("(1,(2,3),4)", "(1,(2,3,4))"), "unrooted binary", 8),
    (lambda s: s.replace("    2 b,\n", "    2 b x,\n"), "translate", 5),
    (lambda s: s.replace("#NEXUS", "NEXUS"), "not a NEXUS", 1),
])
def test_malformed_nexus_names_file_and_line(tmp_path, mutate, msg, line):
    p = tmp_path / "bad.trprobs"
    p.write_text(mutate(GOOD))
    with pytest.raises(ReproError) as err:
        f = D.read_trprobs(p)
        D.parse_trees([f], f.taxa)
    text = str(err.value)
    assert str(p) in text and msg in text
    if line is not None:
        assert f"{p}:{line}" in text


def test_missing_data_lists_where_it_looked(tmp_path):
    with pytest.raises(ReproError) as err:
        D.load("DS1", tmp_path)
    text = str(err.value)
    assert "Looked in" in text and str(tmp_path / "sbn" / "raw_data_DS1-4") in text
    assert "--data-dir" in text


def test_dirichlet_sampler_moments_and_tiny_beta():
    from papers.sbn.experiment import dirichlet

    rng = np.random.default_rng(0)
    draws = np.array([dirichlet(rng, 0.5, 3) for _ in range(20000)])
    assert np.allclose(draws.sum(1), 1.0)
    assert np.allclose(draws.mean(0), 1 / 3, atol=0.01)
    assert np.allclose(draws.var(0), (1 / 3) * (2 / 3) / (1.5 + 1), rtol=0.05)
    p = dirichlet(rng, 0.001, 10395)  # plain gamma variates underflow to 0 here
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0) and p.max() < 1


@needs_data
def test_a_changed_data_file_fails_its_checksum(tmp_path):
    import shutil

    src = sbn_root() / "sbn"
    for kind in ("raw_data_DS1-4", "short_run_data_DS1-4"):
        shutil.copytree(src / kind / "DS2", tmp_path / "sbn" / kind / "DS2")
    assert len(D.load("DS2", tmp_path).truth_ids) == 42
    f = tmp_path / "sbn" / "short_run_data_DS1-4" / "DS2" / "rep_3" / "DS2.trprobs"
    f.write_text(f.read_text().replace("[&W 0.", "[&W 0.0", 1))
    with pytest.raises(ReproError, match="rep_3/DS2.trprobs fails its checksum"):
        D.load("DS2", tmp_path)
