"""The shared training loops on other devices, checked without a GPU.

- On the ``meta`` device (shapes only, no data) any tensor left on the CPU next to a
  meta one raises, and so does any ``.item()`` / ``.cpu()`` (a host sync): the loops
  run there end to end, so nothing inside them syncs or mixes devices.
- On the CPU, a dispatch mode counts ``aten._local_scalar_dense`` (what ``.item()``
  and friends become): zero inside the loops, one ``to_host`` per epoch.
- Smoke runs on every available device: CUDA when present (every experiment), else
  skipped with the reason; the CPU (a few experiments built on the shared loops;
  tests/test_registry_generated.py smoke-runs every experiment on the CPU).
"""

from __future__ import annotations

import contextlib
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import registry
from common import device as devices
from common import runs
from common import train as T
from common.adversarial import mixed_batch_loss

META = torch.device("meta")


def tiny_model(device):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3)).to(device)


def tiny_data(device, n=40):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 4, 4, generator=g).to(device), torch.randint(0, 3, (n,), generator=g).to(device)


class CountSyncs(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, ``if t:``)."""

    def __init__(self):
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


class FakeCtx:
    """What the loops use of a RunContext, without checkpoints (meta tensors have no data)."""

    device = META

    def resumable(self, key, objects, state=None):
        class Loop:
            def epochs(self, n):
                return iter(range(n))
        return Loop()

    def progress(self, *a, **k):
        class Bar:
            def update(self, *a): pass
            def set_postfix(self, **k): pass
            def close(self): pass
        return Bar()

    def autocast(self):
        return contextlib.nullcontext()


# ------------------------------------------------------------------ meta device


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_train_epoch_runs_on_meta(opt_cls):
    model = tiny_model(META)
    opt = opt_cls(model.parameters(), lr=0.1)
    x, y = tiny_data(META)
    stats = T.train_epoch(model, T.batches(x, y, batch_size=8, shuffle=True,
                                           generator=torch.Generator().manual_seed(1)),
                          opt, autocast=contextlib.nullcontext, clip_grad_norm=1.0, sync=False)
    assert stats["train_loss"].device == META


def test_meta_catches_a_stray_cpu_tensor_and_a_per_step_sync():
    model, x, y = tiny_model(META), *tiny_data(META)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def stray(m, xb, yb):  # per-example weights left on the CPU (0-dim CPU tensors may mix, as on CUDA)
        return (F.cross_entropy(m(xb), yb, reduction="none") * torch.ones(len(yb))).mean()

    def syncing(m, xb, yb):
        loss = F.cross_entropy(m(xb), yb)
        loss.item()
        return loss

    for bad in (stray, syncing):
        with pytest.raises((RuntimeError, NotImplementedError)):
            T.train_epoch(model, T.batches(x, y, batch_size=8), opt, bad, sync=False)


def test_train_steps_runs_on_meta():
    model, (x, y) = tiny_model(META), tiny_data(META)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)

    def step_fn(step):
        idx = torch.randint(0, len(x), (8,), generator=gen).to(x.device)
        out = model(x[idx])
        return F.cross_entropy(out, y[idx]), {"logit_mean": out.detach().mean()}

    means = T.train_steps(model, opt, step_fn, 5, clip_grad_norm=1.0, sync=False)
    assert set(means) == {"loss", "logit_mean"} and all(v.device == META for v in means.values())


def test_train_until_memorised_runs_on_meta(monkeypatch):
    monkeypatch.setattr(T, "to_host", lambda values: {k: 1.0 for k in values})  # the epoch's one sync
    model, (x, y) = tiny_model(META), tiny_data(META)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    hist = T.train_until_memorised(FakeCtx(), "m", model, opt, x, y, epochs=2, batch_size=8,
                                   generator=torch.Generator().manual_seed(0))
    assert [r["epoch"] for r in hist] == [1, 2]


def test_kurakin_mixed_batch_on_meta():
    """The mixed-batch loss draws its split on the CPU and moves it to the batch's device."""
    model, (x, y) = tiny_model(META), tiny_data(META)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = functools.partial(mixed_batch_loss, attack=lambda m, a, b: a + 0.0, k=3,
                                generator=torch.Generator().manual_seed(0))
    stats = T.train_epoch(model, T.batches(x, y, batch_size=8), opt, loss_fn, sync=False)
    assert stats["train_loss"].device == META


# ------------------------------------------------------------------ one host sync per epoch (CPU)


def test_exactly_one_host_sync_per_epoch(monkeypatch):
    calls = []
    real = T.to_host
    monkeypatch.setattr(T, "to_host", lambda values: calls.append(1) or real(values))
    model, (x, y) = tiny_model("cpu"), tiny_data("cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # Adam .item()s its CPU step count
    with CountSyncs() as mode:
        for _ in range(3):
            T.train_epoch(model, T.batches(x, y, batch_size=8, shuffle=True,
                                           generator=torch.Generator().manual_seed(1)), opt)
    assert calls == [1, 1, 1] and mode.syncs == 0  # to_host copies once, without .item()
    with CountSyncs() as mode:  # the counter does see an .item()
        torch.ones(()).item()
    assert mode.syncs == 1


def test_device_side_sums_equal_the_old_per_step_host_sums():
    """float64 sums on the device, copied once, are the per-step .double().cpu() sums."""
    model, (x, y) = tiny_model("cpu"), tiny_data("cpu", 37)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []

    def loss_fn(m, xb, yb):
        loss = F.cross_entropy(m(xb), yb)
        losses.append((loss.detach().double(), len(yb)))
        return loss

    got = T.train_epoch(model, T.batches(x, y, batch_size=8), opt, loss_fn)["train_loss"]
    total = torch.zeros((), dtype=torch.float64)
    for loss, n in losses:
        total += loss.cpu() * n
    assert got == (total / 37).item()


def test_batches_on_a_device_follow_the_cpu_order():
    x = torch.arange(20.0)
    a = [b for (b,) in T.batches(x, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(3))]
    b = [b for (b,) in T.batches(x.to(META), batch_size=6, shuffle=True,
                                 generator=torch.Generator().manual_seed(3))]
    assert [len(t) for t in a] == [len(t) for t in b] and all(t.device == META for t in b)
    c = [b for (b,) in T.batches(x, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(3),
                                 device="cpu")]
    assert all(torch.equal(u, v) for u, v in zip(a, c))


def test_accuracy_compares_on_the_models_device():
    model, (x, y) = tiny_model("cpu"), tiny_data("cpu")
    ref = 100.0 * (T.predict(model, x).argmax(1) == y).float().mean().item()
    assert T.accuracy(model, x, y) == ref
    with CountSyncs() as mode:
        T.accuracy(model, x, y, batch_size=7)
    assert mode.syncs == 1


def test_to_host_is_exact():
    vals = {"a": torch.tensor(0.1, dtype=torch.float64), "b": torch.tensor(1 / 3), "c": 2.5,
            "n": torch.tensor(12345)}
    out = T.to_host(vals)
    assert out == {"a": 0.1, "b": torch.tensor(1 / 3).item(), "c": 2.5, "n": 12345.0}
    assert list(out) == list(vals)


def test_wall_timer_measures_wall_clock():
    import time

    with devices.WallTimer("cpu") as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 5 and math.isfinite(t.seconds)


# ------------------------------------------------------------------ smoke runs on every device

CPU_SUBSET = ("madry_mnist", "pwcca_cnn", "tdvae_oscillator")


def _cases():
    cases = [pytest.param("cpu", name, id=f"cpu-{name}") for name in CPU_SUBSET]
    no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    cases += [pytest.param("cuda", name, id=f"cuda-{name}", marks=no_cuda) for name in registry.names()]
    return cases


@pytest.mark.parametrize("device,name", _cases())
def test_smoke_on_device(device, name, tmp_path):
    # deterministic kernels only on the CPU: some CUDA kernels have no deterministic
    # version, and this test is about devices, not bit-reproducibility
    record = runs.execute(registry.get(name), profile="smoke", device=device, quiet=True,
                          deterministic=device == "cpu", runs_dir=tmp_path, argv=["registry", "run", name])
    assert record.status == "complete"
    assert record.meta["device"].startswith(device)
