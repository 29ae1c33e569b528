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


def _rec(profile, metrics):
    return SimpleNamespace(profile=profile, metrics=metrics)


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
    assert rows["value"].verdict == claims.REPRODUCED      # mean 89.2, gap -0.8
    assert "n=3" in rows["value"].ours
    assert rows["order"].verdict == claims.REPRODUCED      # held in 2/3 >= 0.6
    assert "2/3" in rows["order"].detail
    assert rows["full-only"].verdict == claims.NOT_COMPARABLE
    assert rows["unk"].verdict == claims.UNKNOWN
    far = {r.claim.id: r for r in claims.compare(exp, [_rec("cpu", {"acc": 80.0, "lq": 0, "cce": 1})])}
    assert far["value"].verdict == claims.DEVIATES and "-10" in far["value"].detail
    assert far["order"].verdict == claims.DEVIATES
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
