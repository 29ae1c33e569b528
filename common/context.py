"""What an experiment's ``run(ctx)`` receives: ``RunContext``, and ``Resumable``
epoch loops that survive being killed.  This is the only part of the run
machinery a paper imports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from common import atomic
from common import device as devices
from registry import Experiment, ReproError


class Resumable:
    """An epoch loop that survives being killed.

    ``objects`` have ``state_dict``/``load_state_dict`` (models, optimisers,
    schedulers) or are ``torch.Generator``s; ``state`` is a dict of plain
    values or tensors the loop keeps (history, best score, ...), updated in
    place.  ``epochs(n)`` restores the last checkpoint (weights, state and
    every RNG), then yields the remaining epoch indices and checkpoints after
    each one, so a resumed loop continues exactly where the killed one left.
    """

    def __init__(self, ctx: "RunContext", key: str, objects: dict, state: dict | None = None):
        self.ctx, self.key, self.objects = ctx, key, objects
        self.state = state if state is not None else {}
        self.path = ctx.run_dir / "checkpoints" / f"{safe_name(key)}.pt"

    def _snapshot(self, epoch: int) -> dict:
        objs = {}
        for name, obj in self.objects.items():
            objs[name] = obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
        return {"key": self.key, "config": self.ctx.config_text, "epoch": epoch,
                "objects": objs, "state": self.state, "rng": devices.rng_state()}

    def restore(self) -> int:
        if not self.path.exists():
            return 0
        ckpt = atomic.torch_load(self.path)
        if ckpt.get("config") != self.ctx.config_text:
            raise ReproError(f"checkpoint {self.path} was written under another config; "
                             f"start a new run instead of resuming this one")
        for name, obj in self.objects.items():
            if isinstance(obj, torch.Generator):
                obj.set_state(ckpt["objects"][name])
            else:
                obj.load_state_dict(ckpt["objects"][name])
        self.state.clear()
        self.state.update(ckpt["state"])
        devices.set_rng_state(ckpt["rng"])
        self.ctx.log(f"[{self.key}] resumed after epoch {ckpt['epoch']}")
        return int(ckpt["epoch"])

    def save(self, epoch: int) -> None:
        atomic.torch_save(self._snapshot(epoch), self.path)
        self.ctx.heartbeat()

    def epochs(self, n: int) -> Iterator[int]:
        start = self.restore()
        for epoch in range(start, n):
            yield epoch
            self.save(epoch + 1)


def safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)


def derived_seed(seed: int, key: str) -> int:
    """The seed a run with ``seed`` uses for ``key`` (RunContext.seed_for / generator); lets a
    tool rebuild a finished run's data without a RunContext."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


@dataclass
class RunContext:
    """What an experiment's ``run(ctx)`` receives."""

    experiment: Experiment
    profile: str
    seed: int
    device: torch.device
    run_dir: Path
    config_text: str
    quiet: bool = False
    deterministic: bool = False
    data_dir: str | None = None
    download: bool = False
    amp: bool = False
    _meta: dict = field(default_factory=dict, repr=False)
    _started: float = field(default_factory=time.time, repr=False)
    _cpu_started: float = field(default_factory=time.process_time, repr=False)

    # ---- logging and progress
    def log(self, message: str) -> None:
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(message + "\n")
        if not self.quiet:
            print(message, flush=True)

    def progress(self, iterable=None, **kwargs):
        """A tqdm bar, silent with --quiet or when stderr is not a terminal."""
        from tqdm.auto import tqdm

        kwargs.setdefault("leave", False)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, disable=self.quiet or not sys.stderr.isatty(), **kwargs)

    # ---- saved results, read later by figures
    def save_json(self, name: str, obj: Any) -> Path:
        path = self.run_dir / "results" / f"{name}.json"
        atomic.write_json(path, obj, compact=True)
        return path

    def save_tensors(self, name: str, tensors: dict) -> Path:
        """Save a (nested) dict of tensors; each is cloned first, so that a slice
        of a large tensor does not drag its whole storage into the file."""
        path = self.run_dir / "results" / f"{name}.pt"
        atomic.torch_save(atomic.own_storage(tensors), path)
        return path

    # ---- sub-runs and resumption
    def seed_for(self, key: str) -> int:
        return derived_seed(self.seed, key)

    def once(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` once per run: its JSON result is saved under
        results/steps/, and a resumed run reuses it instead of recomputing.
        The global RNGs are seeded from (seed, key) first, so a sub-run's
        result does not depend on which sub-runs ran before it."""
        path = self.run_dir / "results" / "steps" / f"{safe_name(key)}.json"
        if path.exists():
            return json.loads(path.read_text())
        devices.seed_everything(self.seed_for(key))
        result = fn()
        atomic.write_json(path, result, compact=True)
        self.heartbeat()
        return json.loads(path.read_text())

    def resumable(self, key: str, objects: dict, state: dict | None = None) -> Resumable:
        return Resumable(self, key, objects, state)

    def generator(self, key: str) -> torch.Generator:
        """A CPU generator seeded from (seed, key), for data order and noise (CPU-side
        randomness keeps a run's data order the same on every device)."""
        return torch.Generator().manual_seed(self.seed_for(key))

    # ---- data
    def dataset(self, name: str, train: bool):
        from common import data

        return data.load(name, train=train, root=self.data_dir, download=self.download)

    @contextlib.contextmanager
    def autocast(self):
        """Mixed precision on CUDA when --amp was given; a no-op otherwise."""
        if self.amp and self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield

    # ---- bookkeeping
    def elapsed(self) -> float:
        return self._meta.get("wall_seconds_before", 0.0) + time.time() - self._started

    def heartbeat(self) -> None:
        """Record the wall-clock so far (a killed run keeps what it had spent)."""
        self._meta["wall_seconds"] = round(self.elapsed(), 3)
        self._meta["device_hours"] = round(self.elapsed() / 3600, 6)
        # CPU time of this process (all threads): the cost even when the machine was shared
        self._meta["cpu_seconds"] = round(self._meta.get("cpu_seconds_before", 0.0)
                                          + time.process_time() - self._cpu_started, 1)
        atomic.write_json(self.run_dir / "run.json", self._meta)
