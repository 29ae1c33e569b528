"""The command line: clear errors for bad input, and earlier runs left intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import registry
from common import runs

ROOT = Path(registry.__file__).resolve().parent


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
    for verb in ("list", "show", "run", "figures", "compare", "report"):
        out = cli(verb, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout, verb


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
