"""The hub's plugin registry and command line: ``python -m registry ...``.

Every experiment registers itself with one decorator at its definition site::

    @register("gce_noisy_labels", paper=PAPER, figures=[accuracy_vs_noise])
    def run(ctx: RunContext) -> dict: ...

The registry is a dict and a few pure functions (timm's ``_registry.py`` was
the model).  Discovery imports every ``papers/<paper>`` package the first time
the registry is consulted, never at import time, and an import error names the
paper that failed.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import pkgutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PROFILES = ("smoke", "cpu", "full")
ROOT = Path(__file__).resolve().parent


class ReproError(Exception):
    """An error a user can act on: printed as one message, without a traceback."""


class UnknownExperiment(ReproError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    arxiv: str = ""
    code: str = ""  # reference implementation(s) whose details were followed

    @property
    def short(self) -> str:
        first = self.authors.split(",")[0].split(" and ")[0].strip()
        surname = first.split()[-1] if first else "?"
        etal = " et al." if ("," in self.authors or " and " in self.authors) else ""
        return f"{surname}{etal} ({self.venue})"


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: Paper
    run: Callable  # run(ctx) -> dict of scalar metrics
    folder: Path  # the paper's folder: configs/, claims.toml, README.md
    gin_module: str  # the gin module its configurables live under
    figures: tuple[Callable, ...] = ()
    default_profile: str = "cpu"
    description: str = ""
    claims_file: str = "claims.toml"
    data: tuple[str, ...] = field(default=())  # datasets it reads, for `show`

    @property
    def claims_path(self) -> Path:
        return self.folder / self.claims_file

    def profile_path(self, profile: str) -> Path:
        return self.folder / "configs" / f"{profile}.gin"

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(p for p in PROFILES if self.profile_path(p).exists())


_REGISTRY: dict[str, Experiment] = {}
_DISCOVERED = False


def register(
    name: str,
    *,
    paper: Paper,
    figures=(),
    default_profile: str = "cpu",
    description: str = "",
    gin_module: str | None = None,
    claims_file: str = "claims.toml",
    data=(),
):
    """Register ``run(ctx) -> metrics`` as experiment ``name``.

    The paper folder (configs/, claims.toml) is the folder of the module that
    defines ``run``; the gin module defaults to that folder's name.
    """

    def decorator(fn: Callable) -> Callable:
        module = sys.modules[fn.__module__]
        folder = Path(module.__file__).resolve().parent
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ReproError(f"experiment {name!r} is registered twice "
                             f"({_REGISTRY[name].folder} and {folder})")
        _REGISTRY[name] = Experiment(
            name=name, paper=paper, run=fn, folder=folder,
            gin_module=gin_module or folder.name, figures=tuple(figures),
            default_profile=default_profile,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            claims_file=claims_file, data=tuple(data))
        return fn

    return decorator


def discover() -> dict[str, Experiment]:
    """Import every package under papers/ once; fail loudly naming the paper."""
    global _DISCOVERED
    if not _DISCOVERED:
        import papers

        for info in sorted(pkgutil.iter_modules(papers.__path__), key=lambda m: m.name):
            if not info.ispkg:
                continue
            try:
                importlib.import_module(f"papers.{info.name}")
            except Exception as exc:  # a broken plugin must not hide silently
                raise ReproError(f"could not import paper plugin papers/{info.name}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        _DISCOVERED = True
    return _REGISTRY


def names() -> list[str]:
    return sorted(discover())


def get(name: str) -> Experiment:
    experiments = discover()
    if name in experiments:
        return experiments[name]
    close = difflib.get_close_matches(name, list(experiments), n=3, cutoff=0.4)
    close += [n for n in experiments if name and name in n and n not in close]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownExperiment(f"unknown experiment {name!r}{hint} "
                            f"(`python -m registry list` shows all {len(experiments)})")


# --------------------------------------------------------------------------- CLI


def _cmd_list(args) -> int:
    from common import claims, runs

    rows = []
    for name in names():
        exp = get(name)
        record = runs.latest_run(name, runs_dir=args.runs_dir)
        verdict = "-"
        if record is not None:
            table = claims.compare(exp, [record])
            verdict = f"{record.profile}: {claims.summary(table)}"
        rows.append((name, exp.paper.short, ",".join(exp.profiles), verdict))
    _print_table(("experiment", "paper", "profiles", "last run"), rows)
    return 0


def _cmd_show(args) -> int:
    from common import claims, runs

    exp = get(args.name)
    p = exp.paper
    print(f"{exp.name}: {exp.description}")
    print(f"  paper   {p.title}")
    print(f"          {p.authors}. {p.venue}." + (f" arXiv:{p.arxiv}" if p.arxiv else ""))
    if p.code:
        print(f"  code    {p.code}")
    print(f"  folder  {exp.folder.relative_to(ROOT) if exp.folder.is_relative_to(ROOT) else exp.folder}")
    if exp.data:
        print(f"  data    {', '.join(exp.data)}")
    print(f"\nprofiles (default {exp.default_profile}):")
    for profile in exp.profiles:
        doc = runs.profile_doc(exp.profile_path(profile))
        print(f"  {profile:5s} " + ("\n        ".join(doc) if doc else "(undocumented)"))
    print("\nclaims:")
    for c in claims.load_claims(exp.claims_path):
        print(f"  [{','.join(c.profiles) or '-'}] {c.id}: {c.text}")
        print(f"      reported {c.reported_str()}  ({c.source})")
    recent = runs.list_runs(exp.name, runs_dir=args.runs_dir)[-5:]
    if recent:
        print("\nrecent runs:")
        for r in recent:
            print(f"  {r.path}  {r.status}  {r.wall_str()}")
    return 0


def _cmd_run(args) -> int:
    from common import runs

    exp = get(args.name)
    record = runs.execute(
        exp, profile=args.profile, seed=args.seed, device=args.device,
        bindings=args.gin, data_dir=args.data_dir, resume=args.resume,
        quiet=args.quiet, runs_dir=args.runs_dir, deterministic=args.deterministic,
        download=args.download, amp=args.amp, argv=sys.argv)
    print(f"run complete: {record.path}")
    print(f"  metrics: {record.path / 'metrics.json'}  ({record.wall_str()})")
    print(f"  next: python -m registry compare {exp.name}   |   "
          f"python -m registry figures {exp.name}")
    return 0


def _cmd_figures(args) -> int:
    from common import report, runs

    exp = get(args.name)
    record = runs.find_run(exp.name, args.run, runs_dir=args.runs_dir,
                           reports_dir=args.reports_dir)
    for path in report.make_figures(exp, record, out_dir=args.out):
        print(path)
    return 0


def _cmd_compare(args) -> int:
    from common import claims, report, runs

    exp = get(args.name)
    records = runs.records_for_report(exp.name, runs_dir=args.runs_dir,
                                      reports_dir=args.reports_dir, profiles=args.profile)
    table = claims.compare(exp, records)
    print(claims.format_table(table))
    path = report.write_results(exp, records, table, reports_dir=args.reports_dir)
    print(f"\nwritten: {path}")
    return 0


def _cmd_report(args) -> int:
    from common import report

    path = report.build_all(names=args.names or None, runs_dir=args.runs_dir,
                            reports_dir=args.reports_dir, profiles=args.profile)
    print(f"written: {path}")
    return 0


def _print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m registry",
        description="Run paper reproductions, regenerate their figures and compare with the paper.")
    parser.add_argument("--runs-dir", default=None,
                        help="where run folders live (default: $REPRO_RUNS or ./runs)")
    parser.add_argument("--reports-dir", default=None,
                        help="where reports are written (default: $REPRO_REPORTS or ./reports)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="every experiment, its paper and the last run's verdict")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("show", help="paper, claims, profiles and their cost")
    p.add_argument("name")
    p.set_defaults(fn=_cmd_show)

    p = sub.add_parser("run", help="run an experiment and leave a self-describing run folder")
    p.add_argument("name")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="budget: smoke (seconds), cpu (<~1 h on 2 cores), full (the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--gin", action="append", default=[], metavar="BINDING",
                   help="override a parameter, e.g. --gin 'gce.train.epochs = 3' (repeatable)")
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
    p.set_defaults(fn=_cmd_run)

    p = sub.add_parser("figures", help="regenerate an experiment's figures from a saved run")
    p.add_argument("name")
    p.add_argument("--run", default=None, help="run folder or id (default: the latest complete)")
    p.add_argument("--out", default=None, help="output folder (default: the run's figures/)")
    p.set_defaults(fn=_cmd_figures)

    p = sub.add_parser("compare", help="reproduced vs reported, one verdict per claim")
    p.add_argument("name")
    p.add_argument("--profile", action="append", choices=PROFILES, default=None,
                   help="profiles to compare (default: every one with runs, smoke only if alone)")
    p.set_defaults(fn=_cmd_compare)

    p = sub.add_parser("report", help="rebuild reports/ for every experiment and the scoreboard")
    p.add_argument("names", nargs="*", help="only these experiments (default: all)")
    p.add_argument("--profile", action="append", choices=PROFILES, default=None)
    p.set_defaults(fn=_cmd_report)
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
    except KeyboardInterrupt:
        print("interrupted; resume with --resume RUN", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the CLI from the importable module so that plugins registering into
    # `registry` and this command line share one registry dict.
    import registry

    sys.exit(registry.main())
