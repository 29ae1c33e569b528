"""Run records: every run leaves a self-describing folder.

``runs/<experiment>/<timestamp>-<profile>-s<seed>/`` holds

- ``run.json``: experiment, paper, profile, seed, command line, git commit and
  dirty flag, library versions, device, wall-clock and device-hours, status;
- ``config.gin`` (the profile file plus ``--gin`` bindings, what a resume
  re-applies) and ``operative_config.gin`` (every parameter actually used);
- ``metrics.json`` (flat name -> number, what claims are checked against);
- ``results/`` (whatever the figures read), ``figures/``, ``log.txt``;
- ``checkpoints/`` (each embeds the config text, so a resume is exact).

Every write is atomic (temporary file, fsync, rename): an interrupted run never
leaves a truncated file that a later report would trust.  Checkpoints hold only
tensors and plain Python values and load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import gin
import torch

from common import device as devices
from registry import PROFILES, ROOT, Experiment, ReproError

# ----------------------------------------------------------------- locations


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    return Path(runs_dir or os.environ.get("REPRO_RUNS") or ROOT / "runs")


def reports_root(reports_dir: str | os.PathLike | None = None) -> Path:
    return Path(reports_dir or os.environ.get("REPRO_REPORTS") or ROOT / "reports")


# ------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def _atomic_path(path: Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """Write ``obj`` as JSON atomically: indented for people (run.json, metrics.json),
    or ``compact`` for machine-read results (arrays of maps, curves), which
    indentation would inflate several times."""
    text = json.dumps(obj, default=_json_default, **(
        {"separators": (",", ":")} if compact else {"indent": 2}))
    atomic_write_text(path, text + "\n")


def _own_storage(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _own_storage(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_own_storage(v) for v in obj)
    return obj


def atomic_torch_save(obj: Any, path: Path) -> None:
    with _atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReproError(f"checkpoint {path} is corrupt or unreadable "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); delete it to "
                         f"restart that part from scratch, or start a new run") from exc


# ----------------------------------------------------------------- records


@dataclass
class RunRecord:
    """A run folder as later commands see it."""

    path: Path
    meta: dict

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        path = Path(path)
        try:
            meta = json.loads((path / "run.json").read_text())
        except FileNotFoundError:
            raise ReproError(f"{path} is not a run folder (no run.json)") from None
        except json.JSONDecodeError as exc:
            raise ReproError(f"{path}/run.json is unreadable: {exc}") from None
        return cls(path, meta)

    id = property(lambda self: self.path.name)
    experiment = property(lambda self: self.meta["experiment"])
    profile = property(lambda self: self.meta["profile"])
    seed = property(lambda self: self.meta["seed"])
    status = property(lambda self: self.meta.get("status", "unknown"))

    @property
    def metrics(self) -> dict:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def result(self, name: str) -> Any:
        """A saved result: results/<name>.json, or results/<name>.pt."""
        js = self.path / "results" / f"{name}.json"
        if js.exists():
            return json.loads(js.read_text())
        pt = self.path / "results" / f"{name}.pt"
        if pt.exists():
            return torch.load(pt, map_location="cpu", weights_only=True)
        raise ReproError(f"run {self.path} has no saved result {name!r}")

    def wall_str(self) -> str:
        s = self.meta.get("wall_seconds")
        if s is None:
            return "wall-clock unknown"
        return f"{_fmt_seconds(s)} on {self.meta.get('device_name', '?')}"


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def list_runs(experiment: str, runs_dir=None) -> list[RunRecord]:
    folder = runs_root(runs_dir) / experiment
    if not folder.is_dir():
        return []
    records = []
    for p in sorted(folder.iterdir()):
        if (p / "run.json").exists():
            with contextlib.suppress(ReproError):
                records.append(RunRecord.load(p))
    return records


def archived_runs(experiment: str, reports_dir=None) -> list[RunRecord]:
    """Run records copied into reports/<experiment>/runs/ (without checkpoints)."""
    folder = reports_root(reports_dir) / experiment / "runs"
    if not folder.is_dir():
        return []
    return [RunRecord.load(p) for p in sorted(folder.iterdir()) if (p / "run.json").exists()]


def latest_run(experiment: str, runs_dir=None, profile=None) -> RunRecord | None:
    done = [r for r in list_runs(experiment, runs_dir)
            if r.status == "complete" and (profile is None or r.profile == profile)]
    return done[-1] if done else None


def find_run(experiment: str, run: str | None, runs_dir=None, reports_dir=None,
             archived: bool = True) -> RunRecord:
    """A run by folder path or id (in runs/, then in the report archive unless
    ``archived`` is False); None means the newest complete one."""
    if run is None:
        pool = {r.id: r for r in archived_runs(experiment, reports_dir)}
        pool.update({r.id: r for r in list_runs(experiment, runs_dir)})
        done = sorted((r for r in pool.values() if r.status == "complete"), key=lambda r: r.id)
        if not done:
            raise ReproError(f"no complete run of {experiment} yet: "
                             f"python -m registry run {experiment} --profile smoke")
        return done[-1]
    candidates = [Path(run), runs_root(runs_dir) / experiment / run]
    if archived:
        candidates.append(reports_root(reports_dir) / experiment / "runs" / run)
    for candidate in candidates:
        if (candidate / "run.json").exists():
            return RunRecord.load(candidate)
    raise ReproError(f"no run folder {run!r} (looked in: {', '.join(str(c) for c in candidates)})")


def records_for_report(experiment: str, runs_dir=None, reports_dir=None,
                       profiles=None) -> list[RunRecord]:
    """The newest complete run per (profile, seed), from runs/ and the archive.

    Default profiles: every profile that has runs, except smoke, unless smoke
    is all there is (its numbers are never compared with the paper)."""
    pool = {r.id: r for r in archived_runs(experiment, reports_dir)}
    pool.update({r.id: r for r in list_runs(experiment, runs_dir)})
    latest: dict[tuple, RunRecord] = {}
    for r in sorted(pool.values(), key=lambda r: r.id):
        if r.status == "complete":
            latest[(r.profile, r.seed)] = r
    have = {p for p, _ in latest}
    if profiles is None:
        profiles = [p for p in PROFILES if p in have and p != "smoke"] or (
            ["smoke"] if "smoke" in have else [])
    return [r for key, r in sorted(latest.items(), key=lambda kv: (PROFILES.index(kv[0][0]), kv[0][1]))
            if key[0] in profiles]


def profile_doc(path: Path) -> list[str]:
    """The leading comment block of a profile file: its hardware, cost, expectation."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return [line for line in lines if line]


# ------------------------------------------------------------------ context


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
        self.path = ctx.run_dir / "checkpoints" / f"{_safe(key)}.pt"

    def _snapshot(self, epoch: int) -> dict:
        objs = {}
        for name, obj in self.objects.items():
            objs[name] = obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
        return {"key": self.key, "config": self.ctx.config_text, "epoch": epoch,
                "objects": objs, "state": self.state, "rng": devices.rng_state()}

    def restore(self) -> int:
        if not self.path.exists():
            return 0
        ckpt = load_checkpoint(self.path)
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
        atomic_torch_save(self._snapshot(epoch), self.path)
        self.ctx.heartbeat()

    def epochs(self, n: int) -> Iterator[int]:
        start = self.restore()
        for epoch in range(start, n):
            yield epoch
            self.save(epoch + 1)


def _safe(key: str) -> str:
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
        atomic_write_json(path, obj, compact=True)
        return path

    def save_tensors(self, name: str, tensors: dict) -> Path:
        """Save a (nested) dict of tensors; each is cloned first, so that a slice
        of a large tensor does not drag its whole storage into the file."""
        path = self.run_dir / "results" / f"{name}.pt"
        atomic_torch_save(_own_storage(tensors), path)
        return path

    # ---- sub-runs and resumption
    def seed_for(self, key: str) -> int:
        return derived_seed(self.seed, key)

    def once(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` once per run: its JSON result is saved under
        results/steps/, and a resumed run reuses it instead of recomputing.
        The global RNGs are seeded from (seed, key) first, so a sub-run's
        result does not depend on which sub-runs ran before it."""
        path = self.run_dir / "results" / "steps" / f"{_safe(key)}.json"
        if path.exists():
            return json.loads(path.read_text())
        devices.seed_everything(self.seed_for(key))
        result = fn()
        atomic_write_json(path, result, compact=True)
        self.heartbeat()
        return json.loads(path.read_text())

    def resumable(self, key: str, objects: dict, state: dict | None = None) -> Resumable:
        return Resumable(self, key, objects, state)

    def generator(self, key: str) -> torch.Generator:
        """A CPU generator seeded from (seed, key), for data order and noise."""
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
        atomic_write_json(self.run_dir / "run.json", self._meta)


# ------------------------------------------------------------------ execute


def _git_info() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if not commit:
        return {"commit": None, "dirty": None}
    # the modified files, so a reader can tell whether the experiment's own code was among them
    return {"commit": commit, "dirty": bool(changed), "dirty_files": changed[:50]}


def _versions() -> dict:
    import numpy
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "gin": getattr(gin, "__version__", "0.5"), "platform": platform.platform()}


def _check_bindings(exp: Experiment, bindings: list[str]) -> None:
    for b in bindings:
        if "=" not in b:
            raise ReproError(f"bad gin binding {b!r}: expected 'module.function.parameter = value'")
        selector = b.split("=", 1)[0].strip().split("/")[-1]
        if not selector.startswith(exp.gin_module + "."):
            raise ReproError(f"bad gin binding {b!r}: {exp.name}'s parameters live under "
                             f"'{exp.gin_module}.' (see its configs/*.gin)")


def parse_config(exp: Experiment, profile: str, bindings: list[str]) -> str:
    """Clear gin, apply the profile file and the bindings, return the config text.

    Fails before anything runs, naming the offending parameter."""
    path = exp.profile_path(profile)
    if not path.exists():
        raise ReproError(f"{exp.name} has no {profile!r} profile ({path} is missing); "
                         f"it has: {', '.join(exp.profiles)}")
    _check_bindings(exp, bindings)
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
    except Exception as exc:
        gin.clear_config()
        raise ReproError(f"profile file {path} does not parse: {exc}") from None
    for b in bindings:
        try:
            gin.parse_config(b)
        except Exception as exc:
            gin.clear_config()
            raise ReproError(f"bad gin binding {b!r}: {str(exc).splitlines()[0]}") from None
    text = path.read_text()
    if bindings:
        text += "\n# --gin bindings\n" + "\n".join(bindings) + "\n"
    return text


def _new_run_dir(exp: Experiment, profile: str, seed: int, runs_dir) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_root(runs_dir) / exp.name
    for i in range(1000):
        suffix = f"-{i}" if i else ""
        path = base / f"{stamp}-{profile}-s{seed}{suffix}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ReproError(f"could not create a run folder under {base}")


def _flatten(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, name + "/"))
            continue
        if isinstance(v, torch.Tensor) or hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or v is None:
            flat[name] = v
        elif isinstance(v, (int, float)):
            flat[name] = v if math.isfinite(v) else None
        else:
            raise ReproError(f"metric {name!r} is a {type(v).__name__}, not a number")
    return flat


def execute(exp: Experiment, *, profile=None, seed=0, device="auto", bindings=(),
            data_dir=None, resume=None, quiet=False, runs_dir=None, deterministic=False,
            download=False, amp=False, argv=None) -> RunRecord:
    """Run ``exp`` and return its complete record (see the module docstring)."""
    bindings = list(bindings)
    meta_before: dict = {}
    if resume is not None:
        record = find_run(exp.name, resume, runs_dir=runs_dir, archived=False)
        if record.experiment != exp.name:
            raise ReproError(f"{record.path} is a run of {record.experiment}, not {exp.name}")
        if record.status == "complete":
            raise ReproError(f"{record.path} is already complete; nothing to resume")
        if (bindings or (profile not in (None, record.profile)) or seed not in (0, record.seed)):
            raise ReproError("--resume re-applies the run's own profile, seed and bindings; "
                             "drop --profile/--seed/--gin")
        meta_before = record.meta
        profile, seed = record.profile, record.seed
        bindings = list(record.meta.get("gin_bindings", []))
        data_dir = data_dir or record.meta.get("data_dir")
        deterministic = deterministic or record.meta.get("deterministic", False)
    profile = profile or exp.default_profile
    if profile not in PROFILES:
        raise ReproError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")

    config_text = parse_config(exp, profile, bindings)  # fails before any folder or training
    try:
        dev = devices.pick_device(device)
        if resume is not None:
            run_dir = record.path
            if (run_dir / "config.gin").read_text() != config_text:
                raise ReproError(f"{run_dir}/config.gin differs from its profile file now; "
                                 f"the code or profile changed since the run started")
        else:
            run_dir = _new_run_dir(exp, profile, seed, runs_dir)
            atomic_write_text(run_dir / "config.gin", config_text)

        argv = list(argv or sys.argv)
        meta = {
            "experiment": exp.name, "paper": exp.paper.title, "profile": profile, "seed": seed,
            "status": "running", "command": shlex.join(["python", "-m", "registry", *argv[1:]]),
            "gin_bindings": bindings, "data_dir": data_dir, "deterministic": deterministic,
            "device": str(dev), "device_name": devices.describe(dev), "git": _git_info(),
            "versions": _versions(),
            "started": meta_before.get("started") or _now(),
            "attempts": meta_before.get("attempts", 0) + 1,
            "wall_seconds_before": meta_before.get("wall_seconds", 0.0),
            "cpu_seconds_before": meta_before.get("cpu_seconds", 0.0),
        }
        ctx = RunContext(experiment=exp, profile=profile, seed=seed, device=dev, run_dir=run_dir,
                         config_text=config_text, quiet=quiet, deterministic=deterministic,
                         data_dir=data_dir, download=download, amp=amp, _meta=meta)
        ctx.heartbeat()
        devices.set_deterministic(deterministic)
        devices.seed_everything(seed)
        ctx.log(f"{exp.name} [{profile}, seed {seed}] on {meta['device_name']} -> {run_dir}")
        try:
            metrics = exp.run(ctx)
            if not isinstance(metrics, dict):
                raise ReproError(f"{exp.name}'s run() returned {type(metrics).__name__}, not a dict")
            atomic_write_json(run_dir / "metrics.json", _flatten(metrics))
            atomic_write_text(run_dir / "operative_config.gin", gin.operative_config_str())
        except BaseException as exc:
            meta["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            meta["error"] = f"{type(exc).__name__}: {exc}"
            ctx.heartbeat()
            raise
        finally:
            devices.set_deterministic(False)
        meta.update(status="complete", finished=_now())
        ctx.heartbeat()
    finally:
        gin.clear_config()

    record = RunRecord.load(run_dir)
    from common import report

    report.make_figures(exp, record)
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
