"""Executing a run: configure, lock the folder, record, run, finish.

``run.json`` holds experiment, paper, profile, seed, command line, gin bindings,
git commit and dirty flag (of the first attempt; each ``--resume`` adds its own
under ``resumes``), library versions, device and its name, threads, amp, the
C allocator's settings (``common.allocator``), wall-clock, CPU time and
device-hours, and status (running, complete, failed, interrupted).  Everything
that can be checked before work starts is checked first: the profile file, every
gin binding's name and type, the device.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import typing
from datetime import datetime, timezone
from pathlib import Path

import gin
import torch

from common import atomic
from common.allocator import in_effect as allocator_in_effect
from common import device as devices
from common.context import RunContext
from common.records import RunRecord, find_run, runs_root
from registry import PROFILES, ROOT, Experiment, ReproError, RunInterrupted

# ------------------------------------------------------------- provenance


def git_info() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.rstrip()  # porcelain lines start with a space

    try:
        commit = git("rev-parse", "HEAD")
        changed = changed_files(git("status", "--porcelain", "--untracked-files=all"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if not commit:
        return {"commit": None, "dirty": None}
    # the modified files, so a reader can tell whether the experiment's own code was among them
    return {"commit": commit, "dirty": bool(changed), "dirty_files": changed[:50]}


_CODE_DIRS = ("registry/", "common/", "papers/")
_CODE_SUFFIXES = (".py", ".gin", ".toml")


def changed_files(porcelain: str) -> list[str]:
    """What makes a run dirty, from ``git status --porcelain --untracked-files=all``:
    every modified tracked file, and untracked (not ignored) code, configs and claims
    under registry/, common/ and papers/ (a new plugin not yet committed is code the
    commit does not describe)."""
    out = []
    for line in porcelain.splitlines():
        path = line[3:]
        if not line.startswith("??") or (path.startswith(_CODE_DIRS) and path.endswith(_CODE_SUFFIXES)):
            out.append(path)
    return out


def versions() -> dict:
    import numpy
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "gin": getattr(gin, "__version__", "0.5"), "platform": platform.platform()}


# ------------------------------------------------------------ configuration


def _check_selectors(exp: Experiment, bindings: list[str]) -> None:
    for b in bindings:
        if "=" not in b:
            raise ReproError(f"bad gin binding {b!r}: expected 'module.function.parameter = value'")
        selector = b.split("=", 1)[0].strip().split("/")[-1]
        if not selector.startswith(exp.gin_module + "."):
            raise ReproError(f"bad gin binding {b!r}: {exp.name}'s parameters live under "
                             f"'{exp.gin_module}.' (see its configs/*.gin)")


_PRIMITIVE = (bool, int, float, str, tuple, list, dict, type(None))


def _accepts(expected: type, value) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (tuple, list):
        return isinstance(value, (tuple, list))
    return isinstance(value, expected)


def _expected_types(fn, param: str) -> tuple[type, ...] | None:
    """The types a parameter accepts: from its annotation, else its default's type."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    p = sig.parameters.get(param)
    if p is None:
        return None
    try:
        hint = typing.get_type_hints(fn).get(param)
    except Exception:  # an annotation that does not resolve: fall back to the default
        hint = None
    if hint is not None:
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, getattr(
            __import__("types"), "UnionType", typing.Union)) else (hint,)
        types_ = tuple(typing.get_origin(a) or a for a in args)
        if all(isinstance(t, type) for t in types_):
            return types_
    if p.default is not inspect.Parameter.empty and p.default is not None:
        return (type(p.default),)
    return None


def _check_types() -> None:
    """Every bound value has its parameter's type (annotation, else default's type),
    so a wrong type fails now, not an hour into a run."""
    from gin import config as gin_config

    for (_scope, selector), params in gin_config._CONFIG.items():
        try:
            fn = gin_config._REGISTRY.get_match(selector).wrapped
        except (KeyError, AttributeError):
            continue
        for param, value in params.items():
            if not isinstance(value, _PRIMITIVE):
                continue  # a reference to another configurable or a macro
            expected = _expected_types(fn, param)
            if expected and not any(_accepts(t, value) for t in expected):
                want = " or ".join(t.__name__ for t in expected)
                raise ReproError(f"bad gin binding {selector}.{param} = {value!r}: expects "
                                 f"{want}, got {type(value).__name__}")


def parse_config(exp: Experiment, profile: str, bindings: list[str]) -> str:
    """Clear gin, apply the profile file and the bindings, check every value's type,
    and return the config text.  Fails before anything runs, naming the parameter."""
    path = exp.profile_path(profile)
    if not path.exists():
        raise ReproError(f"{exp.name} has no {profile!r} profile ({path} is missing); "
                         f"it has: {', '.join(exp.profiles)}")
    _check_selectors(exp, bindings)
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
    try:
        _check_types()
    except ReproError:
        gin.clear_config()
        raise
    text = path.read_text()
    if bindings:
        text += "\n# --gin bindings\n" + "\n".join(bindings) + "\n"
    return text


# ------------------------------------------------------------------ folders


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir/.lock`` while a process works in the folder; a second process
    is refused with who holds it.  The OS releases the lock if the holder dies."""
    path = Path(run_dir) / ".lock"
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ReproError(f"run {run_dir} is in use by {holder}; wait for it to finish or "
                             f"stop it before resuming") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
        f.flush()
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


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


def flatten_metrics(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as flat name -> number; a non-finite number becomes None (JSON
    has no NaN), which the claims read as a missing seed (*incomplete*)."""
    flat = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_metrics(v, name + "/"))
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


def _resume_command(exp: Experiment, run_dir: Path, runs_dir) -> str:
    extra = ["--runs-dir", str(runs_dir)] if runs_dir else []
    return shlex.join(["python", "-m", "registry", "run", exp.name, "--resume", run_dir.name,
                       *extra])


# ------------------------------------------------------------------ execute


def execute(exp: Experiment, *, profile=None, seed=0, device="auto", bindings=(),
            data_dir=None, resume=None, quiet=False, runs_dir=None, deterministic=False,
            download=False, amp=False, threads=None, argv=None) -> RunRecord:
    """Run ``exp`` and return its complete record (see the module docstring)."""
    bindings = list(bindings)
    before: dict = {}
    if resume is not None:
        record = find_run(exp.name, resume, runs_dir=runs_dir, archived=False)
        if record.experiment != exp.name:
            raise ReproError(f"{record.path} is a run of {record.experiment}, not {exp.name}")
        if bindings or profile not in (None, record.profile) or seed not in (0, record.seed):
            raise ReproError("--resume re-applies the run's own profile, seed and bindings; "
                             "drop --profile/--seed/--gin")
        before = record.meta
        profile, seed = record.profile, record.seed
        bindings = list(before.get("gin_bindings", []))
        data_dir = data_dir or before.get("data_dir")
        deterministic = deterministic or before.get("deterministic", False)
        amp = amp or before.get("amp", False)
        threads = threads or before.get("threads")
        if device == "auto" and before.get("device"):
            device = torch.device(before["device"]).type
    profile = profile or exp.default_profile
    if profile not in PROFILES:
        raise ReproError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if threads is not None:
        if int(threads) < 1:
            raise ReproError(f"--threads must be at least 1, not {threads}")
        torch.set_num_threads(int(threads))

    config_text = parse_config(exp, profile, bindings)  # fails before any folder or training
    try:
        dev = devices.pick_device(device)
        if resume is not None:
            run_dir = record.path
        else:
            run_dir = _new_run_dir(exp, profile, seed, runs_dir)
        with run_lock(run_dir):
            if resume is not None:
                current = RunRecord.load(run_dir)  # re-read under the lock
                if current.status == "complete":
                    raise ReproError(f"{run_dir} is already complete; nothing to resume")
                if (run_dir / "config.gin").read_text() != config_text:
                    raise ReproError(f"{run_dir}/config.gin differs from its profile file now; "
                                     f"the code or profile changed since the run started")
            else:
                atomic.write_text(run_dir / "config.gin", config_text)
            _execute_locked(
                exp, profile=profile, seed=seed, dev=dev, bindings=bindings, data_dir=data_dir,
                quiet=quiet, deterministic=deterministic, download=download, amp=amp,
                argv=argv, run_dir=run_dir, config_text=config_text, before=before,
                runs_dir=runs_dir)
    finally:
        gin.clear_config()
    record = RunRecord.load(run_dir)
    from common import report

    report.make_figures(exp, record)
    return record


def _execute_locked(exp, *, profile, seed, dev, bindings, data_dir, quiet, deterministic,
                    download, amp, argv, run_dir, config_text, before, runs_dir) -> None:
    argv = list(argv or sys.argv)
    allocator = allocator_in_effect()
    command = shlex.join(["python", "-m", "registry", *argv[1:]])
    attempt = {"git": git_info(), "command": command, "started": _now()}
    meta = {
        "experiment": exp.name, "paper": exp.paper.title, "profile": profile, "seed": seed,
        "status": "running", "command": before.get("command", command),
        "gin_bindings": bindings, "data_dir": data_dir, "deterministic": deterministic,
        "amp": amp, "threads": torch.get_num_threads(), "allocator": allocator,
        "device": str(dev), "device_name": devices.describe(dev),
        "git": before.get("git", attempt["git"]),
        "versions": versions(),
        "started": before.get("started") or attempt["started"],
        "attempts": before.get("attempts", 0) + 1,
        "wall_seconds_before": before.get("wall_seconds", 0.0),
        "cpu_seconds_before": before.get("cpu_seconds", 0.0),
    }
    if before:
        meta["resumes"] = [*before.get("resumes", []), attempt]
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
        atomic.write_json(run_dir / "metrics.json", flatten_metrics(metrics))
        atomic.write_text(run_dir / "operative_config.gin", gin.operative_config_str())
    except BaseException as exc:
        meta["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        meta["error"] = f"{type(exc).__name__}: {exc}"
        ctx.heartbeat()
        if isinstance(exc, KeyboardInterrupt):
            raise RunInterrupted(_resume_command(exp, run_dir, runs_dir)) from exc
        raise
    finally:
        devices.set_deterministic(False)
    meta.update(status="complete", finished=_now())
    ctx.heartbeat()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
