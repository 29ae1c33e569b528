"""Subsplit Bayesian networks for tree probability estimation (Zhang & Matsen,
NeurIPS 2018, arXiv:1805.07834), with the baselines SRF and CCD.

A rooted tree is its root split and one *parent-child subsplit pair* (PCSP)
per non-root internal node (§3); the SBN gives it probability

    p(T) = p(root split) * prod_PCSP p(child subsplit | parent subsplit, child clade)   (eq. 2)

with conditionals shared wherever the same PCSP occurs.  For a rooted sample
the maximum-likelihood conditionals are normalised PCSP counts.  An unrooted
tree is the sum over its 2n - 3 rootings (§4):

- **SBN-SA**: every rooting of a sampled tree counts 1/(2n-3) (a lower bound's
  maximiser, eq. 6);
- **SBN-EM**: the rooting is latent; the E-step is the posterior over root
  edges under the current SBN, the M-step weighted PCSP counts (eq. 7-8),
  started from SA;
- **SBN-EM-alpha**: MAP-EM under a Dirichlet prior whose pseudo-counts come
  from the SA fit (§4, Theorem 1), with alpha = 1e-4 on real data and
  50/K in the simulation (the reference notebooks).

Baselines: **SRF** (sample relative frequency) and **CCD** (Larget 2013: the
conditional clade distribution, which conditions a clade's split on the clade
only).  Accuracy is KL(ground truth || estimate) over the ground truth's
support, an estimate of 0 counting as double machine epsilon.

Details that follow the reference code zcrabbit/sbn (models.py) rather than
the paper's text, because they decide the numbers of Table 1:

- SA counts each distinct PCSP of a tree once with weight w/(2n-3) (one
  update per edge orientation, ``bn_dict_update``); its conditionals equal
  the per-rooting average's (a PCSP whose sibling clade has c taxa appears in
  exactly 2c - 1 rootings of any tree, so the factor cancels), and these
  counts are the prior's pseudo-count base m~;
- the MAP conditional is (m(s,t) + alpha m~(s)/L(s)) / (m(s) + alpha m~(s)) for a
  PCSP seen in the sample and 0 otherwise, L(s) being the number of child
  subsplits seen under parent s; the root split's is (m + alpha m~)/(1 + alpha);
- EM stops after the first iteration k > 50 (0-based) whose (penalised)
  log-likelihood changed by less than 1e-5, or after ``maxiter`` (1000 on real
  data, 200 in the simulation); the log-likelihood is measured before each
  M-step and includes the log prior for EM-alpha (``logprior``);
- unrooted CCD roots the tree on the edge above the first child of its
  Newick top level: p(split) times the clade-conditional probability of every
  clade's split (``ccd_estimate``).

Everything is vectorised over trees: clades are uint64 bitsets, PCSPs are
integer ids from one vocabulary per tree set (``Vocab``), counts are
``np.bincount`` over those ids and the E-step a gather over an
(trees x rootings x n-2) id array (``papers/sbn/trees.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from papers.sbn import trees as tr

EPS = np.finfo(float).eps
LOG_EPS = np.log(EPS)


def _index_rows(keys: np.ndarray):
    """Unique rows of a 2-D uint64 array and the inverse map."""
    keys = np.ascontiguousarray(keys)
    view = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    return keys[first], inverse.reshape(-1)


class Vocab:
    """Ids for every root split, PCSP, parent subsplit and (clade, subsplit) of a tree set,
    and per tree the arrays the estimators gather from."""

    def __init__(self, trees: tr.Trees, chunk: int = 2048):
        self.trees, self.n = trees, trees.n
        T, n = len(trees), trees.n
        self.E = tr.n_rootings(n)
        enc = tr.encode(trees)
        # root splits of every rooting
        splits = tr.edge_splits(trees)
        self.split_keys, inv = np.unique(splits, return_inverse=True)
        self.root = inv.reshape(T, self.E).astype(np.int32)
        # PCSPs (sibling, child, child subsplit) and their parents (sibling, child)
        keys, inv = _index_rows(enc.pcsp.reshape(-1, 3))
        self.pcsp_keys = keys
        self.slot = inv.reshape(T, -1).astype(np.int32)  # (T, 7n-18)
        pk, self.parent = _index_rows(keys[:, :2])
        self.n_parent = len(pk)
        # the n-2 PCSPs of every rooting
        pos = tr.activity(enc, n)
        self.act = np.empty((T, self.E, n - 2), dtype=np.int32)
        for a in range(0, T, chunk):
            self.act[a:a + chunk] = np.take_along_axis(self.slot[a:a + chunk, None, :],
                                                       pos[a:a + chunk].astype(np.int64), 2)
        del pos
        # CCD: (clade, subsplit) of every in-edge, and the ones of the reference rooting
        cs_keys, inv = _index_rows(enc.clade_sub.reshape(-1, 2))
        self.cs = inv.reshape(T, n - 2, 3).astype(np.int32)
        clade_keys, self.cs_clade = np.unique(cs_keys[:, 0], return_inverse=True)
        self.n_clade = len(clade_keys)
        self.n_cs = len(cs_keys)
        pick = tr.ccd_rooting(enc, trees)
        self.ccd = np.take_along_axis(self.cs, pick[..., None], 2)[..., 0]  # (T, n-2)
        cr = trees.clade[np.arange(T), trees.ref_child]
        self.ccd_split = np.searchsorted(self.split_keys, tr.canon(cr, trees.full)).astype(np.int32)
        # each topology's split set, for SRF lookups and tests
        self.topology = tr.topology(trees)

    @property
    def n_pcsp(self) -> int:
        return len(self.pcsp_keys)


# ------------------------------------------------------------------ SBN


@dataclass
class SBN:
    """Counts over a Vocab's ids; with alpha > 0 the MAP conditionals (§4, Theorem 1)."""

    vocab: Vocab
    root: np.ndarray  # m(root split)
    pcsp: np.ndarray  # m(PCSP)
    alpha: float = 0.0
    prior_root: np.ndarray | None = None  # m~ of root splits (SA)
    prior_pcsp: np.ndarray | None = None  # m~ of PCSPs (SA)
    prior_parent: np.ndarray | None = None  # m~ of parent subsplits (SA)
    prior_len: np.ndarray | None = None  # L: child subsplits seen per parent (SA)

    def log_params(self):
        v = self.vocab
        parent_total = np.bincount(v.parent, self.pcsp, minlength=v.n_parent)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.alpha:
                a_par = self.alpha * self.prior_parent
                num = self.pcsp + (a_par / np.maximum(self.prior_len, 1))[v.parent]
                den = (parent_total + a_par)[v.parent]
                cond = np.where((self.pcsp > 0) & (den > 0), num / den, 0.0)
                root = (self.root + self.alpha * self.prior_root) / (1 + self.alpha)
            else:
                den = parent_total[v.parent]
                cond = np.where(den > 0, self.pcsp / den, 0.0)
                root = self.root
            return np.log(root), np.log(cond)

    def rooted_loglik(self, ids, log_root=None, log_cond=None) -> np.ndarray:
        """(T, E): log p of every rooting of trees ``ids`` (-inf where a PCSP is unseen)."""
        if log_root is None:
            log_root, log_cond = self.log_params()
        v = self.vocab
        return log_root[v.root[ids]] + log_cond[v.act[ids]].sum(-1)

    def loglik(self, ids, chunk: int = 4096) -> np.ndarray:
        """log p of unrooted trees ``ids``: log-sum-exp over their rootings."""
        lr, lc = self.log_params()
        out = np.empty(len(ids))
        for a in range(0, len(ids), chunk):
            out[a:a + chunk] = _logsumexp(self.rooted_loglik(ids[a:a + chunk], lr, lc))
        return out

    def logprior(self) -> float:
        """log Dirichlet prior density at the current counts, as the reference's
        ``SBN.logprior`` (enters only the EM-alpha stopping rule)."""
        v = self.vocab
        a = self.alpha
        seen_root = self.prior_root > 0
        term_root = a * np.sum(self.prior_root[seen_root] * np.log(
            (self.root[seen_root] + a * self.prior_root[seen_root]) / (1 + a)))
        parent_total = np.bincount(v.parent, self.pcsp, minlength=v.n_parent)
        seen = self.prior_pcsp > 0
        par = v.parent[seen]
        pseudo = a * self.prior_parent[par] / self.prior_len[par]
        term = np.sum(pseudo * np.log((self.pcsp[seen] + pseudo)
                                      / (a * self.prior_parent[par] + parent_total[par])))
        return float(term_root + term)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[..., None]).sum(-1))


def fit_sa(vocab: Vocab, ids: np.ndarray, w: np.ndarray, alpha: float = 0.0) -> SBN:
    """SBN-SA: every distinct PCSP and root split of a tree counted with w / (2n-3)."""
    wr = w / vocab.E
    root = np.bincount(vocab.root[ids].ravel(), np.repeat(wr, vocab.E),
                       minlength=len(vocab.split_keys))
    slots = vocab.slot[ids]
    pcsp = np.bincount(slots.ravel(), np.repeat(wr, slots.shape[1]), minlength=vocab.n_pcsp)
    model = SBN(vocab, root, pcsp, alpha)
    model.prior_root = root.copy()
    model.prior_pcsp = pcsp.copy()
    model.prior_parent = np.bincount(vocab.parent, pcsp, minlength=vocab.n_parent)
    model.prior_len = np.bincount(vocab.parent, pcsp > 0, minlength=vocab.n_parent)
    return model


def fit_em(vocab: Vocab, ids: np.ndarray, w: np.ndarray, alpha: float = 0.0,
           maxiter: int = 1000, miniter: int = 50, abstol: float = 1e-5):
    """SBN-EM (alpha = 0) or SBN-EM-alpha, started from SA; returns (model, log-likelihoods)."""
    model = fit_sa(vocab, ids, w, alpha)
    R, A = vocab.root[ids], vocab.act[ids]  # (T, E), (T, E, n-2)
    n_split, n_pcsp = len(vocab.split_keys), vocab.n_pcsp
    Rf, Af = R.ravel(), A.ravel()
    logp = []
    for k in range(maxiter):
        lr, lc = model.log_params()
        rooted = lr[R] + lc[A].sum(-1)
        ll = _logsumexp(rooted)
        post = np.exp(rooted - ll[:, None])  # E-step: p(root edge | tree)
        logp.append(float(w @ ll) + (model.logprior() if alpha else 0.0))
        q = (w[:, None] * post).ravel()
        model.root = np.bincount(Rf, q, minlength=n_split)  # M-step
        model.pcsp = np.bincount(Af, np.repeat(q, A.shape[2]), minlength=n_pcsp)
        if k > miniter and abs(logp[-1] - logp[-2]) < abstol:
            break
    return model, np.array(logp)


# ----------------------------------------------------------- baselines


def ccd_loglik(vocab: Vocab, ids: np.ndarray, w: np.ndarray, eval_ids: np.ndarray) -> np.ndarray:
    """log CCD(T) for trees ``eval_ids`` from the sample (ids, w): p(reference split) times
    p(subsplit | clade) for every clade of the tree rooted on the reference edge."""
    cs = vocab.cs[ids].reshape(len(ids), -1)
    joint = np.bincount(cs.ravel(), np.repeat(w, cs.shape[1]), minlength=vocab.n_cs)
    clade = np.bincount(vocab.cs_clade, joint, minlength=vocab.n_clade)
    # a tree holds each of its splits once: the weight of the trees holding each split
    split = np.bincount(vocab.root[ids].ravel(), np.repeat(w, vocab.E),
                        minlength=len(vocab.split_keys))
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(clade[vocab.cs_clade] > 0, joint / clade[vocab.cs_clade], 0.0)
        return np.log(split[vocab.ccd_split[eval_ids]]) + np.log(cond[vocab.ccd[eval_ids]]).sum(-1)


def srf(ids: np.ndarray, w: np.ndarray, eval_ids: np.ndarray) -> np.ndarray:
    """Sample relative frequency of trees ``eval_ids`` (ids are topology rows of one Vocab)."""
    freq = dict(zip(ids.tolist(), w.tolist()))
    return np.array([freq.get(i, 0.0) for i in eval_ids.tolist()])


def kl(truth_w: np.ndarray, est_log: np.ndarray) -> float:
    """KL(truth || estimate) over the truth's support, as the reference computes it:
    sum w log(w + eps) - sum w log(max(q, eps))."""
    return float(np.sum(truth_w * np.log(truth_w + EPS))
                 - np.sum(truth_w * np.maximum(est_log, LOG_EPS)))


METHODS = ("srf", "ccd", "sbn_sa", "sbn_em", "sbn_em_alpha")


def evaluate_all(vocab: Vocab, ids, w, truth_ids, truth_w, alpha: float, maxiter: int,
                 keep_estimates: bool = False) -> dict:
    """Fit every estimator to the sample (ids, w) and score it against the truth."""
    out = {}
    with np.errstate(divide="ignore"):
        est = {"srf": np.log(srf(ids, w, truth_ids)),
               "ccd": ccd_loglik(vocab, ids, w, truth_ids),
               "sbn_sa": fit_sa(vocab, ids, w).loglik(truth_ids)}
    em, lp = fit_em(vocab, ids, w, 0.0, maxiter=maxiter)
    est["sbn_em"] = em.loglik(truth_ids)
    ema, lpa = fit_em(vocab, ids, w, alpha, maxiter=maxiter)
    est["sbn_em_alpha"] = ema.loglik(truth_ids)
    for m in METHODS:
        out[m] = kl(truth_w, est[m])
    out["em_iters"], out["em_alpha_iters"] = len(lp), len(lpa)
    out["em_loglik"], out["em_alpha_loglik"] = lp.tolist(), lpa.tolist()
    if keep_estimates:
        out["estimates"] = {m: e.tolist() for m, e in est.items()}
    return out
