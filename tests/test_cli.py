"""The command line: clear errors for bad input, and earlier runs left intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import registry
from common import runs

ROOT = Path(registry.__file__).resolve().parents[1]  # the repository root (registry is a package)


def cli(*args, env=None, check=False):
    proc = subprocess.run([sys.executable, "-m", "registry", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def run_dirs(name):
    folder = runs.runs_root() / name
    return sorted(folder.iterdir()) if folder.exists() else []


def test_help_on_every_verb():
    for verb in ("list", "show", "run", "figures", "compare", "report", "verify"):
        out = cli(verb, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout, verb


def test_every_argument_has_a_help_text():
    import argparse

    from registry import cli as cli_mod

    parser = cli_mod.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in [("", parser), *subs.choices.items()]:
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.dest}"


def test_runs_dir_before_or_after_the_command(tmp_path, capsys):
    for argv in (["--runs-dir", str(tmp_path), "list"], ["list", "--runs-dir", str(tmp_path)]):
        assert registry.main(argv) == 0
    from registry import cli as cli_mod

    args = cli_mod.build_parser().parse_args(["show", "x", "--runs-dir", "/r", "--reports-dir", "/p"])
    assert (args.runs_dir, args.reports_dir) == ("/r", "/p")
    args = cli_mod.build_parser().parse_args(["--runs-dir", "/r", "show", "x"])
    assert (args.runs_dir, args.reports_dir) == ("/r", None)


def test_list_reads_the_committed_verdicts():
    env = {k: v for k, v in os.environ.items() if k != "REPRO_REPORTS"}  # the repository's reports/
    out = cli("list", env=env, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("abs_mnist"))
    assert "cpu: " in line and "reproduced" in line


def test_unknown_experiment_suggests_closest(capsys):
    assert registry.main(["run", "coordconv_notsoclever", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'coordconv_notsoclever'" in err
    assert "did you mean coordconv_notsoclevr" in err
    assert "Traceback" not in err


def test_unknown_experiment_exit_code_from_shell():
    out = cli("show", "gce")
    assert out.returncode == 2
    assert "gce_noisy_labels" in out.stderr and "Traceback" not in out.stderr


def test_list_needs_no_training():
    out = cli("list", check=True)
    for name in registry.names():
        assert name in out.stdout


@pytest.mark.parametrize("binding, needle", [
    ("coordconv.setup.subsampel = 3", "subsampel"),          # unknown parameter
    ("coordconv.stup.subsample = 3", "coordconv.stup"),       # unknown configurable
    ("gce.train.epochs = 3", "coordconv."),                   # another paper's parameter
    ("coordconv.setup.subsample = ", "coordconv.setup.subsample"),  # unparsable value
    ('coordconv.setup.subsample = "3"', "expects int"),        # wrong type
])
def test_bad_gin_binding_fails_before_training(binding, needle, capsys):
    before = run_dirs("coordconv_notsoclevr")
    code = registry.main(["run", "coordconv_notsoclevr", "--profile", "smoke", "--gin", binding])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert run_dirs("coordconv_notsoclevr") == before, "a bad binding must not start a run"


def test_missing_dataset_one_clear_error(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    code = registry.main(["run", "gce_noisy_labels", "--profile", "smoke", "--quiet",
                          "--data-dir", str(empty), "--gin", 'gce.setup.dataset = "mnist"'])
    err = capsys.readouterr().err
    assert code == 2
    assert "MNIST" in err and str(empty / "mnist") in err and "--download" in err
    assert "Traceback" not in err
    (failed,) = run_dirs("gce_noisy_labels")
    assert json.loads((failed / "run.json").read_text())["status"] == "failed"


def test_corrupt_checkpoint_clear_error_and_earlier_runs_intact(capsys):
    assert registry.main(["run", "gce_noisy_labels", "--profile", "smoke", "--quiet",
                          "--gin", "gce.setup.noises = (('uniform', 0.4),)"]) == 0
    (good,) = run_dirs("gce_noisy_labels")
    good_metrics = (good / "metrics.json").read_text()
    # a second run, "killed" with a corrupt checkpoint left behind
    rec = runs.execute(registry.get("gce_noisy_labels"), profile="smoke", quiet=True,
                       bindings=["gce.setup.noises = (('uniform', 0.4),)"])
    victim = rec.path
    meta = json.loads((victim / "run.json").read_text())
    meta["status"] = "running"
    (victim / "run.json").write_text(json.dumps(meta))
    for step in (victim / "results" / "steps").glob("*.json"):
        step.unlink()
    ckpt = next((victim / "checkpoints").glob("*.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    code = registry.main(["run", "gce_noisy_labels", "--resume", victim.name, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "corrupt" in err and ckpt.name in err and "Traceback" not in err
    assert (good / "metrics.json").read_text() == good_metrics
    assert runs.RunRecord.load(good).status == "complete"


def test_resume_refuses_complete_run_and_other_config(capsys):
    assert registry.main(["run", "coordconv_notsoclevr", "--profile", "smoke", "--quiet"]) == 0
    (done,) = run_dirs("coordconv_notsoclevr")
    assert registry.main(["run", "coordconv_notsoclevr", "--resume", done.name]) == 2
    assert "already complete" in capsys.readouterr().err


def test_compare_and_figures_without_runs(capsys):
    assert registry.main(["figures", "coordconv_notsoclevr"]) == 2
    assert "no complete run" in capsys.readouterr().err
    assert registry.main(["compare", "coordconv_notsoclevr"]) == 0
    assert "not run" in capsys.readouterr().out


@pytest.mark.parametrize("name, binding, needle", [
    ("gce_noisy_labels", 'gce.train.epochs = "three"', "gce.train.epochs = 'three': expects int"),
    ("abs_mnist", 'abs.attacks.distal_steps = "3"', "abs.attacks.distal_steps = '3': expects int"),
    ("gce_noisy_labels", "gce.setup.losses = 'cce'", "expects tuple"),
    ("gce_noisy_labels", "gce.train.epochs = 2.5", "expects int"),
])
def test_wrongly_typed_binding_is_rejected_before_work_starts(name, binding, needle, capsys):
    code = registry.main(["run", name, "--profile", "smoke", "--gin", binding])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert run_dirs(name) == []


def test_a_second_resume_of_a_locked_run_is_refused(capsys):
    rec = runs.execute(registry.get("pwcca_synthetic"), profile="smoke", quiet=True)
    meta = json.loads((rec.path / "run.json").read_text())
    meta["status"] = "running"  # as if a process were still training in it
    (rec.path / "run.json").write_text(json.dumps(meta))
    with runs.run_lock(rec.path):
        code = registry.main(["run", "pwcca_synthetic", "--resume", rec.id, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "is in use by pid" in err and str(os.getpid()) in err
    assert json.loads((rec.path / "run.json").read_text())["status"] == "running"
    assert registry.main(["run", "pwcca_synthetic", "--resume", rec.id, "--quiet"]) == 0
    meta = json.loads((rec.path / "run.json").read_text())
    assert meta["status"] == "complete" and meta["attempts"] == 2 and len(meta["resumes"]) == 1
    assert meta["threads"] >= 1 and meta["amp"] is False
    assert not (rec.path / ".lock").exists()


def test_ctrl_c_prints_the_exact_resume_command(monkeypatch, capsys):
    import dataclasses

    exp = registry.get("pwcca_synthetic")

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(registry._REGISTRY, exp.name, dataclasses.replace(exp, run=interrupted))
    assert registry.main(["run", exp.name, "--profile", "smoke", "--quiet"]) == 130
    err = capsys.readouterr().err
    (run,) = run_dirs(exp.name)
    assert f"python -m registry run {exp.name} --resume {run.name}" in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_unwritable_reports_is_one_clear_line(monkeypatch, capsys):
    from common import atomic

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "write_text", refuse)
    assert registry.main(["report", "pwcca_synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "Traceback" not in err
