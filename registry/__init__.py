"""The hub's plugin registry: a dict and a few pure functions (timm's ``_registry.py``
was the model).  It imports nothing of ``common/``; the command line built on
it is ``registry.cli`` (``python -m registry ...``).

Every experiment registers itself with one decorator at its definition site::

    @register("gce_noisy_labels", paper=PAPER, figures=[accuracy_vs_noise])
    def run(ctx: RunContext) -> dict: ...

Two ways to look experiments up:

- ``get(name)`` / ``discover()``: the runnable experiment.  Discovery imports
  every ``papers/<paper>`` package (and with them torch) the first time it is
  needed, never at import time, and an import error names the paper that failed.
- ``describe(name)`` / ``catalog()``: metadata only (paper, folder, profiles,
  claims file, data), read from each paper's ``manifest.json`` without importing
  the plugin, so that ``list``, ``show`` and ``--help`` start in a fraction of a
  second.  A manifest records a digest of its package's ``.py`` files; when the
  sources changed since it was written (or it is missing), that one plugin is
  imported instead, so a stale manifest costs time, never correctness.
  ``python -m registry manifest`` rewrites them; a test checks that every
  committed manifest equals what its plugin registers.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import json
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PROFILES = ("smoke", "cpu", "full")
ROOT = Path(__file__).resolve().parent.parent  # the repository (papers/, reports/, runs/)


class ReproError(Exception):
    """An error a user can act on: printed as one message, without a traceback."""


class RunInterrupted(KeyboardInterrupt):
    """^C during a run; carries the exact command that resumes it."""

    def __init__(self, resume_command: str):
        super().__init__(resume_command)
        self.resume_command = resume_command


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
    run: Callable | None  # run(ctx) -> dict of scalar metrics; None when only described
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


def _packages() -> list[str]:
    import papers

    return sorted(m.name for m in pkgutil.iter_modules(papers.__path__) if m.ispkg)


def _package_dir(package: str) -> Path:
    import papers

    return Path(papers.__path__[0]) / package


def _import_plugin(package: str) -> None:
    try:
        importlib.import_module(f"papers.{package}")
    except Exception as exc:  # a broken plugin must not hide silently
        raise ReproError(f"could not import paper plugin papers/{package}: "
                         f"{type(exc).__name__}: {exc}") from exc


def discover() -> dict[str, Experiment]:
    """Import every package under papers/ once; fail loudly naming the paper."""
    global _DISCOVERED
    if not _DISCOVERED:
        for package in _packages():
            _import_plugin(package)
        _DISCOVERED = True
    return _REGISTRY


def names() -> list[str]:
    return sorted(catalog())


def _suggest(name: str, known) -> UnknownExperiment:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    close += [n for n in known if name and name in n and n not in close]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownExperiment(f"unknown experiment {name!r}{hint} "
                             f"(`python -m registry list` shows all {len(known)})")


def get(name: str) -> Experiment:
    """The runnable experiment (its plugin imported)."""
    experiments = discover()
    if name in experiments:
        return experiments[name]
    raise _suggest(name, experiments)


# ------------------------------------------------------------- manifests

MANIFEST = "manifest.json"
_CATALOG: dict[str, Experiment] | None = None


def sources_digest(package_dir: Path) -> str:
    """SHA-256 over the package's ``.py`` files (relative paths and bytes)."""
    h = hashlib.sha256()
    for f in sorted(Path(package_dir).rglob("*.py")):
        h.update(f.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _package_of(exp: Experiment) -> str:
    parts = exp.run.__module__.split(".")
    return parts[1] if parts[0] == "papers" and len(parts) > 1 else ""


def manifest_for(package: str) -> dict:
    """What ``papers/<package>/manifest.json`` should hold: computed by importing it."""
    _import_plugin(package)
    pdir = _package_dir(package).resolve()
    entries = []
    for exp in sorted(_REGISTRY.values(), key=lambda e: e.name):
        if _package_of(exp) != package:
            continue
        entries.append({
            "name": exp.name, "paper": dataclasses.asdict(exp.paper),
            "module": exp.run.__module__, "function": exp.run.__qualname__,
            "folder": exp.folder.resolve().relative_to(pdir).as_posix(),
            "gin_module": exp.gin_module, "figures": [f.__name__ for f in exp.figures],
            "default_profile": exp.default_profile, "description": exp.description,
            "claims_file": exp.claims_file, "data": list(exp.data)})
    return {"sources": sources_digest(pdir), "experiments": entries}


def write_manifests() -> list[Path]:
    """Rewrite every paper's manifest from what its plugin registers; the changed paths."""
    changed = []
    for package in _packages():
        path = _package_dir(package) / MANIFEST
        text = json.dumps(manifest_for(package), indent=1, ensure_ascii=False) + "\n"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_name(f".{MANIFEST}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            changed.append(path)
    return changed


def _from_manifest(package: str) -> list[Experiment] | None:
    """The package's experiments as described by a fresh manifest, else None."""
    pdir = _package_dir(package)
    try:
        manifest = json.loads((pdir / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if manifest.get("sources") != sources_digest(pdir):
        return None
    return [Experiment(
        name=e["name"], paper=Paper(**e["paper"]), run=None, folder=(pdir / e["folder"]).resolve(),
        gin_module=e["gin_module"], figures=(), default_profile=e["default_profile"],
        description=e["description"], claims_file=e["claims_file"], data=tuple(e["data"]))
        for e in manifest["experiments"]]


def catalog() -> dict[str, Experiment]:
    """Every experiment's metadata; plugins are imported only where a manifest is
    missing or stale (their entries are then the runnable experiments)."""
    global _CATALOG
    if _DISCOVERED:
        return _REGISTRY
    if _CATALOG is None:
        found: dict[str, Experiment] = {}
        for package in _packages():
            described = _from_manifest(package)
            if described is None:
                print(f"note: papers/{package}/{MANIFEST} is missing or older than the plugin's "
                      f"code; importing it instead (`python -m registry manifest` rewrites it)",
                      file=sys.stderr)
                _import_plugin(package)
                described = [e for e in _REGISTRY.values() if _package_of(e) == package]
            found.update((e.name, e) for e in described)
        _CATALOG = found
    return _CATALOG


def describe(name: str) -> Experiment:
    """An experiment's metadata (``run`` may be None): for commands that only read."""
    experiments = catalog()
    if name in experiments:
        return experiments[name]
    raise _suggest(name, experiments)


def main(argv: list[str] | None = None) -> int:
    """The command line (``registry.cli.main``), importable as ``registry.main``."""
    from registry.cli import main as cli_main

    return cli_main(argv)
