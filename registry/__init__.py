"""The hub's plugin registry: a dict and a few pure functions (timm's ``_registry.py``
was the model).  It imports nothing of ``common/``; the command line built on
it is ``registry.cli`` (``python -m registry ...``).

Every experiment registers itself with one decorator at its definition site::

    @register("gce_noisy_labels", paper=PAPER, figures=[accuracy_vs_noise])
    def run(ctx: RunContext) -> dict: ...

Discovery imports every ``papers/<paper>`` package the first time the registry
is consulted, never at import time, and an import error names the paper that
failed.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PROFILES = ("smoke", "cpu", "full")
ROOT = Path(__file__).resolve().parent.parent  # the repository (papers/, reports/, runs/)


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
        """``configs/<experiment>/<profile>.gin`` when the paper has several experiments
        (each its own budget, so editing one never blocks a sibling's resume), else
        ``configs/<profile>.gin``."""
        own = self.folder / "configs" / self.name / f"{profile}.gin"
        return own if own.exists() else self.folder / "configs" / f"{profile}.gin"

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


def main(argv: list[str] | None = None) -> int:
    """The command line (``registry.cli.main``), importable as ``registry.main``."""
    from registry.cli import main as cli_main

    return cli_main(argv)
