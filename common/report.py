"""Figures, results.md per experiment and the hub scoreboard (reports/README.md).

Everything here is generated from run records; nothing is typed by hand.
``report`` archives the run records it uses (without checkpoints) under
``reports/<experiment>/runs/``, so a fresh clone regenerates figures and
verdicts without retraining, and ``verify`` checks that the committed reports
still follow from that archive and the current claims files.

Rules that keep a committed reproduction safe:

- a run from ``runs/`` replaces an archived run only when it has the same
  profile, seed and ``--gin`` bindings and is newer; the report says so;
- a run with ``--gin`` bindings is reported in its own section, named by its
  bindings, never as the profile's reproduction;
- runs are judged together only within one provenance group (profile,
  bindings, commits, dirty flag); other groups are listed separately;
- a dirty run (uncommitted changes) enters only with ``allow_dirty``, marked;
- nothing is deleted before its replacement is written.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common import atomic, plotting
from common import claims as claims_mod
from common.records import (RunRecord, Section, archived_runs, fmt_seconds, list_runs,
                            reports_root, sections)
from registry import PROFILES, ROOT, Experiment, ReproError

_MARK_START, _MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def make_figures(exp: Experiment, record: RunRecord, out_dir=None) -> list[Path]:
    """Regenerate every figure of ``exp`` from the saved results of ``record``;
    figures of a smoke run carry a visible "smoke: not a result" mark."""
    out = Path(out_dir) if out_dir else record.path / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with plotting.watermark("smoke: not a result" if record.profile == "smoke" else None):
        for fn in exp.figures:
            try:
                made = fn(record, out)
            except ReproError:
                raise
            except Exception as exc:
                raise ReproError(f"figure {fn.__name__} of {exp.name} failed on {record.path}: "
                                 f"{type(exc).__name__}: {exc}") from exc
            paths.extend([made] if isinstance(made, Path) else list(made or []))
    return paths


# ------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What a report of one experiment is built from, before anything is written."""

    records: list[RunRecord]  # archived ones, plus runs/ records that enter the archive
    new: list[RunRecord] = field(default_factory=list)  # from runs/, to be archived
    replaced: list[RunRecord] = field(default_factory=list)  # archived, to be removed
    messages: list[str] = field(default_factory=list)

    @property
    def sections(self) -> list[Section]:
        return sections(self.records)

    @property
    def figure_record(self) -> RunRecord | None:
        """The run the report's figures come from (``figures`` and ``compare`` agree):
        the lowest seed of the primary group of the largest profile."""
        secs = self.sections
        if not secs:
            return None
        best = max(secs, key=lambda s: (s.primary, PROFILES.index(s.profile), not s.bindings,
                                        s.newest))
        return min(best.records, key=lambda r: (r.seed, r.id))


def plan(exp: Experiment, runs_dir=None, reports_dir=None, profiles=None,
         allow_dirty: bool = False) -> Plan:
    """Combine the archive in reports/<experiment>/runs/ with complete runs in runs/.

    ``profiles``: which profiles' runs in runs/ may enter (default: every profile
    with runs except smoke, unless smoke is all there is).  Archived runs always
    stay: a command never destroys a committed reproduction."""
    archive = [r for r in archived_runs(exp.name, reports_dir) if r.status == "complete"]
    local = [r for r in list_runs(exp.name, runs_dir) if r.status == "complete"]
    if profiles is None:
        have = {r.profile for r in archive + local}
        profiles = [p for p in PROFILES if p in have and p != "smoke"] or ["smoke"]
    out = Plan(records=list(archive))
    by_key = {(r.profile, r.seed, r.bindings): r for r in archive}
    for r in local:
        if r.profile not in profiles:
            continue
        if r.dirty and not allow_dirty:
            files = ", ".join((r.meta.get("git") or {}).get("dirty_files", [])[:5])
            out.messages.append(f"skipped {r.id}: it ran with uncommitted changes ({files}); "
                                f"commit and rerun, or pass --allow-dirty to report it marked dirty")
            continue
        key = (r.profile, r.seed, r.bindings)
        old = by_key.get(key)
        if old is not None and r.id <= old.id:
            continue  # already archived, or older than the archived run
        if old is not None:
            out.records.remove(old)
            if old in out.new:  # an earlier runs/ record superseded by a newer one
                out.new.remove(old)
            else:
                out.replaced.append(old)
                out.messages.append(f"replacing archived run {old.id} with {r.id} "
                                    f"(same profile, seed and bindings)")
        by_key[key] = r
        out.records.append(r)
        out.new.append(r)
    for r in out.new:
        if r.bindings:
            out.messages.append(f"{r.id} has --gin bindings ({'; '.join(r.bindings)}): "
                                f"reported in its own section, not as the {r.profile} reproduction")
    return out


def judge(exp: Experiment, secs: list[Section]) -> list[tuple[Section, list]]:
    """Claims rows per section, each group judged on its own runs."""
    claims = claims_mod.load_claims(exp.claims_path)
    return [(s, claims_mod.judge(claims, s.profile, s.records, "" if s.primary else s.label))
            for s in secs]


# ------------------------------------------------------------- markdown


def _rel(path: Path, start: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def _runs_table(records: list[RunRecord], folder: Path) -> str:
    lines = ["| run | profile | seed | commit | --gin bindings | threads | wall-clock | CPU time | device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        commit = " → ".join(c[:10] for c in r.commits) + (" (dirty)" if r.dirty else "")
        bindings = "<br>".join(f"`{b}`" for b in r.bindings) or "-"
        lines.append(f"| [{r.id}]({_rel(r.path, folder)}/run.json) | {r.profile} | {r.seed} | "
                     f"{commit} | {bindings} | {r.threads or '?'} | "
                     f"{fmt_seconds(r.meta.get('wall_seconds', 0))} | "
                     f"{fmt_seconds(r.meta['cpu_seconds']) if 'cpu_seconds' in r.meta else '-'} | "
                     f"{r.meta.get('device_name', '?')} |")
    return "\n".join(lines)


def _counts_line(rows, profile: str) -> str:
    held, total = claims_mod.counts(rows, profile)
    ok, pre = claims_mod.precondition_counts(rows, profile)
    text = (f"{held}/{total} checkable claims reproduced; the paper's own numbers: "
            f"{claims_mod.paper_numbers_str(rows, profile)}")
    return text + (f"; preconditions {ok}/{pre} hold" if pre else "")


def _section_title(s: Section, rows) -> str:
    if s.primary:
        return f"## Profile `{s.profile}`: {_counts_line(rows, s.profile)}"
    if s.bindings:
        return (f"## `{s.profile}` with --gin bindings (not the profile's reproduction): "
                f"{_counts_line(rows, s.profile)}")
    return (f"## `{s.profile}`, other runs not pooled with the reproduction above "
            f"({s.label}): {_counts_line(rows, s.profile)}")


def _section_markdown(s: Section, rows, folder: Path) -> list[str]:
    out = [_section_title(s, rows), "", f"Runs: {s.label}.", "",
           _runs_table(s.records, folder), ""]
    pre = claims_mod.precondition_rows(rows)
    if pre:
        out += ["**Preconditions** (checks that the experiment worked as intended; not claims "
                "of the paper, not counted above; a claim whose precondition fails is not "
                "checkable):", "", claims_mod.markdown_table(pre), "", "**Claims:**", ""]
    out += [claims_mod.markdown_table(claims_mod.claim_rows(rows)), ""]
    if s.profile == "smoke":
        out += ["Smoke runs only prove the code path; their numbers are never compared "
                "with the paper.", ""]
    return out


def results_markdown(exp: Experiment, judged, folder: Path, figures: list[Path] = (),
                     figure_record: RunRecord | None = None) -> str:
    p = exp.paper
    out = [f"# {exp.name}: results", "",
           f"{p.title}. {p.authors}. {p.venue}." + (f" [arXiv:{p.arxiv}](https://arxiv.org/abs/{p.arxiv})" if p.arxiv else ""),
           "", f"_{exp.description}_", "",
           "Generated by `python -m registry report` from the run records listed below; "
           "do not edit by hand (`python -m registry verify` checks it).", ""]
    if not judged:
        out += ["No complete run yet: every claim is **not run**.", "",
                f"    python -m registry run {exp.name} --profile {exp.default_profile}", ""]
    for s, rows in judged:
        out += _section_markdown(s, rows, folder)
    if figures:
        out += ["## Figures", ""]
        if figure_record is not None:
            out += [f"From run {figure_record.id} ({figure_record.profile}, seed "
                    f"{figure_record.seed}).", ""]
        for f in figures:
            out += [f"![{f.stem}]({_rel(f, folder)})", ""]
    return "\n".join(out)


def paper_readme_text(exp: Experiment, judged) -> str | None:
    """papers/<paper>/README.md with its generated results section refreshed (None if
    the README has no markers for this experiment)."""
    readme = exp.folder / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text()
    start, end = f"{_MARK_START[:-4]} {exp.name} -->", f"{_MARK_END[:-4]} {exp.name} -->"
    if start not in text or end not in text:
        return None
    body = [f"Generated by `python -m registry report`; full report: "
            f"[reports/{exp.name}/results.md](../../reports/{exp.name}/results.md)", ""]
    for s, rows in judged:
        if not s.primary:
            continue
        cost = sum(r.meta.get("wall_seconds", 0) for r in s.records)
        body += [f"**{s.profile}**: {_counts_line(rows, s.profile)} ({fmt_seconds(cost)} "
                 f"of compute over {len(s.records)} run(s))", "",
                 claims_mod.markdown_table(claims_mod.claim_rows(rows)), ""]
    others = [s for s, _ in judged if not s.primary]
    if others:
        body += [f"Other groups of runs ({len(others)}) are listed in the full report.", ""]
    if not judged:
        body.append("Not run yet.")
    return re.sub(re.escape(start) + ".*?" + re.escape(end),
                  lambda _: start + "\n" + "\n".join(body) + "\n" + end, text, flags=re.S)


# ------------------------------------------------------------------ build


def _copy_record(record: RunRecord, dest: Path) -> RunRecord:
    """Copy a run record into the archive (no checkpoints, resume cache or lock):
    into a temporary folder first, renamed into place only when complete."""
    target = dest / record.id
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{record.id}."))
    try:
        shutil.copytree(record.path, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoints", "steps", "*.tmp", ".lock"))
        if target.exists():
            old = target.with_name(f".{record.id}.old")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunRecord.load(target)


def _replace_dir(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        target.rename(old)
    new.rename(target)
    if old.exists():
        shutil.rmtree(old)


def build_experiment(exp: Experiment, runs_dir=None, reports_dir=None, profiles=None,
                     allow_dirty: bool = False, log=print):
    """Archive the runs used, regenerate figures, write results.md; return the judged
    sections.  Writes go to temporary files and folders first."""
    folder = reports_root(reports_dir) / exp.name
    p = plan(exp, runs_dir, reports_dir, profiles, allow_dirty)
    for m in p.messages:
        log(f"{exp.name}: {m}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        archived = {r.id: r for r in p.records if r not in p.new}
        for r in p.new:
            archived[r.id] = _copy_record(r, folder / "runs")
        for old in p.replaced:
            shutil.rmtree(old.path)
        p.records = [archived[r.id] for r in p.records]
        figures: list[Path] = []
        record = p.figure_record
        if record is not None:
            tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".figures."))
            try:
                made = make_figures(exp, record, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _replace_dir(tmp, folder / "figures")
            figures = sorted(folder / "figures" / f.relative_to(tmp) for f in made)
        judged = judge(exp, p.sections)
        atomic.write_text(folder / "results.md",
                          results_markdown(exp, judged, folder, figures, record))
        if reports_root(reports_dir).resolve() == (ROOT / "reports").resolve():
            text = paper_readme_text(exp, judged)  # only the hub's own reports feed the READMEs
            if text is not None and text != (exp.folder / "README.md").read_text():
                atomic.write_text(exp.folder / "README.md", text)
    except PermissionError as exc:
        raise ReproError(f"cannot write the report of {exp.name}: {exc.strerror}: "
                         f"{exc.filename}") from None
    return judged


def build_all(names=None, runs_dir=None, reports_dir=None, profiles=None,
              allow_dirty: bool = False, log=print) -> Path:
    import registry

    for name in names or registry.names():
        build_experiment(registry.get(name), runs_dir, reports_dir, profiles, allow_dirty, log)
    return write_scoreboard(reports_dir)


def scoreboard_text(reports_dir=None) -> str:
    """reports/README.md: every experiment, its paper, claims held per profile, cost;
    read from the archives alone (what a fresh clone has)."""
    import registry

    root = reports_root(reports_dir)
    lines = ["# Scoreboard", "",
             "Every registered experiment and what its archived runs reproduce: the paper's "
             "claims expected to hold at that profile (preconditions apart), how many of "
             "those check one of the paper's own numbers rather than an ordering, and what the "
             "runs cost. Only each profile's reproduction counts here (no --gin bindings, one "
             "provenance); other groups of runs are in the reports. Generated by "
             "`python -m registry report`; do not edit by hand.", "",
             "| experiment | paper | profile | claims reproduced | paper's numbers reproduced "
             "| preconditions | runs (seeds) | cost per run | report |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in registry.names():
        exp = registry.get(name)
        judged = judge(exp, sections(archived_runs(name, reports_dir)))
        link = f"[{name}/results.md]({name}/results.md)" if (root / name / "results.md").exists() else "-"
        paper = f"{exp.paper.short}" + (f", [arXiv:{exp.paper.arxiv}](https://arxiv.org/abs/{exp.paper.arxiv})" if exp.paper.arxiv else "")
        primary = [(s, rows) for s, rows in judged if s.primary]
        if not primary:
            lines.append(f"| `{name}` | {paper} | - | not run | - | - | 0 | - | {link} |")
        for s, rows in primary:
            held, total = claims_mod.counts(rows, s.profile)
            ok, pre = claims_mod.precondition_counts(rows, s.profile)
            walls = [r.meta.get("wall_seconds", 0) for r in s.records]
            cost = f"{fmt_seconds(sum(walls) / len(walls))}, {s.records[-1].meta.get('device_name', '?')}"
            others = sum(1 for t, _ in judged if not t.primary and t.profile == s.profile)
            seeds = f"{len(s.records)}" + (f" (+{others} other group{'s' * (others > 1)})" if others else "")
            lines.append(f"| `{name}` | {paper} | {s.profile} | {held}/{total} | {claims_mod.paper_numbers_str(rows, s.profile)} "
                         f"| {f'{ok}/{pre}' if pre else '-'} | {seeds} | {cost} | {link} |")
    lines += ["", "Verdicts: *reproduced*; *deviates* (the report gives the gap and our best "
              "explanation); *incomplete* (a seed's metric missing or non-finite); *not "
              "checkable* (a precondition failed, or an ordering on too few seeds without a "
              "margin); *not run*; *not comparable at this profile* (e.g. the paper's absolute "
              "numbers at a scaled-down budget); *unknown* (the paper's value was not found, so "
              "it is not guessed).", ""]
    return "\n".join(lines)


def write_scoreboard(reports_dir=None) -> Path:
    path = reports_root(reports_dir) / "README.md"
    try:
        atomic.write_text(path, scoreboard_text(reports_dir))
    except PermissionError as exc:
        raise ReproError(f"cannot write the scoreboard: {exc.strerror}: {exc.filename}") from None
    return path


# ----------------------------------------------------------------- verify


def verify(reports_dir=None, figures: bool = False, log=print) -> list[str]:
    """Rebuild every committed report from its archived records and the current claims
    files, in a scratch folder, and list every difference from what is committed
    (results.md, the papers' generated README sections, the scoreboard; with
    ``figures``, every figure's bytes too)."""
    import registry

    root = reports_root(reports_dir)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="repro-verify-") as scratch:
        scratch = Path(scratch)
        empty = scratch / "no-runs"
        for name in registry.names():
            exp = registry.get(name)
            committed = root / name
            if not committed.exists():
                continue
            work = scratch / "reports" / name
            shutil.copytree(committed, work)
            p = plan(exp, runs_dir=empty, reports_dir=scratch / "reports")
            record = p.figure_record
            if figures and record is not None:
                fig_dir = scratch / "figures" / name
                make_figures(exp, record, fig_dir)
                for f in sorted(fig_dir.rglob("*.png")):
                    mine = committed / "figures" / f.relative_to(fig_dir)
                    if not mine.exists() or not filecmp.cmp(f, mine, shallow=False):
                        problems.append(f"{mine}: differs from the figure its run regenerates")
            figs = sorted((work / "figures").glob("*.png")) if (work / "figures").is_dir() else []
            judged = judge(exp, p.sections)
            expected = results_markdown(exp, judged, work, figs, record)
            actual = (committed / "results.md").read_text() if (committed / "results.md").exists() else ""
            if expected != actual:
                problems.append(f"{committed / 'results.md'}: does not follow from its archived "
                                f"runs and {exp.claims_path.relative_to(ROOT)}" + _first_diff(actual, expected))
            text = paper_readme_text(exp, judged)
            if text is not None and root.resolve() == (ROOT / "reports").resolve() \
                    and text != (exp.folder / "README.md").read_text():
                problems.append(f"{exp.folder / 'README.md'}: its generated results section of "
                                f"{name} is stale" + _first_diff((exp.folder / 'README.md').read_text(), text))
        board = scoreboard_text(scratch / "reports")
        actual = (root / "README.md").read_text() if (root / "README.md").exists() else ""
        if board != actual:
            problems.append(f"{root / 'README.md'}: the scoreboard is stale" + _first_diff(actual, board))
    for p in problems:
        log(p)
    return problems


def _first_diff(actual: str, expected: str) -> str:
    a, e = actual.splitlines(), expected.splitlines()
    for i, (x, y) in enumerate(zip(a, e)):
        if x != y:
            return f"\n    line {i + 1}: committed {x[:160]!r}\n    {' ' * len(str(i + 1))}  rebuilt   {y[:160]!r}"
    return f"\n    committed has {len(a)} lines, rebuilt {len(e)}"

