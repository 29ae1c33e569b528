"""Small statistics shared by papers: bootstrap confidence intervals.

``bootstrap_ci(values)`` gives the mean and a percentile bootstrap interval of
it, resampling all replicates in one array operation (no Python loop over
resamples).  It is what episode-return tables ("mean ± 95 % CI over 100
episodes") use; tests cross-check it against ``scipy.stats.bootstrap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}mean": self.mean, f"{prefix}ci_low": self.low,
                f"{prefix}ci_high": self.high, f"{prefix}n": self.n}

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}] (n={self.n})"


def bootstrap_ci(values, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0, chunk: int = 2_000) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval at ``confidence``.

    Resamples are drawn ``chunk`` at a time as one index array, so memory stays
    at ``chunk * len(values)`` integers.  One value gives a zero-width interval;
    no values raises ``ValueError``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean, float(low), float(high), int(x.size))
