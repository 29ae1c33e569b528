"""Claims are data: ``claims.toml`` lists what a paper reports; ``compare``
turns runs into one verdict per claim.

Schema of one ``[[claims]]`` entry::

    id        = "lq-beats-cce-u08"            # unique within the file
    text      = "Lq beats CCE at uniform noise 0.8"
    source    = "Table 2 (CIFAR-10)"           # where the paper reports it
    profiles  = ["cpu", "full"]                # profiles at which it should hold
    # a numeric claim:
    metric    = "u0.8/lq/test_acc"             # a key of the run's metrics.json
    reported  = 64.07                          # or "unknown" (never guessed)
    tolerance = 2.0                            # |ours - reported| <= tolerance
    # (or rel_tolerance = 0.02)
    # or an ordering / inequality between metrics, checked per seed:
    expect    = "{u0.8/lq/test_acc} - {u0.8/cce/test_acc} > 0"
    hold_fraction = 0.66                       # of seeds where it must hold (default 1)
    note      = "why it should (not) hold at cpu scale"

Verdicts: ``reproduced``; ``deviates`` (with the gap); ``not run`` (no run at
that profile, or the metric is missing); ``not comparable at this profile``
(the claim is not expected to hold there, e.g. the paper's absolute numbers
at a scaled-down budget); ``unknown`` (the paper's value was not found, so
there is nothing to check ours against).
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

REPRODUCED, DEVIATES, NOT_RUN = "reproduced", "deviates", "not run"
NOT_COMPARABLE, UNKNOWN = "not comparable at this profile", "unknown"

_FIELDS = {"id", "text", "source", "profiles", "metric", "reported", "unit", "tolerance",
           "rel_tolerance", "expect", "hold_fraction", "note"}
_REF = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    profiles: tuple[str, ...]
    metric: str | None = None
    reported: float | str | None = None
    unit: str = ""
    tolerance: float | None = None
    rel_tolerance: float | None = None
    expect: str | None = None
    hold_fraction: float = 1.0
    note: str = ""

    @property
    def metrics(self) -> list[str]:
        """Every metric the claim reads."""
        refs = _REF.findall(self.expect or "")
        return ([self.metric] if self.metric else []) + [r for r in refs if r != self.metric]

    @property
    def checkable(self) -> bool:
        """Has something to check ours against (an ordering, or a reported number)."""
        return self.expect is not None or isinstance(self.reported, (int, float))

    def reported_str(self) -> str:
        if self.reported is None:
            return "-"
        if isinstance(self.reported, str):
            return self.reported
        return f"{self.reported:g}{self.unit}"


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
        where = f"{path} claim #{i + 1} ({e.get('id', '?')})"
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
        rep = e.get("reported")
        if isinstance(rep, str) and rep != "unknown":
            raise ReproError(f"{where}: reported must be a number or \"unknown\", not {rep!r}")
        has_tol = "tolerance" in e or "rel_tolerance" in e
        if has_tol and not isinstance(rep, (int, float)):
            raise ReproError(f"{where}: a tolerance needs a numeric reported value")
        if has_tol and "metric" not in e:
            raise ReproError(f"{where}: a tolerance needs the metric it applies to")
        if has_tol and "expect" in e:
            raise ReproError(f"{where}: give either a tolerance or an expect, not both")
        if isinstance(rep, (int, float)) and not has_tol and "expect" not in e:
            raise ReproError(f"{where}: a numeric reported value needs a tolerance or an expect")
        if "expect" in e:
            _compile(e["expect"], where)
        if not 0 < e.get("hold_fraction", 1.0) <= 1:
            raise ReproError(f"{where}: hold_fraction must be in (0, 1]")
        claims.append(Claim(
            id=e["id"], text=e["text"], source=e["source"], profiles=tuple(e["profiles"]),
            metric=e.get("metric"), reported=rep, unit=e.get("unit", ""),
            tolerance=e.get("tolerance"), rel_tolerance=e.get("rel_tolerance"),
            expect=e.get("expect"), hold_fraction=e.get("hold_fraction", 1.0),
            note=e.get("note", "")))
    return claims


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
        if isinstance(node, ast.Name) and not (node.id.startswith("_m") or node.id in _FUNCS):
            ok = False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                               and node.func.id in _FUNCS):
            ok = False
        if not ok:
            raise ReproError(f"{where}: expect {expr!r} uses {type(node).__name__}; only metric "
                             f"references {{name}}, numbers, + - * /, comparisons, and/or, "
                             f"abs/min/max are allowed")
    return tree, refs


def _eval(node, env):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id] if node.id.startswith("_m") else _FUNCS[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, env)
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Call):
        return _eval(node.func, env)(*[_eval(a, env) for a in node.args])
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    raise TypeError(type(node).__name__)


def evaluate(expr: str, metrics: dict) -> bool | None:
    """Evaluate an ``expect`` expression on one run's metrics (None if a metric is missing)."""
    tree, refs = _compile(expr)
    env = {}
    for i, ref in enumerate(refs):
        if metrics.get(ref) is None:
            return None
        env[f"_m{i}"] = metrics[ref]
    return bool(_eval(tree, env))


def _sides(expr: str, metrics: dict) -> str:
    """Both sides of a single comparison, evaluated, for the gap column."""
    tree, refs = _compile(expr)
    env = {f"_m{i}": metrics.get(r) for i, r in enumerate(refs)}
    body = tree.body
    if not isinstance(body, ast.Compare) or len(body.ops) != 1 or None in env.values():
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
    n: int = 0
    values: list = field(default_factory=list)


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def compare(exp, records) -> list[Row]:
    """One row per (profile with runs, claim); ``records`` are complete runs of ``exp``."""
    claims = load_claims(exp.claims_path)
    by_profile: dict[str, list] = {}
    for r in records:
        by_profile.setdefault(r.profile, []).append(r.metrics)
    rows = []
    for profile in [p for p in PROFILES if p in by_profile] or ["cpu"]:
        runs = by_profile.get(profile, [])
        for c in claims:
            rows.append(_verdict(c, profile, runs))
    return rows


def _verdict(c: Claim, profile: str, runs: list[dict]) -> Row:
    values = [m[c.metric] for m in runs if c.metric and m.get(c.metric) is not None]
    row = Row(profile, c, NOT_RUN, ours=_stats(values), n=len(runs), values=values)
    if c.expect and runs:  # show both sides of an ordering, on the means over seeds
        mean = {k: statistics.fmean(m[k] for m in runs if m.get(k) is not None)
                for k in c.metrics if any(m.get(k) is not None for m in runs)}
        row.ours = _sides(c.expect, mean) or row.ours
    if profile not in c.profiles:
        row.verdict = NOT_COMPARABLE
        return row
    if not runs:
        return row
    if c.expect:
        held = [evaluate(c.expect, m) for m in runs]
        held = [h for h in held if h is not None]
        if not held:
            row.detail = "metric missing from the runs"
            return row
        need = math.ceil(c.hold_fraction * len(held) - 1e-9)
        row.verdict = REPRODUCED if sum(held) >= need else DEVIATES
        row.detail = f"held in {sum(held)}/{len(held)} seed(s)"
        return row
    if not values:
        row.detail = "metric missing from the runs" if c.metric else ""
        row.verdict = UNKNOWN if c.reported == "unknown" else NOT_RUN
        return row
    if not isinstance(c.reported, (int, float)):
        row.verdict = UNKNOWN
        row.detail = "the paper's value was not found"
        return row
    mean = statistics.fmean(values)
    gap = mean - c.reported
    tol = c.tolerance if c.tolerance is not None else abs(c.reported) * c.rel_tolerance
    row.verdict = REPRODUCED if abs(gap) <= tol else DEVIATES
    row.detail = f"gap {gap:+.4g}{c.unit} (tolerance ±{tol:.3g})"
    return row


def counts(rows: list[Row], profile: str) -> tuple[int, int]:
    """(reproduced, checkable) at ``profile``: claims expected to hold there
    that have something to check against."""
    checkable = [r for r in rows if r.profile == profile and r.claim.checkable
                 and profile in r.claim.profiles]
    return sum(r.verdict == REPRODUCED for r in checkable), len(checkable)


def summary(rows: list[Row]) -> str:
    parts = []
    for profile in dict.fromkeys(r.profile for r in rows):
        held, total = counts(rows, profile)
        parts.append(f"{held}/{total} reproduced" if total else "no checkable claims")
    return "; ".join(parts)


def format_table(rows: list[Row]) -> str:
    header = ("profile", "claim", "reported", "ours", "verdict", "detail")
    body = [(r.profile, r.claim.id, r.claim.reported_str() if not r.claim.expect or
             r.claim.reported is not None else "ordering", r.ours, r.verdict, r.detail)
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
             for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    out = ["| claim | source | reported | ours | verdict | detail |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        reported = r.claim.reported_str() if (r.claim.reported is not None or not r.claim.expect) \
            else f"`{r.claim.expect}`"
        cells = [f"**{r.claim.id}**: {r.claim.text}", r.claim.source, reported, r.ours,
                 r.verdict, r.detail + (f" — {r.claim.note}" if r.claim.note and r.verdict
                                        in (DEVIATES, NOT_COMPARABLE) else "")]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)
