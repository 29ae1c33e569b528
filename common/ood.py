"""Out-of-distribution detection and calibration metrics, shared by the papers
that score predictive uncertainty (the uncertainty lecture's epistemic topic;
Lee et al.'s GAN-trained confident classifiers).

Detection (Hendrycks & Gimpel 2017; Liang et al. 2018, "ODIN", §4): in-distribution
examples are the *positives*, and a score is higher for inputs that look
in-distribution (max softmax probability; pass ``-entropy`` or
``-mutual_information`` for the uncertainty scores).  ``detection(s_in, s_out)``:

- ``auroc``: the probability that a random positive scores above a random
  negative, ties counting one half (Mann-Whitney U with mid-ranks);
- ``aupr_in`` / ``aupr_out``: average precision with in- (out-) distribution as
  the positive class (for ``aupr_out`` the scores are negated), the step-wise sum
  ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds, as scikit-learn's
  ``average_precision_score``;
- ``tnr_at_tpr95``: the fraction of negatives scored below the largest threshold
  that still keeps at least 95% of the positives (``score >= threshold``);
- ``detection_acc``: ``max_t 0.5 * (TPR(t) + TNR(t))`` over every threshold
  (ODIN's ``1 - min_t {0.5 P_in(s < t) + 0.5 P_out(s >= t)}``).

Difference from the ODIN-derived metric code (Liang et al.'s calMetric.py, which Lee
et al.'s alinlab/Confident_classifier test script reuses, as described in the research
notes): there, "TNR at TPR 95%" is ``1 -`` the *average* FPR over all thresholds of a
fixed grid whose TPR lies in [0.94, 0.96], not the FPR at the one threshold where the
TPR first reaches 95%; and detection accuracy is ``1 - min_t (FNR(t) + FPR(t)) / 2``
over a grid of 200,000 thresholds between the smallest and the largest score, not over
every distinct score.  Here both are exact on the empirical ROC (every distinct
threshold, ties handled as above).  On smooth score distributions the two agree to
well under 0.5 percentage points (``tests/test_ood.py`` checks this against an
implementation of the grid-averaged form); they differ most when few scores fall near
TPR 95%, where the averaged form mixes in neighbouring thresholds.  ``auroc``,
``aupr_in`` and ``aupr_out`` equal scikit-learn's ``roc_auc_score`` and
``average_precision_score`` (also checked there).

Calibration (Guo et al. 2017, §2): ``ece`` is the top-label expected calibration
error over equal-width confidence bins ``(k/B, (k+1)/B]`` (a confidence exactly
on an edge falls in the lower bin; bin 0 also takes 0); ``nll`` the mean
negative log-likelihood of the labels; ``brier`` the mean over examples of
``sum_k (p_k - 1[y = k])^2``.

Everything works on torch tensors or numpy arrays, batched, in float64.
"""

from __future__ import annotations

import math

import torch

_EPS = 1e-12


def _t(a) -> torch.Tensor:
    return torch.as_tensor(a).detach().to("cpu", torch.float64)


# ------------------------------------------------------------------ scores


def max_softmax(probs) -> torch.Tensor:
    """Maximum class probability per example, ``probs``: (N, K)."""
    return _t(probs).max(-1).values


def entropy(probs) -> torch.Tensor:
    """Entropy (nats) of each row of ``probs`` (..., K)."""
    p = _t(probs)
    return -(p * torch.log(p.clamp_min(_EPS))).sum(-1)


def mutual_information(prob_samples) -> torch.Tensor:
    """Mutual information between the label and the weights (the epistemic part of
    the predictive entropy), from MC / ensemble samples ``(T, N, K)``:
    ``H[mean_t p_t] - mean_t H[p_t]``, clamped at 0 against round-off."""
    p = _t(prob_samples)
    return (entropy(p.mean(0)) - entropy(p).mean(0)).clamp_min(0.0)


# ------------------------------------------------------------------ detection


def _curve(s_in: torch.Tensor, s_out: torch.Tensor):
    """TPR and FPR at every distinct threshold, from the highest down (``score >= t``)."""
    scores = torch.cat([s_in, s_out])
    pos = torch.cat([torch.ones_like(s_in), torch.zeros_like(s_out)])
    order = torch.argsort(scores, descending=True, stable=True)
    scores, pos = scores[order], pos[order]
    tp, fp = torch.cumsum(pos, 0), torch.cumsum(1 - pos, 0)
    # keep the last index of each group of tied scores: one point per distinct threshold
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    return scores[last], tp[last] / len(s_in), fp[last] / len(s_out), tp[last], fp[last]


def auroc(s_in, s_out) -> float:
    """P(score_in > score_out) + 0.5 P(tie), by mid-ranks (Mann-Whitney U)."""
    s_in, s_out = _t(s_in).flatten(), _t(s_out).flatten()
    scores = torch.cat([s_in, s_out])
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    below = torch.cumsum(counts, 0) - counts  # how many scores are strictly smaller
    midrank = below.double() + (counts.double() + 1) / 2  # 1-based mid-rank of each value
    rank_in = midrank[inverse[:len(s_in)]].sum()
    n1, n0 = len(s_in), len(s_out)
    return float((rank_in - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(s_pos, s_neg) -> float:
    """Average precision with ``s_pos`` the positives (higher = more positive)."""
    _, tpr, _, tp, fp = _curve(_t(s_pos).flatten(), _t(s_neg).flatten())
    precision = tp / (tp + fp)
    recall_steps = torch.diff(tpr, prepend=torch.zeros(1, dtype=torch.float64))
    return float((recall_steps * precision).sum())


def tnr_at_tpr(s_in, s_out, tpr_level: float = 0.95) -> float:
    """True-negative rate at the largest threshold whose TPR is at least ``tpr_level``."""
    s_in, s_out = _t(s_in).flatten(), _t(s_out).flatten()
    thresholds, tpr, fpr, _, _ = _curve(s_in, s_out)
    first = int(torch.nonzero(tpr >= tpr_level - 1e-12)[0])  # thresholds go from high to low
    return float(1.0 - fpr[first])


def detection_accuracy(s_in, s_out) -> float:
    """``max_t 0.5 (TPR(t) + TNR(t))``, including the threshold above every score."""
    _, tpr, fpr, _, _ = _curve(_t(s_in).flatten(), _t(s_out).flatten())
    best = (0.5 * (tpr + 1.0 - fpr)).max()
    return float(max(best, torch.tensor(0.5, dtype=torch.float64)))


def detection(s_in, s_out) -> dict:
    """Every detection metric for in-distribution scores ``s_in`` vs out ``s_out``."""
    return {"auroc": auroc(s_in, s_out), "aupr_in": average_precision(s_in, s_out),
            "aupr_out": average_precision(-_t(s_out), -_t(s_in)),
            "tnr_at_tpr95": tnr_at_tpr(s_in, s_out, 0.95),
            "detection_acc": detection_accuracy(s_in, s_out)}


# ------------------------------------------------------------------ calibration


def reliability(probs, labels, n_bins: int = 15) -> dict:
    """Per equal-width bin of top-label confidence: count, mean confidence and
    accuracy (NaN for an empty bin); what a reliability diagram plots."""
    p, y = _t(probs), torch.as_tensor(labels).to("cpu").long()
    conf, pred = p.max(-1)
    correct = (pred == y).double()
    # bin k holds (k/B, (k+1)/B]; 0 goes to bin 0
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    nan = torch.full_like(count, math.nan)
    return {"count": count.tolist(),
            "confidence": torch.where(count > 0, conf_sum / count.clamp_min(1), nan).tolist(),
            "accuracy": torch.where(count > 0, acc_sum / count.clamp_min(1), nan).tolist(),
            "edges": torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).tolist()}


def ece(probs, labels, n_bins: int = 15) -> float:
    """Top-label expected calibration error: ``sum_b |B_b|/N |acc(B_b) - conf(B_b)|``."""
    r = reliability(probs, labels, n_bins)
    n = sum(r["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"])
                     if c > 0))


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels under ``probs`` (N, K)."""
    p, y = _t(probs), torch.as_tensor(labels).to("cpu").long()
    return float(-torch.log(p.gather(1, y[:, None]).clamp_min(_EPS)).mean())


def brier(probs, labels) -> float:
    """Mean over examples of the squared distance between ``probs`` and the one-hot label."""
    p, y = _t(probs), torch.as_tensor(labels).to("cpu").long()
    onehot = torch.nn.functional.one_hot(y, p.shape[-1]).double()
    return float(((p - onehot) ** 2).sum(-1).mean())


def classification(probs, labels, n_bins: int = 15) -> dict:
    """Accuracy (percent), ECE, NLL and Brier score of predictive probabilities."""
    p, y = _t(probs), torch.as_tensor(labels).to("cpu").long()
    return {"test_acc": 100.0 * float((p.argmax(-1) == y).double().mean()),
            "ece": ece(p, y, n_bins), "nll": nll(p, y), "brier": brier(p, y)}
