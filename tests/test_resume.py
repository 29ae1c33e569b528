"""Resuming: a run killed mid-training continues from its last checkpoint and
reaches the same final metrics as an uninterrupted run (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import registry
from common import device, runs
from common.train import batches, train_epoch

ROOT = Path(registry.__file__).resolve().parent
ARGS = ["run", "gce_noisy_labels", "--profile", "smoke", "--deterministic", "--quiet",
        "--gin", "gce.train.epochs = 6", "--gin", "gce.setup.noises = (('uniform', 0.4),)",
        "--gin", "gce.setup.losses = ('cce', 'trunc_lq')"]
# the cpu profile itself (30,000 Fashion-MNIST images), cut to 3 epochs of one loss: minutes
CPU_ARGS = ["run", "gce_noisy_labels", "--profile", "cpu", "--deterministic", "--quiet",
            "--threads", "1", "--gin", "gce.train.epochs = 3",
            "--gin", "gce.setup.noises = (('uniform', 0.4),)", "--gin", "gce.setup.losses = ('trunc_lq',)"]


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "registry", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("args", [ARGS, pytest.param(CPU_ARGS, marks=pytest.mark.slow)],
                         ids=["smoke", "cpu-3-epochs"])
def test_sigkill_mid_training_then_resume_matches_uninterrupted(args):
    reference = _cli(args)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    (ref_dir,) = (runs.runs_root() / "gce_noisy_labels").iterdir()
    expected = json.loads((ref_dir / "metrics.json").read_text())

    victim = _cli(args)
    deadline = time.time() + 300
    ckpts = []
    while time.time() < deadline and not ckpts:
        ckpts = [p for p in (runs.runs_root() / "gce_noisy_labels").glob("*/checkpoints/*.pt")
                 if ref_dir not in p.parents]
        time.sleep(0.01)
    assert ckpts, "the run never wrote a checkpoint"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    run_dir = ckpts[0].parents[1]
    assert not (run_dir / "metrics.json").exists(), "killed too late: the run had finished"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    resumed = _cli(["run", "gce_noisy_labels", "--resume", run_dir.name, "--quiet"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["attempts"] == 2
    assert json.loads((run_dir / "metrics.json").read_text()) == expected


def test_resumable_restores_weights_optimiser_and_rngs(tmp_path):
    """In-process: an exception after 2 of 5 epochs, then a fresh loop, gives
    bit-identical weights to an uninterrupted loop (dropout uses the global RNG)."""

    def make_ctx(path):
        path.mkdir(parents=True, exist_ok=True)
        return runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                               run_dir=path, config_text="cfg", quiet=True)

    def train(ctx, crash_after=None):
        device.seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 2))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(2)), torch.arange(64) % 2
        state = {"losses": []}
        loop = ctx.resumable("arm", {"model": model, "opt": opt, "gen": gen}, state)
        for epoch in loop.epochs(5):
            state["losses"].append(train_epoch(model, batches(x, y, batch_size=8, shuffle=True,
                                                              generator=gen), opt)["train_loss"])
            if crash_after is not None and epoch + 1 == crash_after:
                raise RuntimeError("simulated crash")
        return model, state

    ref_model, ref_state = train(make_ctx(tmp_path / "a"))
    ctx = make_ctx(tmp_path / "b")
    try:
        train(ctx, crash_after=3)
    except RuntimeError:
        pass
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "arm.pt", weights_only=True)
    assert ckpt["epoch"] == 2  # the crash came before epoch 3 was saved
    model, state = train(ctx)
    assert state["losses"] == ref_state["losses"]
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_from_another_config_is_refused(tmp_path):
    ctx = runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                          run_dir=tmp_path, config_text="A", quiet=True)
    model = torch.nn.Linear(2, 2)
    list(ctx.resumable("k", {"model": model}).epochs(1))
    ctx.config_text = "B"
    with pytest.raises(registry.ReproError, match="another config"):
        list(ctx.resumable("k", {"model": model}).epochs(2))
