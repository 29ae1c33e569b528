"""Claims are data: ``claims.toml`` lists what a paper reports; ``compare``
turns runs into one verdict per claim, judging every seed.

Schema of one ``[[claims]]`` entry::

    id        = "lq-beats-cce-u08"            # unique within the file
    text      = "Lq beats CCE at uniform noise 0.8"
    source    = "Table 2 (CIFAR-10)"           # where the paper reports it
    profiles  = ["cpu", "full"]                # profiles at which it should hold
    kind      = "claim"                        # or "precondition" (see below)
    # a numeric claim, judged per seed:
    metric    = "u0.8/lq/test_acc"             # a key of the run's metrics.json
    reported  = 64.07                          # or "unknown" (never guessed)
    tolerance = 2.0                            # |ours - reported| <= tolerance
    # (or rel_tolerance = 0.02)
    bound     = "upper"                        # optional: ours is only an upper (lower)
                                               # bound, judged one-sided (see below)
    # or an ordering / inequality between metrics, checked per seed:
    expect    = "{u0.8/lq/test_acc} > {u0.8/cce/test_acc}"
    margin    = 1.0                            # the minimum gap that counts (see below)
    hold_fraction = 0.66                       # of seeds where it must hold (default 1)
    requires  = ["nets-memorise"]              # preconditions it needs (default: all)
    note      = "why it should (not) hold at cpu scale"   # shown with every verdict

Rules:

- ``expect`` is a comparison, or ``and``/``or`` of comparisons, between
  expressions of metric references ``{name}``, numbers, ``+ - * /`` and
  ``abs/min/max``; anything else (``"{a} - {b}"``, which is "true" whenever the
  difference is non-zero) is rejected when the file is loaded.
- Every seed is judged: a numeric claim holds in a seed when that seed's value
  is within the tolerance; the claim is reproduced when it holds in at least
  ``ceil(hold_fraction * seeds)`` seeds.  A seed whose metric is missing or
  non-finite makes the claim *incomplete*, which never counts as reproduced.
- ``bound = "upper"``: our value only bounds the truth from above (an accuracy
  under attacks weaker than the paper's).  It is consistent with the paper, and
  so *reproduced*, when ``ours >= reported - tolerance``; ``"lower"``
  symmetrically.  Tables mark such values "≤" / "≥".
- A comparison between two measured quantities that states no gap of its own
  (``{a} > {b}``, no number in it) is a *bare ordering*.  Judged on fewer than
  three seeds it needs ``margin``: each bare comparison must then hold by at
  least that much (``{a} - {b} >= margin``).  Without one it is *not checkable*.
- ``kind = "precondition"``: a check that the experiment worked as intended
  (the nets memorised, the bound is below the attacks), not a claim of the
  paper.  Preconditions are reported apart and never counted in held/total; a
  claim whose precondition did not hold is *not checkable*.  ``requires``
  names the preconditions a claim needs; by default, every precondition.

Verdicts: ``reproduced``; ``deviates`` (with the gap); ``incomplete`` (a seed's
metric missing or non-finite); ``not checkable`` (a precondition failed, or a
bare ordering on too few seeds without a margin); ``not run``; ``not comparable
at this profile`` (the claim is not expected to hold there); ``unknown`` (the
paper's value was not found, so there is nothing to check ours against).
"""

from __future__ import annotations

import ast
import math
import operator
import re
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from registry import PROFILES, ReproError

REPRODUCED, DEVIATES, INCOMPLETE = "reproduced", "deviates", "incomplete"
NOT_CHECKABLE, NOT_RUN = "not checkable", "not run"
NOT_COMPARABLE, UNKNOWN = "not comparable at this profile", "unknown"
CLAIM, PRECONDITION = "claim", "precondition"

_FIELDS = {"id", "text", "source", "profiles", "kind", "metric", "reported", "unit", "tolerance",
           "rel_tolerance", "bound", "expect", "margin", "hold_fraction", "requires", "note"}
_REF = re.compile(r"\{([^{}]+)\}")
MIN_SEEDS_WITHOUT_MARGIN = 3


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    profiles: tuple[str, ...]
    kind: str = CLAIM
    metric: str | None = None
    reported: float | str | None = None
    unit: str = ""
    tolerance: float | None = None
    rel_tolerance: float | None = None
    bound: str | None = None
    expect: str | None = None
    margin: float | None = None
    hold_fraction: float = 1.0
    requires: tuple[str, ...] | None = None  # None: every precondition of the file
    note: str = ""

    @property
    def metrics(self) -> list[str]:
        """Every metric the claim reads."""
        refs = _REF.findall(self.expect or "")
        return list(dict.fromkeys(([self.metric] if self.metric else []) + refs))

    @property
    def checkable(self) -> bool:
        """Has something to check ours against (an ordering, or a reported number)."""
        return self.expect is not None or isinstance(self.reported, (int, float))

    @property
    def is_precondition(self) -> bool:
        return self.kind == PRECONDITION

    @property
    def checks_paper_number(self) -> bool:
        """Compares ours with a number the paper reports (not an ordering)."""
        return self.expect is None and isinstance(self.reported, (int, float))

    @property
    def bare_ordering(self) -> bool:
        return self.expect is not None and _has_bare_comparison(_compile(self.expect)[0])

    def tol(self) -> float:
        return self.tolerance if self.tolerance is not None else abs(self.reported) * self.rel_tolerance

    def reported_str(self) -> str:
        if self.reported is None:
            return f"`{self.expect}`" if self.expect else "-"
        if isinstance(self.reported, str):
            return self.reported
        return f"{self.reported:g}{self.unit}"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load_claims(path: Path) -> list[Claim]:
    """Parse and validate a claims file; any schema problem is one clear error."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ReproError(f"claims file {path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReproError(f"claims file {path} is not valid TOML: {exc}") from None
    entries = data.get("claims", [])
    if not isinstance(entries, list) or not entries:
        raise ReproError(f"{path}: expected one or more [[claims]] tables")
    claims, seen = [], set()
    for i, e in enumerate(entries):
        claims.append(_parse_claim(e, f"{path} claim #{i + 1} ({e.get('id', '?')})", seen))
    preconditions = {c.id for c in claims if c.is_precondition}
    for c in claims:
        for r in c.requires or ():
            if r not in preconditions:
                raise ReproError(f"{path} claim {c.id}: requires {r!r}, which is not a "
                                 f"precondition of this file")
    return claims


def _parse_claim(e: dict, where: str, seen: set) -> Claim:
    unknown = set(e) - _FIELDS
    if unknown:
        raise ReproError(f"{where}: unknown field(s) {sorted(unknown)}")
    for req in ("id", "text", "source", "profiles"):
        if req not in e:
            raise ReproError(f"{where}: missing {req!r}")
    if e["id"] in seen:
        raise ReproError(f"{where}: duplicate id")
    seen.add(e["id"])
    bad = [p for p in e["profiles"] if p not in PROFILES]
    if bad:
        raise ReproError(f"{where}: unknown profile(s) {bad}")
    if "smoke" in e["profiles"]:
        raise ReproError(f"{where}: smoke numbers are never compared with the paper")
    kind = e.get("kind", CLAIM)
    if kind not in (CLAIM, PRECONDITION):
        raise ReproError(f"{where}: kind must be \"claim\" or \"precondition\", not {kind!r}")
    rep = e.get("reported")
    if isinstance(rep, str) and rep != "unknown":
        raise ReproError(f"{where}: reported must be a number or \"unknown\", not {rep!r}")
    has_tol = "tolerance" in e or "rel_tolerance" in e
    if has_tol and not _number(rep):
        raise ReproError(f"{where}: a tolerance needs a numeric reported value")
    if has_tol and "metric" not in e:
        raise ReproError(f"{where}: a tolerance needs the metric it applies to")
    if has_tol and "expect" in e:
        raise ReproError(f"{where}: give either a tolerance or an expect, not both")
    if _number(rep) and not has_tol and "expect" not in e:
        raise ReproError(f"{where}: a numeric reported value needs a tolerance or an expect")
    for key in ("tolerance", "rel_tolerance", "margin"):
        if key in e and not (_number(e[key]) and e[key] >= 0):
            raise ReproError(f"{where}: {key} must be a number >= 0")
    if "bound" in e:
        if e["bound"] not in ("upper", "lower"):
            raise ReproError(f"{where}: bound must be \"upper\" or \"lower\", not {e['bound']!r}")
        if not has_tol:
            raise ReproError(f"{where}: a bound is judged against a reported value with a "
                             f"tolerance; give metric, reported and tolerance")
    if "expect" in e:
        _compile(e["expect"], where)
    elif "margin" in e:
        raise ReproError(f"{where}: margin applies to an expect (an ordering)")
    if kind == PRECONDITION and not ("expect" in e or has_tol):
        raise ReproError(f"{where}: a precondition needs an expect or a tolerance to check")
    if "requires" in e:
        if kind == PRECONDITION:
            raise ReproError(f"{where}: a precondition cannot require another")
        if not (isinstance(e["requires"], list) and all(isinstance(r, str) for r in e["requires"])):
            raise ReproError(f"{where}: requires must be a list of precondition ids")
    if not 0 < e.get("hold_fraction", 1.0) <= 1:
        raise ReproError(f"{where}: hold_fraction must be in (0, 1]")
    return Claim(
        id=e["id"], text=e["text"], source=e["source"], profiles=tuple(e["profiles"]),
        kind=kind, metric=e.get("metric"), reported=rep, unit=e.get("unit", ""),
        tolerance=e.get("tolerance"), rel_tolerance=e.get("rel_tolerance"),
        bound=e.get("bound"), expect=e.get("expect"), margin=e.get("margin"),
        hold_fraction=e.get("hold_fraction", 1.0),
        requires=tuple(e["requires"]) if "requires" in e else None, note=e.get("note", ""))


# ---------------------------------------------------------- tiny evaluator

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCS = {"abs": abs, "min": min, "max": max}


def _compile(expr: str, where: str = "") -> tuple[ast.Expression, list[str]]:
    refs: list[str] = []

    def sub(m):
        refs.append(m.group(1))
        return f"_m{len(refs) - 1}"

    try:
        tree = ast.parse(_REF.sub(sub, expr), mode="eval")
    except SyntaxError as exc:
        raise ReproError(f"{where}: expect {expr!r} does not parse: {exc.msg}") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.Compare, ast.BoolOp, ast.And, ast.Or,
                               ast.BinOp, ast.UnaryOp, ast.USub, ast.Constant, ast.Name,
                               ast.Load, ast.Call, *_BIN, *_CMP))
        if isinstance(node, ast.Constant) and not _number(node.value):
            ok = False
        if isinstance(node, ast.Name) and not (node.id.startswith("_m") or node.id in _FUNCS):
            ok = False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                               and node.func.id in _FUNCS):
            ok = False
        if not ok:
            raise ReproError(f"{where}: expect {expr!r} uses {type(node).__name__}; only metric "
                             f"references {{name}}, numbers, + - * /, comparisons, and/or, "
                             f"abs/min/max are allowed")
    if not _is_predicate(tree.body):
        raise ReproError(f"{where}: expect {expr!r} compares nothing; it must be a comparison "
                         f"(< <= > >=) or an and/or of comparisons, e.g. \"{{a}} - {{b}} > 0\"")
    if not refs:
        raise ReproError(f"{where}: expect {expr!r} reads no metric")
    return tree, refs


def _is_predicate(node) -> bool:
    """A comparison, or a boolean combination of comparisons (and nothing else at the top)."""
    if isinstance(node, ast.Compare):
        return True
    return isinstance(node, ast.BoolOp) and all(_is_predicate(v) for v in node.values)


def _has_ref(node) -> bool:
    return any(isinstance(n, ast.Name) and n.id.startswith("_m") for n in ast.walk(node))


def _has_const(node) -> bool:
    return any(isinstance(n, ast.Constant) for n in ast.walk(node))


def _is_bare(left, right) -> bool:
    """Two measured quantities compared with no gap or factor of their own."""
    return _has_ref(left) and _has_ref(right) and not (_has_const(left) or _has_const(right))


def _has_bare_comparison(tree) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_bare(a, b) for a, b in zip(sides, sides[1:])):
                return True
    return False


def _eval(node, env, margin: float = 0.0):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env, margin)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id] if node.id.startswith("_m") else _FUNCS[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, env)
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env, margin) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Call):
        return _eval(node.func, env)(*[_eval(a, env) for a in node.args])
    if isinstance(node, ast.Compare):
        left_node, left = node.left, _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            gap = margin if _is_bare(left_node, comp) else 0.0
            if isinstance(op, (ast.Gt, ast.GtE)):
                ok = _CMP[type(op)](left - gap, right)
            else:
                ok = _CMP[type(op)](left + gap, right)
            if not ok:
                return False
            left_node, left = comp, right
        return True
    raise TypeError(type(node).__name__)


def _finite(x) -> bool:
    return _number(x) and math.isfinite(x)


def evaluate(expr: str, metrics: dict, margin: float = 0.0) -> bool | None:
    """Evaluate an ``expect`` expression on one run's metrics; None if a metric it
    reads is missing or non-finite.  ``margin`` is the gap every bare comparison
    must clear."""
    tree, refs = _compile(expr)
    env = {}
    for i, ref in enumerate(refs):
        if not _finite(metrics.get(ref)):
            return None
        env[f"_m{i}"] = metrics[ref]
    return bool(_eval(tree, env, margin))


def _sides(expr: str, metrics: dict) -> str:
    """Both sides of a single comparison, evaluated, for the 'ours' column."""
    tree, refs = _compile(expr)
    env = {f"_m{i}": metrics.get(r) for i, r in enumerate(refs)}
    body = tree.body
    if not isinstance(body, ast.Compare) or len(body.ops) != 1 \
            or not all(_finite(v) for v in env.values()):
        return ""
    left, right = _eval(body.left, env), _eval(body.comparators[0], env)
    return f"{left:.4g} vs {right:.4g}"


# ---------------------------------------------------------------- compare


@dataclass
class Row:
    profile: str
    claim: Claim
    verdict: str
    ours: str = "-"
    detail: str = ""
    n: int = 0  # seeds (runs) judged
    values: list = field(default_factory=list)  # per seed (None: missing or non-finite)
    section: str = ""  # the group of runs it was judged on, when a report lists several


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _values_str(values: list, bound: str | None) -> str:
    if not values:
        return "-"
    mark = {"upper": "≤ ", "lower": "≥ "}.get(bound, "")
    finite = [v for v in values if v is not None]
    if len(values) == 1:
        return mark + _fmt(values[0])
    if len(values) <= 5:
        mean = f" (mean {statistics.fmean(finite):.4g})" if finite else ""
        return mark + ", ".join(_fmt(v) for v in values) + mean
    if len(finite) < 2:
        return mark + ", ".join(_fmt(v) for v in values)
    return (f"{mark}{statistics.fmean(finite):.4g} ± {statistics.stdev(finite):.2g} "
            f"(n={len(values)}" + (f", {len(values) - len(finite)} n/a)" if len(finite) < len(values) else ")"))


def compare(exp, records, section: str = "") -> list[Row]:
    """One row per (profile with runs, claim); ``records`` are complete runs of ``exp``,
    judged together per profile (the report groups runs by provenance first)."""
    claims = load_claims(exp.claims_path)
    by_profile: dict[str, list] = {}
    for r in records:
        by_profile.setdefault(r.profile, []).append(r)
    rows = []
    for profile in [p for p in PROFILES if p in by_profile] or ["cpu"]:
        rows += judge(claims, profile, by_profile.get(profile, []), section)
    return rows


def judge(claims: list[Claim], profile: str, records: list, section: str = "") -> list[Row]:
    """Judge every claim on ``records`` (runs of one profile): preconditions first,
    since they gate the claims that require them."""
    runs = [(getattr(r, "seed", i), r.metrics) for i, r in enumerate(records)]
    pre = {c.id: _verdict(c, profile, runs, {}) for c in claims if c.is_precondition}
    rows = []
    for c in claims:
        row = pre[c.id] if c.is_precondition else _verdict(c, profile, runs, pre)
        row.section = section
        rows.append(row)
    return rows


def _seed_list(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def _verdict(c: Claim, profile: str, runs: list[tuple], pre: dict) -> Row:
    seeds = [s for s, _ in runs]
    if c.metric:
        values = [m.get(c.metric) if _finite(m.get(c.metric)) else None for _, m in runs]
    else:
        values = []
    row = Row(profile, c, NOT_RUN, ours=_values_str(values, c.bound), n=len(runs), values=values)
    if c.expect and runs:  # both sides of an ordering, on the means over seeds
        mean = {k: statistics.fmean(m[k] for _, m in runs if _finite(m.get(k)))
                for k in c.metrics if any(_finite(m.get(k)) for _, m in runs)}
        row.ours = _sides(c.expect, mean) or row.ours
        if row.ours != "-" and len(runs) > 1:
            row.ours += " (means)"
    if profile not in c.profiles:
        row.verdict = NOT_COMPARABLE
        return row
    if not runs:
        return row
    if (c.expect is None and c.reported == "unknown") or not c.checkable:
        row.verdict = UNKNOWN
        row.detail = "the paper's value was not found"
        return row
    missing = [s for s, (_, m) in zip(seeds, runs) if any(not _finite(m.get(k)) for k in c.metrics)]
    if missing:
        row.verdict = INCOMPLETE
        row.detail = (f"seed(s) {_seed_list(missing)} of {len(runs)} lack a finite "
                      f"{', '.join(c.metrics) if len(c.metrics) <= 2 else 'metric'}")
        return row
    needed = c.requires if c.requires is not None else tuple(pre)
    failed = [p for p in needed if pre[p].verdict != REPRODUCED]
    if failed:
        row.verdict = NOT_CHECKABLE
        row.detail = "precondition " + ", ".join(f"{p} ({pre[p].verdict})" for p in failed) + \
            " did not hold"
        return row
    need = math.ceil(c.hold_fraction * len(runs) - 1e-9)
    if c.expect:
        if c.margin is None and len(runs) < MIN_SEEDS_WITHOUT_MARGIN and c.bare_ordering:
            row.verdict = NOT_CHECKABLE
            row.detail = (f"a bare ordering on {len(runs)} seed(s) needs a margin or "
                          f"≥ {MIN_SEEDS_WITHOUT_MARGIN} seeds")
            return row
        held = [bool(evaluate(c.expect, m, c.margin or 0.0)) for _, m in runs]
        suffix = f", margin {c.margin:g}" if c.margin else ""
    else:
        tol = c.tol()
        gaps = [v - c.reported for v in values]
        if c.bound == "upper":  # the truth is <= ours: consistent unless ours is below the paper's
            held = [g >= -tol for g in gaps]  # (a weak attack can only make this pass: see notes)
        elif c.bound == "lower":
            held = [g <= tol for g in gaps]
        else:
            held = [abs(g) <= tol for g in gaps]
        mean_gap = statistics.fmean(gaps)
        side = {"upper": f"≥ −{tol:.3g}", "lower": f"≤ +{tol:.3g}"}.get(c.bound, f"±{tol:.3g}")
        suffix = f"; gap {mean_gap:+.4g}{c.unit}" + (" (mean)" if len(gaps) > 1 else "") + \
            f", tolerance {side}" + (f" ({c.bound} bound: consistent with the paper, not a "
                                     f"confirmation of its value)" if c.bound else "")
    row.verdict = REPRODUCED if sum(held) >= need else DEVIATES
    fails = [s for s, h in zip(seeds, held) if not h]
    row.detail = (f"held in {sum(held)}/{len(held)} seed(s)"
                  + (f", needs {need}" if need != len(held) else "")
                  + (f" (not in seed {_seed_list(fails)})" if fails and len(held) > 1 else "")
                  + suffix)
    return row


def claim_rows(rows: list[Row]) -> list[Row]:
    return [r for r in rows if not r.claim.is_precondition]


def precondition_rows(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.claim.is_precondition]


def counts(rows: list[Row], profile: str) -> tuple[int, int]:
    """(reproduced, checkable) at ``profile``: the paper's claims (not preconditions)
    expected to hold there that have something to check against."""
    checkable = [r for r in claim_rows(rows) if r.profile == profile and r.claim.checkable
                 and profile in r.claim.profiles]
    return sum(r.verdict == REPRODUCED for r in checkable), len(checkable)


def paper_number_counts(rows: list[Row], profile: str) -> tuple[int, int, int]:
    """(reproduced, expected to hold, reproduced only as a bound) among claims that check
    one of the paper's own numbers (a reported value with a tolerance, not an ordering)
    at ``profile``.  A bound consistent with the paper does not confirm its value."""
    mine = [r for r in claim_rows(rows) if r.profile == profile and r.claim.checks_paper_number
            and profile in r.claim.profiles]
    ok = [r for r in mine if r.verdict == REPRODUCED]
    return len(ok), len(mine), sum(1 for r in ok if r.claim.bound)


def paper_numbers_str(rows: list[Row], profile: str) -> str:
    nums, total, bounds = paper_number_counts(rows, profile)
    if not total:
        return "none (orderings only)"
    return f"{nums}/{total}" + (f" ({bounds} only as bounds)" if bounds else "")


def precondition_counts(rows: list[Row], profile: str) -> tuple[int, int]:
    mine = [r for r in precondition_rows(rows) if r.profile == profile
            and profile in r.claim.profiles]
    return sum(r.verdict == REPRODUCED for r in mine), len(mine)


def summary(rows: list[Row]) -> str:
    parts = []
    for profile in dict.fromkeys(r.profile for r in rows):
        held, total = counts(rows, profile)
        ok, pre_total = precondition_counts(rows, profile)
        text = f"{held}/{total} reproduced" if total else "no checkable claims"
        text += f", paper numbers {paper_numbers_str(rows, profile)}"
        if pre_total:
            text += f", preconditions {ok}/{pre_total}"
        parts.append(text)
    return "; ".join(parts)


def format_table(rows: list[Row]) -> str:
    header = ("profile", "claim", "reported", "ours", "verdict", "detail")
    body = [(r.profile + (f" [{r.section}]" if r.section else ""),
             ("(pre) " if r.claim.is_precondition else "") + r.claim.id,
             "ordering" if r.claim.expect and r.claim.reported is None else r.claim.reported_str(),
             r.ours, r.verdict, r.detail) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
             for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """Every claim with its note, whatever the verdict."""
    out = ["| claim | source | reported | ours | verdict | detail |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"**{r.claim.id}**: {r.claim.text}", r.claim.source, r.claim.reported_str(),
                 r.ours, r.verdict, r.detail + (f" — *note:* {r.claim.note}" if r.claim.note else "")]
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ")
                                     for c in cells) + " |")
    return "\n".join(out)
