"""Seed sweeps (common/sweep.py): seed lists, resume planning, Slurm options, and three
end-to-end sweeps on smoke runs: 2 local workers, submitit's local executor, and a
sweep whose worker is SIGKILLed, then rerun: only the killed seed runs again, resumed."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from common import runs, sweep
from common.sweep import SeedSpec, SweepError

FAST = "pwcca_synthetic"  # smoke: ~0.1 s of work; a worker costs the CLI's start-up
# a smoke run of GCE long enough to be killed between two checkpoints (as in test_resume)
GCE = ("gce.train.epochs = 6", "gce.setup.noises = (('uniform', 0.4),)",
       "gce.setup.losses = ('cce',)")


def cli_parser() -> argparse.ArgumentParser:
    """A stand-in for the registry's CLI: --runs-dir before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help="where run folders live")
    parser = argparse.ArgumentParser(prog="python -m registry")
    parser.add_argument("--runs-dir", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    sweep.add_sweep_parser(sub, parents=[common])
    return parser


def fake_run(root: Path, exp: str, name: str, **meta) -> Path:
    path = root / exp / name
    path.mkdir(parents=True)
    base = {"experiment": exp, "profile": "smoke", "seed": 0, "status": "complete",
            "gin_bindings": []}
    (path / "run.json").write_text(json.dumps({**base, **meta}))
    return path


def records(exp: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs.runs_root() / exp).glob("*/run.json"))]


# ------------------------------------------------------------------ units


def test_parse_seeds():
    assert sweep.parse_seeds("0-19") == list(range(20))
    assert sweep.parse_seeds("0,3,5") == [0, 3, 5]
    assert sweep.parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert sweep.parse_seeds("3, 1-3") == [3, 1, 2]
    for bad in ("", "a", "3-1", "1-", "-2", "1;2"):
        with pytest.raises(SweepError):
            sweep.parse_seeds(bad)
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["sweep", FAST, "--seeds", "5-2"])


def test_plan_skips_complete_resumes_incomplete_and_matches_bindings(tmp_path):
    root = tmp_path / "r"
    done = fake_run(root, "e", "20260101-000000-smoke-s0", seed=0)
    fake_run(root, "e", "20260101-000001-smoke-s1", seed=1, status="failed")
    killed = fake_run(root, "e", "20260101-000002-smoke-s1", seed=1, status="running")
    fake_run(root, "e", "20260101-000003-smoke-s2", seed=2, gin_bindings=["e.f.x = 1"])
    fake_run(root, "e", "20260101-000004-cpu-s3", seed=3, profile="cpu")

    def spec(seed, bindings=()):
        return SeedSpec("e", "smoke", seed, str(root), tuple(bindings))

    assert sweep.plan(spec(0)) == ("skip", done)
    assert sweep.plan(spec(1)) == ("resume", killed)  # the newest incomplete one
    assert sweep.plan(spec(2)) == ("new", None)  # other bindings: another run
    assert sweep.plan(spec(2, ["e.f.x  =  1"]))[0] == "skip"  # whitespace does not matter
    assert sweep.plan(spec(3)) == ("new", None)  # other profile
    assert sweep.plan(SeedSpec("e", "smoke", 1, str(root), resume=False)) == ("new", None)

    resume = sweep.command(spec(1), "resume", killed)
    assert resume[1:] == ["-m", "registry", "run", "e", "--resume", killed.name, "--quiet"]
    new = sweep.command(SeedSpec("e", "smoke", 4, str(root), ("e.f.x = 1",), device="cpu"), "new")
    assert new[1:] == ["-m", "registry", "run", "e", "--profile", "smoke", "--seed", "4",
                       "--gin", "e.f.x = 1", "--device", "cpu", "--quiet"]
    env = sweep.worker_env(SeedSpec("e", "smoke", 4, str(root), threads=3))
    assert env["REPRO_RUNS"] == str(root) and env["OMP_NUM_THREADS"] == "3"


def test_every_sweep_option_has_help():
    parser = cli_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    actions = [a for a in sub.choices["sweep"]._actions if not isinstance(a, argparse._HelpAction)]
    assert actions and all(a.help for a in actions), [a.dest for a in actions if not a.help]


def test_slurm_options_from_gin_file_then_command_line(tmp_path):
    import submitit

    cfg = tmp_path / "slurm.gin"
    cfg.write_text('sweep.slurm.partition = "gpu"\nsweep.slurm.time_min = 30\n'
                   'sweep.slurm.gpus = 1\nsweep.slurm.setup = ["module load cuda"]\n'
                   'sweep.slurm.additional = {"constraint": "a100"}\n')
    args = cli_parser().parse_args(["sweep", FAST, "--seeds", "0-19", "--launcher", "slurm",
                                    "--launcher-config", str(cfg), "--time-min", "120",
                                    "--cpus", "8"])
    opts = sweep.slurm_options(args)
    assert (opts.partition, opts.time_min, opts.gpus, opts.cpus) == ("gpu", 120, 1, 8)
    params = opts.executor_parameters("x")
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 120
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 8
    assert params["slurm_setup"][-1] == "module load cuda"
    # submitit checks every slurm_* name even when the executor is another one
    ex = submitit.AutoExecutor(folder=tmp_path / "s" / "%j", cluster="local")
    ex.update_parameters(**params)

    cfg.write_text("sweep.slurm.partitio = 'gpu'\n")
    with pytest.raises(SweepError, match="partitio"):
        sweep.slurm_options(args)


def test_bad_binding_fails_before_any_run():
    from registry import ReproError

    with pytest.raises(ReproError, match="bad gin binding"):
        sweep.sweep(FAST, "0-1", profile="smoke", bindings=["pwcca.synthetic.nope = 1"],
                    echo=lambda line: None)
    assert not (runs.runs_root() / FAST).exists()


@pytest.mark.parametrize("words", ["is in use by pid 4242 on host since 2026-12-01",
                                   "is held by another process (pid 4242)"])
def test_a_run_held_by_another_process_is_reported_not_fatal(words, monkeypatch):
    root = runs.runs_root()
    held = fake_run(root, FAST, "20260101-000000-smoke-s0", status="running")
    # what `run --resume` does when another live process holds the run's lock
    msg = f"error: run {held} {words}; wait for it to finish or stop it before resuming"
    monkeypatch.setattr(sweep, "command", lambda spec, action, run_dir=None: [
        sys.executable, "-c", f"import sys; print({msg!r}, file=sys.stderr); sys.exit(2)"])
    lines = []
    (r,) = sweep.sweep(FAST, [0], profile="smoke", echo=lines.append)
    assert (r.status, r.action, r.ok) == ("held", "resume", False)
    assert "held by another process" in r.error and "pid 4242" in r.error
    assert "0/1 complete (1 held)" in lines[-1]


# ------------------------------------------------------------- end to end


def test_local_launcher_two_workers_two_complete_records(capsys):
    args = cli_parser().parse_args(["sweep", FAST, "--seeds", "0-1", "--profile", "smoke",
                                    "--jobs", "2"])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    recs = records(FAST)
    assert sorted(r["seed"] for r in recs) == [0, 1]
    assert all(r["status"] == "complete" and r["profile"] == "smoke" for r in recs)
    assert all(r["command"].startswith(f"python -m registry run {FAST} --profile smoke --seed")
               for r in recs)  # the command a user would type: an ordinary run record
    for folder in (runs.runs_root() / FAST).iterdir():
        assert (folder / "metrics.json").exists()
    assert "2/2 complete" in out and "launch overhead per seed" in out
    assert out.count(" start ") == 2 and out.count(" complete ") >= 2

    # rerunning the sweep launches nothing
    assert args.fn(args) == 0
    assert "2/2 complete (2 skipped)" in capsys.readouterr().out
    assert len(records(FAST)) == 2


def test_submitit_local_executor_runs_a_sweep_end_to_end():
    done = fake_run(runs.runs_root(), FAST, "20260101-000000-smoke-s2", seed=2)
    lines = []
    results = sweep.sweep(FAST, "0-2", profile="smoke", launcher="slurm", executor="local",
                          slurm={"time_min": 5}, echo=lines.append)
    assert [r.status for r in results] == ["complete", "complete", "skipped"]
    assert results[0].job_id and results[1].job_id
    assert results[2].job_id is None and results[2].run_dir == str(done)  # no job submitted
    recs = [r for r in records(FAST) if r["seed"] != 2]
    assert sorted(r["seed"] for r in recs) == [0, 1]
    assert all(r["status"] == "complete" for r in recs)
    assert len(list((runs.runs_root() / ".submitit" / FAST).glob("*/seed-*.json"))) == 2
    logs = list((runs.runs_root() / ".submitit" / FAST).glob("*/*/*_log.out"))
    assert len(logs) == 2 and all("registry run" in p.read_text() for p in logs)


def test_killed_worker_then_rerun_completes_only_the_missing_seed():
    procs = {}
    box = []

    def on_start(spec, proc, action, run_dir):
        procs[spec.seed] = proc

    def first():
        box.append(sweep.sweep("gce_noisy_labels", "0-1", profile="smoke", jobs=2, bindings=GCE,
                               echo=lambda line: None, on_start=on_start))

    thread = threading.Thread(target=first)
    thread.start()
    base = runs.runs_root() / "gce_noisy_labels"
    deadline, ckpts = time.time() + 180, []
    while time.time() < deadline and not ckpts:
        ckpts = list(base.glob("*-smoke-s1/checkpoints/*.pt"))
        time.sleep(0.02)
    assert ckpts, "seed 1 never wrote a checkpoint"
    os.kill(procs[1].pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep hung after a worker was killed"

    r0, r1 = box[0]
    assert r0.status == "complete" and r1.status == "killed" and "SIGKILL" in r1.error
    killed = Path(r1.run_dir)
    assert not (killed / "metrics.json").exists(), "killed too late: the run had finished"
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    kept = Path(r0.run_dir) / "run.json"
    kept_bytes, kept_mtime = kept.read_bytes(), kept.stat().st_mtime_ns

    lines = []
    r0b, r1b = sweep.sweep("gce_noisy_labels", "0-1", profile="smoke", jobs=2, bindings=GCE,
                           echo=lines.append)
    assert (r0b.status, r0b.run_dir) == ("skipped", r0.run_dir)
    assert (r1b.status, r1b.action, r1b.run_dir) == ("complete", "resume", str(killed))
    meta = json.loads((killed / "run.json").read_text())
    assert meta["status"] == "complete" and meta["attempts"] == 2
    assert "resumed after epoch" in (killed / "log.txt").read_text()  # not restarted
    assert kept.read_bytes() == kept_bytes and kept.stat().st_mtime_ns == kept_mtime
    assert sorted(p.name for p in base.iterdir()) == sorted([killed.name, Path(r0.run_dir).name])
    assert any("2/2 complete (1 skipped)" in line for line in lines)
