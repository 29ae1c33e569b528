"""Run records as later commands see them: where they live, how to find them, and
which of them belong together in a report.

A run folder ``runs/<experiment>/<timestamp>-<profile>-s<seed>/`` holds
``run.json`` (see ``common.execute``), ``config.gin``, ``operative_config.gin``,
``metrics.json``, ``results/``, ``figures/``, ``log.txt`` and ``checkpoints/``.
``registry report`` copies the records it uses (without checkpoints) into
``reports/<experiment>/runs/``: the archive a fresh clone reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import torch_load
from registry import PROFILES, ROOT, ReproError


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    return Path(runs_dir or os.environ.get("REPRO_RUNS") or ROOT / "runs")


def reports_root(reports_dir: str | os.PathLike | None = None) -> Path:
    return Path(reports_dir or os.environ.get("REPRO_REPORTS") or ROOT / "reports")


@dataclass
class RunRecord:
    """A run folder as later commands see it."""

    path: Path
    meta: dict

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        path = Path(path)
        try:
            meta = json.loads((path / "run.json").read_text())
        except FileNotFoundError:
            raise ReproError(f"{path} is not a run folder (no run.json)") from None
        except json.JSONDecodeError as exc:
            raise ReproError(f"{path}/run.json is unreadable: {exc}") from None
        return cls(path, meta)

    id = property(lambda self: self.path.name)
    experiment = property(lambda self: self.meta["experiment"])
    profile = property(lambda self: self.meta["profile"])
    seed = property(lambda self: self.meta["seed"])
    status = property(lambda self: self.meta.get("status", "unknown"))
    bindings = property(lambda self: tuple(self.meta.get("gin_bindings") or ()))

    @property
    def commits(self) -> tuple[str, ...]:
        """The commit of every attempt, first to last, without repeats (a resumed run
        reuses results of its first attempt's code)."""
        infos = [self.meta.get("git") or {}, *(a.get("git") or {} for a in self.meta.get("resumes", []))]
        return tuple(dict.fromkeys((g.get("commit") or "?") for g in infos))

    @property
    def dirty(self) -> bool:
        infos = [self.meta.get("git") or {}, *(a.get("git") or {} for a in self.meta.get("resumes", []))]
        return any(g.get("dirty") for g in infos)

    @property
    def threads(self) -> int | None:
        if "threads" in self.meta:
            return self.meta["threads"]
        m = re.search(r"\((\d+) threads", self.meta.get("device_name", ""))
        return int(m.group(1)) if m else None

    @property
    def metrics(self) -> dict:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def result(self, name: str) -> Any:
        """A saved result: results/<name>.json, or results/<name>.pt (weights-only)."""
        js = self.path / "results" / f"{name}.json"
        if js.exists():
            return json.loads(js.read_text())
        pt = self.path / "results" / f"{name}.pt"
        if pt.exists():
            return torch_load(pt)
        raise ReproError(f"run {self.path} has no saved result {name!r}")

    def wall_str(self) -> str:
        s = self.meta.get("wall_seconds")
        if s is None:
            return "wall-clock unknown"
        return f"{fmt_seconds(s)} on {self.meta.get('device_name', '?')}"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _records_in(folder: Path) -> list[RunRecord]:
    if not folder.is_dir():
        return []
    records = []
    for p in sorted(folder.iterdir()):
        if (p / "run.json").exists():
            with contextlib.suppress(ReproError):
                records.append(RunRecord.load(p))
    return records


def list_runs(experiment: str, runs_dir=None) -> list[RunRecord]:
    """Every run folder of ``experiment`` under runs/, oldest first."""
    return _records_in(runs_root(runs_dir) / experiment)


def archived_runs(experiment: str, reports_dir=None) -> list[RunRecord]:
    """Run records copied into reports/<experiment>/runs/ (without checkpoints)."""
    return _records_in(reports_root(reports_dir) / experiment / "runs")


def find_run(experiment: str, run: str, runs_dir=None, reports_dir=None,
             archived: bool = True) -> RunRecord:
    """A run by folder path or id: in runs/, then in the report archive unless
    ``archived`` is False."""
    candidates = [Path(run), runs_root(runs_dir) / experiment / run]
    if archived:
        candidates.append(reports_root(reports_dir) / experiment / "runs" / run)
    for candidate in candidates:
        if (candidate / "run.json").exists():
            return RunRecord.load(candidate)
    raise ReproError(f"no run folder {run!r} (looked in: {', '.join(str(c) for c in candidates)})")


def profile_doc(path: Path) -> list[str]:
    """The leading comment block of a profile file: its hardware, cost, expectation."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return [line for line in lines if line]


# ------------------------------------------------------------- provenance


@dataclass
class Section:
    """Runs of one profile that a report judges together: one set of ``--gin``
    bindings and one provenance (commits and dirty flag)."""

    profile: str
    bindings: tuple[str, ...]
    commits: tuple[str, ...]
    dirty: bool
    records: list[RunRecord]
    primary: bool = False  # the profile's reproduction (no bindings, newest provenance)

    @property
    def label(self) -> str:
        parts = [self.profile]
        if self.bindings:
            parts.append("--gin " + "; ".join(self.bindings))
        parts.append("commit " + " → ".join(c[:10] for c in self.commits)
                     + (" (dirty)" if self.dirty else ""))
        return " · ".join(parts)

    @property
    def newest(self) -> str:
        return max(r.id for r in self.records)


def sections(records: list[RunRecord]) -> list[Section]:
    """Group complete records by (profile, bindings, commits, dirty), ordered by profile.
    Per profile, the newest group without bindings is the primary one: the profile's
    reproduction.  A group with ``--gin`` bindings is never primary."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r.seed, r.id)):
        groups.setdefault((r.profile, r.bindings, r.commits, r.dirty), []).append(r)
    out = [Section(p, b, c, d, recs) for (p, b, c, d), recs in groups.items()]
    for profile in PROFILES:
        plain = [s for s in out if s.profile == profile and not s.bindings]
        if plain:
            max(plain, key=lambda s: s.newest).primary = True
    return sorted(out, key=lambda s: (PROFILES.index(s.profile), not s.primary, bool(s.bindings),
                                      s.newest))
