import numpy as np
import pytest
from scipy import stats as sps

from common.stats import bootstrap_ci


def test_bootstrap_matches_scipy_percentile_interval():
    x = np.random.default_rng(3).gamma(2.0, 50.0, size=100)
    ours = bootstrap_ci(x, resamples=20_000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile",
                        confidence_level=0.95, random_state=2).confidence_interval
    assert ours.mean == pytest.approx(x.mean())
    # two independent Monte Carlo estimates of the same quantiles
    assert ours.low == pytest.approx(ref.low, rel=0.02)
    assert ours.high == pytest.approx(ref.high, rel=0.02)
    assert ours.low < ours.mean < ours.high


def test_bootstrap_edge_cases():
    one = bootstrap_ci([5.0])
    assert (one.low, one.mean, one.high, one.n) == (5.0, 5.0, 5.0, 1)
    const = bootstrap_ci([2.0] * 10)
    assert const.low == const.high == 2.0
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_bootstrap_interval_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=20))
    large = bootstrap_ci(rng.normal(size=2000))
    assert (large.high - large.low) < (small.high - small.low) / 5
