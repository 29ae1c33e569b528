"""Tests generated from the registry: every registered experiment gets a smoke
run (metrics, run record, figures, compare, report) and a claims-schema check,
without anyone writing them by hand."""

from __future__ import annotations

import json

import pytest

import registry
from common import claims, report, runs

NAMES = registry.names()


class SmokeRuns:
    """One deterministic smoke run per experiment, made on first use and shared by the
    tests below (lazily, so each test's timeout covers one experiment's run, not all)."""

    def __init__(self, root):
        self.root, self._records = root, {}

    def __getitem__(self, name):
        if name not in self._records:
            self._records[name] = runs.execute(registry.get(name), profile="smoke", seed=0,
                                               device="cpu", quiet=True, deterministic=True,
                                               runs_dir=self.root / "runs",
                                               argv=["registry", "run", name])
        return self._records[name]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return root, SmokeRuns(root)


def test_every_plugin_registers():
    assert NAMES, "no experiment registered"
    for name in NAMES:
        exp = registry.get(name)
        assert exp.paper.title and exp.paper.authors and exp.paper.venue
        assert set(exp.profiles) == {"smoke", "cpu", "full"}, f"{name}: profiles {exp.profiles}"
        assert exp.figures, f"{name} registers no figure"
        assert (exp.folder / "README.md").exists(), f"{name}: paper README missing"


@pytest.mark.parametrize("name", NAMES)
def test_claims_schema(name):
    parsed = claims.load_claims(registry.get(name).claims_path)
    assert parsed
    for c in parsed:
        assert c.metrics or c.reported == "unknown", f"{c.id} checks nothing"


@pytest.mark.parametrize("name", NAMES)
def test_profiles_are_documented(name):
    exp = registry.get(name)
    for profile in exp.profiles:
        doc = " ".join(runs.profile_doc(exp.profile_path(profile)))
        assert doc.startswith(profile), f"{name}/{profile}.gin must open with a comment on its cost"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_record(name, smoke_runs):
    _, records = smoke_runs
    rec = records[name]
    assert rec.status == "complete"
    meta = rec.meta
    for key in ("experiment", "profile", "seed", "command", "git", "versions", "device",
                "wall_seconds", "device_hours", "started", "finished"):
        assert key in meta, f"run.json lacks {key}"
    assert (rec.path / "config.gin").read_text().startswith("# smoke")
    assert (rec.path / "operative_config.gin").exists()
    metrics = json.loads((rec.path / "metrics.json").read_text())
    assert metrics and all(v is None or isinstance(v, (int, float)) for v in metrics.values())
    assert list((rec.path / "figures").glob("*.png")), "no figure produced"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_metrics_cover_cpu_claims(name, smoke_runs):
    """Every metric a cpu-profile claim reads is produced (by the smoke path too)."""
    _, records = smoke_runs
    metrics = records[name].metrics
    for c in claims.load_claims(registry.get(name).claims_path):
        if "cpu" in c.profiles:
            missing = [m for m in c.metrics if m not in metrics]
            assert not missing, f"claim {c.id} reads metrics the run never writes: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_compare_figures_report_on_smoke(name, smoke_runs, tmp_path):
    root, records = smoke_runs
    exp = registry.get(name)
    records[name]  # its smoke run is in runs/
    # allow_dirty: the suite may run on a working tree with uncommitted changes
    recs = report.plan(exp, runs_dir=root / "runs", reports_dir=tmp_path, allow_dirty=True).records
    assert [r.profile for r in recs] == ["smoke"]
    rows = claims.compare(exp, recs)
    assert rows and all(r.verdict == claims.NOT_COMPARABLE for r in rows), \
        "smoke numbers must never be compared with the paper"
    figs = report.make_figures(exp, records[name], out_dir=tmp_path / "figs")
    assert figs and all(f.exists() and f.stat().st_size > 1000 for f in figs)
    report.build_experiment(exp, runs_dir=root / "runs", reports_dir=tmp_path, allow_dirty=True,
                            log=lambda m: None)
    text = (tmp_path / name / "results.md").read_text()
    assert "not comparable at this profile" in text
    assert (tmp_path / name / "runs" / records[name].id / "run.json").exists()
    assert not (tmp_path / name / "runs" / records[name].id / "checkpoints").exists()


def test_report_never_destroys_the_archive(smoke_runs, tmp_path):
    """Rebuilding a report where its run records are not in runs/ (a fresh clone) keeps
    the archived records and writes the same results.md and scoreboard row."""
    root, records = smoke_runs
    name = NAMES[0]
    exp = registry.get(name)
    records[name]  # its smoke run is in runs/
    report.build_experiment(exp, runs_dir=root / "runs", reports_dir=tmp_path, allow_dirty=True,
                            log=lambda m: None)
    report.write_scoreboard(reports_dir=tmp_path)
    before = (tmp_path / name / "results.md").read_text()
    board = (tmp_path / "README.md").read_text()
    empty = tmp_path / "no-runs"
    report.build_experiment(exp, runs_dir=empty, reports_dir=tmp_path, log=lambda m: None)
    report.write_scoreboard(reports_dir=tmp_path)
    assert (tmp_path / name / "results.md").read_text() == before
    assert (tmp_path / "README.md").read_text() == board
    assert (tmp_path / name / "runs" / records[name].id / "run.json").exists()
    other = NAMES[1]  # never reported: "not run"
    assert f"| `{other}` | " in board and "not run" in board
