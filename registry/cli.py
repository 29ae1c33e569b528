"""The command line: ``python -m registry COMMAND ...`` (``--help`` on every command).

It sits on top of the registry (``registry/__init__.py``, which imports nothing
of ``common/``) and the run machinery in ``common/``.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys

from common import claims, records, report
from registry import PROFILES, ROOT, ReproError, RunInterrupted, describe, get, names

_WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _committed_summary(name: str, reports_dir) -> str:
    exp = describe(name)
    judged = report.judge(exp, records.sections(records.archived_runs(name, reports_dir)))
    parts = [f"{s.profile}: {claims.summary(rows)}" for s, rows in judged if s.primary]
    return "; ".join(parts) or "-"


def _cmd_list(args) -> int:
    rows = []
    for name in names():
        exp = describe(name)
        last = records.list_runs(name, runs_dir=args.runs_dir)
        local = f"{last[-1].id} ({last[-1].status})" if last else "-"
        rows.append((name, exp.paper.short, ",".join(exp.profiles),
                     _committed_summary(name, args.reports_dir), local))
    _print_table(("experiment", "paper", "profiles", "committed verdict", "last local run"), rows)
    return 0


def _cmd_show(args) -> int:
    exp = describe(args.name)
    p = exp.paper
    print(f"{exp.name}: {exp.description}")
    print(f"  paper   {p.title}")
    print(f"          {p.authors}. {p.venue}." + (f" arXiv:{p.arxiv}" if p.arxiv else ""))
    if p.code:
        print(f"  code    {p.code}")
    print(f"  folder  {exp.folder.relative_to(ROOT) if exp.folder.is_relative_to(ROOT) else exp.folder}")
    if exp.data:
        print(f"  data    {', '.join(exp.data)}")
    print(f"  verdict {_committed_summary(exp.name, args.reports_dir)} (committed report)")
    print(f"\nprofiles (default {exp.default_profile}):")
    for profile in exp.profiles:
        doc = records.profile_doc(exp.profile_path(profile))
        print(f"  {profile:5s} " + ("\n        ".join(doc) if doc else "(undocumented)"))
    print("\nclaims:")
    for c in claims.load_claims(exp.claims_path):
        kind = "precondition " if c.is_precondition else ""
        print(f"  [{','.join(c.profiles) or '-'}] {kind}{c.id}: {c.text}")
        print(f"      reported {c.reported_str()}  ({c.source})")
    recent = records.list_runs(exp.name, runs_dir=args.runs_dir)[-5:]
    if recent:
        print("\nrecent runs:")
        for r in recent:
            print(f"  {r.path}  {r.status}  {r.wall_str()}")
    return 0


def _cmd_run(args) -> int:
    from common.allocator import keep_freed_memory
    from common.execute import execute  # torch and gin: only for the commands that run

    keep_freed_memory()  # a run's own process only (not a test process calling execute)
    exp = get(args.name)
    record = execute(
        exp, profile=args.profile, seed=args.seed, device=args.device,
        bindings=args.gin, data_dir=args.data_dir, resume=args.resume,
        quiet=args.quiet, runs_dir=args.runs_dir, deterministic=args.deterministic,
        download=args.download, amp=args.amp, threads=args.threads, argv=sys.argv)
    print(f"run complete: {record.path}")
    print(f"  metrics: {record.path / 'metrics.json'}  ({record.wall_str()})")
    print(f"  next: python -m registry compare {exp.name}   |   "
          f"python -m registry report {exp.name}")
    return 0


def _archived(record: records.RunRecord, reports_dir) -> bool:
    return record.path.resolve().is_relative_to(records.reports_root(reports_dir).resolve())


def _describe(record: records.RunRecord, reports_dir) -> str:
    where = "archived in reports/" if _archived(record, reports_dir) else "in runs/"
    return f"run {record.id} ({record.profile}, seed {record.seed}, {where})"


def _cmd_figures(args) -> int:
    exp = get(args.name)
    if args.run:
        record = records.find_run(exp.name, args.run, runs_dir=args.runs_dir,
                                  reports_dir=args.reports_dir)
    else:
        record = report.plan(exp, args.runs_dir, args.reports_dir, args.profile).figure_record
        if record is None:
            raise ReproError(f"no complete run of {exp.name} yet: "
                             f"python -m registry run {exp.name} --profile smoke")
    out = args.out
    if out is None and _archived(record, args.reports_dir):
        out = records.runs_root(args.runs_dir) / exp.name / f"figures-{record.id}"  # never into reports/
    print(f"figures from {_describe(record, args.reports_dir)} (the run `compare` and `report` use; "
          f"--run or --profile chooses another)")
    for path in report.make_figures(exp, record, out_dir=out):
        print(f"  {path}")
    return 0


def _cmd_compare(args) -> int:
    exp = get(args.name) if args.write else describe(args.name)  # --write draws figures
    p = report.plan(exp, args.runs_dir, args.reports_dir, args.profile, args.allow_dirty)
    for m in p.messages:
        print(m)
    judged = report.judge(exp, p.sections)
    for s, rows in judged:
        print(f"\n{'reproduction' if s.primary else 'other group'}: {s.label} "
              f"(runs {', '.join(r.id for r in s.records)})")
        print(claims.format_table(rows))
    if not judged:
        print(claims.format_table(claims.compare(exp, [])))
    if p.figure_record is not None:
        print(f"\nfigures come from {_describe(p.figure_record, args.reports_dir)}")
    if args.write:
        report.build_experiment(exp, args.runs_dir, args.reports_dir, args.profile,
                                args.allow_dirty, log=lambda m: None)
        print(f"written: {report.write_scoreboard(args.reports_dir)} and "
              f"{records.reports_root(args.reports_dir) / exp.name / 'results.md'}")
    else:
        print("\n(printed only; `--write` or `python -m registry report` updates reports/)")
    return 0


def _cmd_report(args) -> int:
    path = report.build_all(names=args.names or None, runs_dir=args.runs_dir,
                            reports_dir=args.reports_dir, profiles=args.profile,
                            allow_dirty=args.allow_dirty)
    print(f"written: {path}")
    return 0


def _cmd_verify(args) -> int:
    problems = report.verify(reports_dir=args.reports_dir, figures=args.figures)
    if problems:
        print(f"verify: {len(problems)} difference(s); rebuild with `python -m registry report` "
              f"(and commit) if the change is intended", file=sys.stderr)
        return 1
    print("verify: every committed report follows from its archived runs and the claims files")
    return 0


def _cmd_manifest(args) -> int:
    from registry import write_manifests

    changed = write_manifests()
    for path in changed:
        print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"manifest: {len(changed)} rewritten; the others already matched their plugins")
    return 0


def _print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    def locations(p, default):
        p.add_argument("--runs-dir", default=default,
                       help="where run folders live (default: $REPRO_RUNS or ./runs)")
        p.add_argument("--reports-dir", default=default,
                       help="where reports are read and written (default: $REPRO_REPORTS "
                            "or ./reports)")

    common = argparse.ArgumentParser(add_help=False)  # the same options after the command
    locations(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="python -m registry",
        description="Run paper reproductions, regenerate their figures and compare with the paper.")
    locations(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_, fn):
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(fn=fn)
        return p

    command("list", "every experiment, its paper, committed verdict and last local run", _cmd_list)

    p = command("show", "paper, claims, profiles and their cost", _cmd_show)
    p.add_argument("name", help="the experiment (see `list`)")

    p = command("run", "run an experiment and leave a self-describing run folder", _cmd_run)
    p.add_argument("name", help="the experiment (see `list`)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="budget: smoke (seconds), cpu (<~1 h on 2 cores), full (the paper's)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="where to compute (auto: CUDA, then MPS, then CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; recorded in run.json)")
    p.add_argument("--gin", action="append", default=[], metavar="BINDING",
                   help="override a parameter, e.g. --gin 'gce.train.epochs = 3' (repeatable); "
                        "such a run is reported apart from the profile's reproduction")
    p.add_argument("--data-dir", default=None,
                   help="offline dataset root (default: $REPRO_DATA, then ~/.cache/repro-hub/data)")
    p.add_argument("--download", action="store_true",
                   help="allow downloading a missing dataset from its publisher")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue an interrupted run (its folder, or its id under runs/NAME/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms (slower on GPU; always on in tests)")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA (opt-in)")

    try:
        from common import sweep as sweep_mod
    except ImportError:
        sweep_mod = None
    if sweep_mod is not None:
        sweep_mod.add_sweep_parser(sub, parents=[common])

    p = command("figures", "regenerate an experiment's figures from a saved run", _cmd_figures)
    p.add_argument("name", help="the experiment (see `list`)")
    p.add_argument("--run", default=None,
                   help="run folder or id (default: the run `compare` and `report` use)")
    p.add_argument("--profile", action="append", choices=PROFILES, default=None,
                   help="choose among these profiles' runs (repeatable)")
    p.add_argument("--out", default=None,
                   help="output folder (default: the run's figures/; for an archived run, "
                        "runs/NAME/figures-RUN/, never reports/)")

    p = command("compare", "reproduced vs reported, one verdict per claim (prints only)",
                _cmd_compare)
    p.add_argument("name", help="the experiment (see `list`)")
    p.add_argument("--profile", action="append", choices=PROFILES, default=None,
                   help="profiles whose runs in runs/ to judge (default: every one with runs, "
                        "smoke only if alone)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="include runs made with uncommitted changes (marked dirty)")
    p.add_argument("--write", action="store_true",
                   help="also update reports/NAME and the scoreboard, as `report NAME` does")

    p = command("report", "rebuild reports/ for every experiment and the scoreboard", _cmd_report)
    p.add_argument("names", nargs="*", help="only these experiments (default: all)")
    p.add_argument("--profile", action="append", choices=PROFILES, default=None,
                   help="profiles whose runs in runs/ may enter the report (repeatable)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="report runs made with uncommitted changes, marked dirty")

    p = command("verify", "check that every committed report follows from its archived runs "
                          "and the current claims files (exit 1 on any difference)", _cmd_verify)
    p.add_argument("--figures", action="store_true",
                   help="also regenerate every figure and compare its bytes (slower)")

    command("manifest", "rewrite papers/*/manifest.json (what `list` and `show` read without "
                        "importing the plugins) from what each plugin registers", _cmd_manifest)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):  # `python -m registry list | head`
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"interrupted; resume with:\n  {exc.resume_command}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS and exc.filename:
            print(f"error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        raise
