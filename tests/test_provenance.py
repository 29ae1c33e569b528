"""Reports: which runs are judged together, what may replace an archived run, and
`verify`.  Synthetic run folders (no training), plus the committed reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import registry
from common import claims, records, report
from registry import Experiment, Paper

CLAIMS = """
[[claims]]
id = "acc"
text = "accuracy"
source = "Table 1"
profiles = ["cpu"]
metric = "acc"
reported = 90.0
tolerance = 2.0
"""


@pytest.fixture
def exp(tmp_path):
    folder = tmp_path / "paper"
    folder.mkdir()
    (folder / "claims.toml").write_text(CLAIMS)
    return Experiment(name="exp", paper=Paper("T", "A and B", "V"), run=lambda ctx: {},
                      folder=folder, gin_module="paper", description="d")


def make_run(base: Path, name: str, seed=0, profile="cpu", commit="a" * 40, dirty=False,
             bindings=(), acc=90.0, status="complete") -> Path:
    path = base / "exp" / name
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({
        "experiment": "exp", "profile": profile, "seed": seed, "status": status,
        "gin_bindings": list(bindings), "git": {"commit": commit, "dirty": dirty,
                                                "dirty_files": ["x.py"] if dirty else []},
        "wall_seconds": 10.0, "device_name": "CPU (1 threads, 2 cores)"}))
    (path / "metrics.json").write_text(json.dumps({"acc": acc}))
    return path


def test_plan_keeps_the_newest_complete_run_per_profile_seed_and_bindings(tmp_path, exp):
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "20260101-000000-cpu-s0")
    make_run(runs_dir, "20260102-000000-cpu-s0")
    make_run(runs_dir, "20260103-000000-cpu-s0", status="failed")
    make_run(runs_dir, "20260101-000000-cpu-s1", seed=1)
    make_run(runs_dir, "20260101-000000-smoke-s0", profile="smoke")
    p = report.plan(exp, runs_dir=runs_dir, reports_dir=tmp_path / "rep")
    assert sorted(r.id for r in p.records) == ["20260101-000000-cpu-s1", "20260102-000000-cpu-s0"]
    smoke = report.plan(exp, runs_dir=runs_dir, reports_dir=tmp_path / "rep", profiles=["smoke"])
    assert [r.profile for r in smoke.records] == ["smoke"]


def test_a_report_never_pools_two_commits(tmp_path, exp):
    """Seeds from two commits form two groups, each judged on its own runs; the newer
    one is the profile's reproduction, the other is listed apart."""
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "20260101-000000-cpu-s0", commit="a" * 40, acc=90.0)
    make_run(runs_dir, "20260102-000000-cpu-s1", seed=1, commit="b" * 40, acc=70.0)
    judged = report.build_experiment(exp, runs_dir=runs_dir, reports_dir=tmp_path / "rep",
                                     log=lambda m: None)
    assert [(s.commits, s.primary, [r.seed for r in s.records]) for s, _ in judged] == \
        [(("b" * 40,), True, [1]), (("a" * 40,), False, [0])]
    verdicts = [rows[0].verdict for _, rows in judged]
    assert verdicts == [claims.DEVIATES, claims.REPRODUCED]  # not one pooled 'held in 1/2'
    text = (tmp_path / "rep" / "exp" / "results.md").read_text()
    assert "other runs not pooled" in text and "aaaaaaaaaa" in text and "bbbbbbbbbb" in text


def test_a_gin_run_never_replaces_the_committed_record(tmp_path, exp):
    """The gce example from the issue: a quick run with --gin overrides, then `report`."""
    rep, runs_dir = tmp_path / "rep", tmp_path / "runs"
    make_run(runs_dir, "20260101-000000-cpu-s0", acc=90.0)
    report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, log=lambda m: None)
    shutil.rmtree(runs_dir)  # a fresh clone: only the archive
    make_run(runs_dir, "20260105-000000-cpu-s0", acc=40.0, bindings=["paper.train.epochs = 1"])
    said = []
    judged = report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, log=said.append)
    assert (rep / "exp" / "runs" / "20260101-000000-cpu-s0" / "run.json").exists()
    primary = [s for s, _ in judged if s.primary]
    assert [r.id for r in primary[0].records] == ["20260101-000000-cpu-s0"]
    gin = [s for s, _ in judged if s.bindings]
    assert [r.id for r in gin[0].records] == ["20260105-000000-cpu-s0"] and not gin[0].primary
    assert any("own section" in m for m in said)
    text = (rep / "exp" / "results.md").read_text()
    assert "with --gin bindings (not the profile's reproduction)" in text
    assert "`paper.train.epochs = 1`" in text
    board = report.scoreboard_text(rep)
    assert "| `exp` |" not in board  # not registered; the real scoreboard is tested below


def test_a_same_key_newer_run_replaces_and_says_so(tmp_path, exp):
    rep, runs_dir = tmp_path / "rep", tmp_path / "runs"
    make_run(runs_dir, "20260101-000000-cpu-s0", acc=80.0)
    report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, log=lambda m: None)
    make_run(runs_dir, "20260102-000000-cpu-s0", acc=90.0)
    said = []
    judged = report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, log=said.append)
    assert [p.name for p in (rep / "exp" / "runs").iterdir()] == ["20260102-000000-cpu-s0"]
    assert any("replacing archived run 20260101-000000-cpu-s0" in m for m in said)
    assert judged[0][1][0].verdict == claims.REPRODUCED


def test_dirty_runs_need_allow_dirty_and_are_marked(tmp_path, exp):
    rep, runs_dir = tmp_path / "rep", tmp_path / "runs"
    make_run(runs_dir, "20260101-000000-cpu-s0", dirty=True)
    said = []
    assert report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, log=said.append) == []
    assert any("uncommitted changes" in m and "--allow-dirty" in m for m in said)
    judged = report.build_experiment(exp, runs_dir=runs_dir, reports_dir=rep, allow_dirty=True,
                                     log=lambda m: None)
    assert judged[0][0].dirty and "(dirty)" in (rep / "exp" / "results.md").read_text()


def test_a_resumed_run_records_both_commits(tmp_path):
    path = make_run(tmp_path, "20260101-000000-cpu-s0", commit="a" * 40)
    meta = json.loads((path / "run.json").read_text())
    meta["resumes"] = [{"git": {"commit": "b" * 40, "dirty": False}}]
    (path / "run.json").write_text(json.dumps(meta))
    rec = records.RunRecord.load(path)
    assert rec.commits == ("a" * 40, "b" * 40)
    assert "aaaaaaaaaa → bbbbbbbbbb" in records.sections([rec])[0].label


def test_verify_passes_on_the_committed_reports_and_fails_on_a_hand_edit(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_REPORTS")
    committed = registry.ROOT / "reports"
    assert report.verify(log=lambda m: None) == [], "committed reports are stale: run `registry report`"
    copy = tmp_path / "reports"
    shutil.copytree(committed, copy)
    name = registry.names()[0]
    text = (copy / name / "results.md").read_text()
    (copy / name / "results.md").write_text(text.replace("reproduced |", "deviates |", 1))
    problems = report.verify(reports_dir=copy, log=lambda m: None)
    assert len(problems) == 1 and name in problems[0] and "results.md" in problems[0]


def test_compare_prints_only(tmp_path, monkeypatch, capsys):
    """`compare` on a committed report rewrites nothing; figures and compare name one run."""
    name = "pwcca_synthetic"
    copy = tmp_path / "reports"
    shutil.copytree(registry.ROOT / "reports" / name, copy / name)
    monkeypatch.setenv("REPRO_REPORTS", str(copy))
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert registry.main(["compare", name, "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "printed only" in out and "figures come from run" in out
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    assert registry.main(["figures", name]) == 0
    out = capsys.readouterr().out
    chosen = report.plan(registry.get(name)).figure_record
    assert f"run {chosen.id}" in out and "archived" in out
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before  # not into reports/


def test_untracked_plugin_code_makes_a_run_dirty():
    """A plugin written but not committed is code the recorded commit does not hold."""
    from common.execute import changed_files

    porcelain = "\n".join([" M common/train.py", "?? papers/new/experiment.py",
                           "?? papers/new/configs/cpu.gin", "?? papers/new/claims.toml",
                           "?? notes.txt", "?? papers/new/figure.png", "?? scratch.py"])
    assert changed_files(porcelain) == ["common/train.py", "papers/new/experiment.py",
                                        "papers/new/configs/cpu.gin", "papers/new/claims.toml"]
    assert changed_files("") == []
