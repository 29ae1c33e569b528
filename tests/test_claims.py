"""Claims: the expression evaluator, verdicts and schema errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common import claims
from registry import ReproError


def test_evaluate_known_answers():
    m = {"a/x": 3.0, "b/x": 1.0, "c": 2.0}
    assert claims.evaluate("{a/x} > {b/x}", m) is True
    assert claims.evaluate("{a/x} - {b/x} >= 2", m) is True
    assert claims.evaluate("{a/x} / {c} < 1.5 and {c} > 0", m) is False
    assert claims.evaluate("abs({b/x} - {a/x}) >= 2", m) is True
    with pytest.raises(ReproError):  # equality of floats is not a claim
        claims.evaluate("{a/x} == 3", m)
    assert claims.evaluate("0 <= {b/x} <= 1", m) is True
    assert claims.evaluate("{missing} > 1", m) is None


def test_expression_whitelist():
    with pytest.raises(ReproError):
        claims._compile("__import__('os').system('true')")
    with pytest.raises(ReproError):
        claims._compile("{a}.real > 1")


def _claims_file(tmp_path, body: str):
    p = tmp_path / "claims.toml"
    p.write_text(body)
    return SimpleNamespace(claims_path=p)


def _rec(profile, metrics, seed=0):
    return SimpleNamespace(profile=profile, metrics=metrics, seed=seed)


CLAIMS = """
[[claims]]
id = "value"
text = "t"
source = "Table 1"
profiles = ["cpu"]
metric = "acc"
reported = 90.0
tolerance = 2.0

[[claims]]
id = "order"
text = "t"
source = "Fig. 2"
profiles = ["cpu"]
expect = "{lq} > {cce}"
hold_fraction = 0.6

[[claims]]
id = "full-only"
text = "t"
source = "Table 2"
profiles = ["full"]
metric = "acc"
reported = 95.0
rel_tolerance = 0.01

[[claims]]
id = "unk"
text = "t"
source = "Table 3 (not found)"
profiles = ["cpu"]
metric = "acc"
reported = "unknown"
"""


def test_verdicts(tmp_path):
    exp = _claims_file(tmp_path, CLAIMS)
    runs = [_rec("cpu", {"acc": 89.0, "lq": 2, "cce": 1}), _rec("cpu", {"acc": 90.0, "lq": 1, "cce": 2}),
            _rec("cpu", {"acc": 88.6, "lq": 3, "cce": 1})]
    rows = {r.claim.id: r for r in claims.compare(exp, runs)}
    assert rows["value"].verdict == claims.REPRODUCED      # every seed within 2 of 90
    assert rows["value"].ours == "89, 90, 88.6 (mean 89.2)"
    assert rows["order"].verdict == claims.REPRODUCED      # held in 2/3 >= 0.6
    assert "2/3" in rows["order"].detail
    assert rows["full-only"].verdict == claims.NOT_COMPARABLE
    assert rows["unk"].verdict == claims.UNKNOWN
    far = {r.claim.id: r for r in claims.compare(exp, [_rec("cpu", {"acc": 80.0, "lq": 0, "cce": 1})])}
    assert far["value"].verdict == claims.DEVIATES and "-10" in far["value"].detail
    assert far["order"].verdict == claims.NOT_CHECKABLE  # a bare ordering on one seed, no margin
    none = {r.claim.id: r for r in claims.compare(exp, [])}
    assert none["value"].verdict == claims.NOT_RUN
    assert claims.counts(list(none.values()), "cpu") == (0, 2)


@pytest.mark.parametrize("body, message", [
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["cpu"]\nmetric="m"\nreported=1.0\n',
     "needs a tolerance or an expect"),
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["gpu"]\nexpect="{m} > 1"\n', "unknown profile"),
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["smoke"]\nexpect="{m} > 1"\n', "never compared"),
    ('[[claims]]\nid="a"\ntext="t"\nprofiles=["cpu"]\nexpect="{m} > 1"\n', "missing 'source'"),
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["cpu"]\nmetric="m"\nreported="about 3"\ntolerance=1\n',
     "number or \"unknown\""),
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["cpu"]\nexpect="{m} >"\n', "does not parse"),
    ('[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["cpu"]\nexpect="{m} > 1"\ntypo=1\n', "unknown field"),
])
def test_schema_errors(tmp_path, body, message):
    p = tmp_path / "claims.toml"
    p.write_text(body)
    with pytest.raises(ReproError, match=message):
        claims.load_claims(p)


def _one(body: str, tmp_path, *seeds_metrics, profile="cpu"):
    exp = _claims_file(tmp_path, body)
    recs = [_rec(profile, m, seed=i) for i, m in enumerate(seeds_metrics)]
    return {r.claim.id: r for r in claims.compare(exp, recs)}


NUMERIC = """
[[claims]]
id = "acc"
text = "t"
source = "Table 1"
profiles = ["cpu"]
metric = "acc"
reported = 10.0
tolerance = 1.0
note = "a caveat the reader must see"
"""


def test_a_nan_seed_makes_the_claim_incomplete(tmp_path):
    """A diverged seed (non-finite, stored as None, or missing) never vanishes from the
    denominator: the claim is incomplete, whatever the other seeds say."""
    for bad in ({"acc": None}, {"acc": float("nan")}, {"acc": float("inf")}, {}):
        row = _one(NUMERIC, tmp_path, {"acc": 10.0}, bad, {"acc": 10.2})["acc"]
        assert row.verdict == claims.INCOMPLETE, bad
        assert "seed(s) 1 of 3" in row.detail
    order = CLAIMS.split("[[claims]]")[2]
    row = _one("[[claims]]" + order, tmp_path, {"lq": 2, "cce": 1}, {"lq": float("nan"), "cce": 1},
               {"lq": 3, "cce": 1})["order"]
    assert row.verdict == claims.INCOMPLETE  # held in 2/2 finite seeds would have passed before


def test_numeric_claims_are_judged_per_seed(tmp_path):
    """Seeds 20, 0 and 10 against 10 ± 1: the mean is on the spot, the seeds are not."""
    row = _one(NUMERIC, tmp_path, {"acc": 20.0}, {"acc": 0.0}, {"acc": 10.0})["acc"]
    assert row.verdict == claims.DEVIATES
    assert row.values == [20.0, 0.0, 10.0] and "20, 0, 10" in row.ours
    assert "held in 1/3" in row.detail and "not in seed 0, 1" in row.detail
    half = NUMERIC + "hold_fraction = 0.3\n"
    assert _one(half, tmp_path, {"acc": 20.0}, {"acc": 0.0}, {"acc": 10.0})["acc"].verdict \
        == claims.REPRODUCED


@pytest.mark.parametrize("expect", ["{a} - {b}", "{a}", "abs({a} - {b})", "{a} * 2 + 1",
                                    "({a} > 1) + 1", "{a} > 'x'", "1 > 0"])
def test_expect_must_compare(tmp_path, expect):
    body = f'[[claims]]\nid="a"\ntext="t"\nsource="s"\nprofiles=["cpu"]\nexpect="{expect}"\n'
    with pytest.raises(ReproError, match="compares nothing|uses|reads no metric"):
        _one(body, tmp_path)
    assert claims.evaluate("{a} > 1 and ({b} < 2 or {a} >= 3)", {"a": 2, "b": 5}) is False


PRE = """
[[claims]]
id = "fit"
text = "the nets fit"
source = "precondition"
profiles = ["cpu"]
kind = "precondition"
expect = "{train_acc} >= 99"

[[claims]]
id = "effect"
text = "the effect"
source = "Fig. 1"
profiles = ["cpu"]
expect = "{effect} > 5"

[[claims]]
id = "independent"
text = "needs nothing"
source = "Fig. 2"
profiles = ["cpu"]
expect = "{effect} > 1"
requires = []
"""


def test_failed_precondition_gates_claims_and_is_not_counted(tmp_path):
    ok = _one(PRE, tmp_path, {"train_acc": 99.5, "effect": 7})
    assert ok["effect"].verdict == claims.REPRODUCED
    assert claims.counts(list(ok.values()), "cpu") == (2, 2)  # the precondition is not counted
    assert claims.precondition_counts(list(ok.values()), "cpu") == (1, 1)
    bad = _one(PRE, tmp_path, {"train_acc": 80.0, "effect": 7})
    assert bad["fit"].verdict == claims.DEVIATES
    assert bad["effect"].verdict == claims.NOT_CHECKABLE and "fit" in bad["effect"].detail
    assert bad["independent"].verdict == claims.REPRODUCED
    assert claims.counts(list(bad.values()), "cpu") == (1, 2)
    with pytest.raises(ReproError, match="not a precondition"):
        _one(PRE.replace("requires = []", 'requires = ["effect"]'), tmp_path)


BOUND = """
[[claims]]
id = "robust"
text = "robust accuracy under attacks weaker than the paper's"
source = "Table 1"
profiles = ["cpu"]
metric = "acc"
reported = 79.9
tolerance = 10.0
bound = "upper"
"""


def test_upper_bound_is_one_sided(tmp_path):
    """An upper bound far above the paper is consistent with it; one below the paper's
    value (minus the tolerance) is a real gap.  The table marks it with ≤."""
    high = _one(BOUND, tmp_path, {"acc": 95.0})["robust"]
    assert high.verdict == claims.REPRODUCED and high.ours == "≤ 95" and "upper bound" in high.detail
    assert _one(BOUND, tmp_path, {"acc": 69.0})["robust"].verdict == claims.DEVIATES
    assert _one(BOUND, tmp_path, {"acc": 70.0})["robust"].verdict == claims.REPRODUCED
    low = BOUND.replace('"upper"', '"lower"')
    assert _one(low, tmp_path, {"acc": 60.0})["robust"].verdict == claims.REPRODUCED
    assert _one(low, tmp_path, {"acc": 90.0})["robust"].verdict == claims.DEVIATES
    assert _one(low, tmp_path, {"acc": 60.0})["robust"].ours == "≥ 60"
    with pytest.raises(ReproError, match="bound must be"):
        _one(BOUND.replace('"upper"', '"above"'), tmp_path)


ORDER = """
[[claims]]
id = "order"
text = "a beats b"
source = "Fig. 3"
profiles = ["cpu"]
expect = "{a} > {b}"
"""


def test_single_seed_bare_ordering_needs_a_margin(tmp_path):
    one = _one(ORDER, tmp_path, {"a": 50.1, "b": 50.0})["order"]
    assert one.verdict == claims.NOT_CHECKABLE and "margin" in one.detail
    three = _one(ORDER, tmp_path, {"a": 51, "b": 50}, {"a": 52, "b": 50}, {"a": 51, "b": 50})
    assert three["order"].verdict == claims.REPRODUCED
    margin = ORDER + "margin = 0.5\n"
    assert _one(margin, tmp_path, {"a": 50.1, "b": 50.0})["order"].verdict == claims.DEVIATES
    assert _one(margin, tmp_path, {"a": 50.6, "b": 50.0})["order"].verdict == claims.REPRODUCED
    flipped = margin.replace("{a} > {b}", "{b} < {a}")
    assert _one(flipped, tmp_path, {"a": 50.1, "b": 50.0})["order"].verdict == claims.DEVIATES
    # a comparison that states its own gap is not bare, and needs no margin
    gap = ORDER.replace("{a} > {b}", "{a} - {b} > 2")
    assert _one(gap, tmp_path, {"a": 53, "b": 50})["order"].verdict == claims.REPRODUCED
    assert claims.evaluate("{a} > {b}", {"a": 1.0, "b": 0.9}, margin=0.2) is False
    assert claims.evaluate("{a} > 2 * {b}", {"a": 1.0, "b": 0.45}, margin=0.2) is True


def test_every_note_is_shown_whatever_the_verdict(tmp_path):
    rows = _one(NUMERIC, tmp_path, {"acc": 10.0})
    assert rows["acc"].verdict == claims.REPRODUCED
    assert "a caveat the reader must see" in claims.markdown_table(list(rows.values()))


def test_paper_numbers_are_counted_apart_from_orderings(tmp_path):
    rows = _one(NUMERIC + CLAIMS.split("[[claims]]", 2)[2].join(["[[claims]]", ""]), tmp_path,
                {"acc": 10.0, "lq": 2, "cce": 1})
    assert claims.paper_number_counts(list(rows.values()), "cpu") == (1, 1, 0)
