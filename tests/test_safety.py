"""Loading never runs pickled code: every path that reads a .pt file (or a pickled
dataset) refuses a planted payload."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

import registry
from common import data, runs

ROOT = registry.ROOT


class Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _plant(path: Path, marker: Path, wrap=lambda p: {"objects": {"model": p}, "state": p}) -> None:
    payload = Payload()
    payload.marker = marker
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap(payload), path)


def test_weights_only_everywhere(tmp_path):
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"experiment": "x", "profile": "smoke", "seed": 0}))
    (run / "results" / "config.json").write_text("{}")
    _plant(run / "checkpoints" / "k.pt", marker)
    _plant(run / "results" / "maps.pt", marker)
    _plant(run / "checkpoints" / "tdvae.pt", marker)

    with pytest.raises(registry.ReproError, match="not weights-only"):
        runs.torch_load(run / "checkpoints" / "k.pt")
    ctx = runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                          run_dir=run, config_text="", quiet=True)
    with pytest.raises(registry.ReproError):  # resuming an epoch loop
        ctx.resumable("k", {"model": torch.nn.Linear(1, 1)}).restore()
    with pytest.raises(registry.ReproError):  # a figure reading saved tensors
        runs.RunRecord.load(run).result("maps")
    from papers.tdvae import diagnose

    with pytest.raises(registry.ReproError):  # the TD-VAE diagnostic
        diagnose.diagnose(run)
    assert not marker.exists(), "a pickled payload ran"


def test_no_unsafe_load_in_the_code():
    """Every torch.load goes through common.atomic.torch_load (weights_only=True)."""
    offenders = []
    for path in [*ROOT.glob("common/*.py"), *ROOT.glob("papers/*/*.py"), *ROOT.glob("registry/*.py"),
                 *ROOT.glob("benchmarks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) == "torch":
                ok = path.name == "atomic.py" and any(
                    k.arg == "weights_only" and getattr(k.value, "value", None) is True
                    for k in node.keywords)
                if not ok:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_cifar_batches_unpickle_arrays_only(tmp_path):
    marker = tmp_path / "marker"
    payload = Payload()
    payload.marker = marker
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": payload, "labels": [0]}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.cifar10(train=False, root=tmp_path, checksums=None)
    assert not marker.exists()
