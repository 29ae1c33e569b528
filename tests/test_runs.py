"""Run records: atomic writes, weights-only checkpoints, choosing runs for reports."""

from __future__ import annotations

import json

import pytest
import torch

from common import device, runs
from common.train import batches


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    runs.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        runs.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_rng_state_round_trips_through_weights_only_checkpoint(tmp_path):
    device.seed_everything(3)
    state = device.rng_state()
    runs.torch_save({"rng": state}, tmp_path / "c.pt")
    a = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    device.seed_everything(99)
    device.set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    b = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_files_are_written_with_the_users_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        runs.write_text(tmp_path / "a.txt", "x")
        runs.torch_save({"a": torch.zeros(1)}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644


def test_batches_cover_every_sample_once():
    x = torch.arange(10)
    seen = torch.cat([b for (b,) in batches(x, batch_size=3, shuffle=True,
                                            generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert [len(b) for (b,) in batches(x, batch_size=3, drop_last=True)] == [3, 3, 3]
    with pytest.raises(ValueError):
        next(batches(x, torch.arange(3), batch_size=2))


def test_pick_device():
    assert device.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="no CUDA"):
            device.pick_device("cuda")


def test_smoke_figures_carry_a_visible_mark(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from common import plotting, report

    closed = []
    monkeypatch.setattr(plotting.plt(), "close", closed.append)

    def figure(record, out):
        fig, ax = plotting.subplots()
        ax.plot([0, 1])
        return plotting.save(fig, out / "f")

    exp = SimpleNamespace(name="x", figures=(figure,))
    for profile in ("smoke", "cpu"):
        report.make_figures(exp, SimpleNamespace(profile=profile, path=tmp_path), tmp_path / profile)
    smoke, cpu = ([t.get_text() for t in f.texts] for f in closed)
    assert smoke == ["smoke: not a result"] and cpu == []
