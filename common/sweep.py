"""Seed sweeps: ``python -m registry sweep EXP --seeds 0-19``.

A sweep is many ordinary runs, one per seed.  Each seed is executed by the
command a user would type, ``python -m registry run EXP --profile P --seed S
--quiet [--gin ...]``, in its own process, so a sweep's run folders are
indistinguishable from hand-made ones and ``report``/``compare`` aggregate
them as usual.  Two launchers start those processes:

- ``local``: at most ``--jobs`` worker processes on this machine, each with
  its own thread budget (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, by default
  the cores divided by the workers);
- ``slurm``: one job per seed (a job array) through submitit, with the
  partition, time limit, GPUs and CPUs from the command line or a gin file
  (``--launcher-config``, bindings such as ``sweep.slurm.partition = "gpu"``).
  ``--executor local|debug`` runs the same submitit path on this machine.

A sweep resumes: before a seed starts, the run folders of the same
experiment, profile, seed and ``--gin`` bindings are looked up.  A complete
one means the seed is skipped; an incomplete one (a killed worker leaves
``"running"`` in its run.json, a crash ``"failed"``, a ^C ``"interrupted"``)
is continued with ``python -m registry run EXP --resume RUN`` from its last
checkpoint; otherwise a new run starts.  The decision is taken by the worker
when it starts, so a requeued Slurm job resumes too.

This module imports only the standard library at import time; the registry,
gin and submitit are imported when a sweep runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = ("local", "slurm")
EXECUTORS = ("slurm", "local", "debug")  # submitit executors behind --launcher slurm
DEVICES = ("auto", "cpu", "cuda", "mps")

# How a resume refused because another live process holds the run is recognised
# (`run --resume` exits 2 with "run ... is in use by pid N on HOST since ...").
_HELD = re.compile(r"in use by|held by|locked|another (live )?process", re.IGNORECASE)

# A seed's outcome: complete (ran now), skipped (was already complete), submitted
# (--no-wait), planned (--dry-run); the rest are failures.
OK_STATUSES = ("complete", "skipped", "submitted", "planned")


class SweepError(ValueError):
    """Bad sweep input (seeds, launcher options), raised before anything runs."""


# ------------------------------------------------------------------- seeds


def parse_seeds(text: str) -> list[int]:
    """``"0-19"``, ``"0,3,5"``, ``"0-2,7"`` -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise SweepError(f"bad seed list {text!r}: use e.g. 0-19, 0,3,5 or 0-2,7")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise SweepError(f"bad seed range {part!r} in {text!r}: {hi} < {lo}")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def _seeds_arg(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except SweepError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ------------------------------------------------------------- one seed


@dataclass(frozen=True)
class SeedSpec:
    """Everything a worker needs to run one seed (picklable: it travels to Slurm jobs)."""

    experiment: str
    profile: str
    seed: int
    runs_dir: str  # absolute
    bindings: tuple[str, ...] = ()
    device: str = "auto"
    deterministic: bool = False
    data_dir: str | None = None
    threads: int | None = None  # per-worker thread budget; None: leave the environment alone
    resume: bool = True  # continue an incomplete run of the seed (False: leave it, start anew)
    result_file: str | None = None  # a submitit job writes its SeedResult here, as JSON
    python: str = field(default_factory=lambda: sys.executable)


@dataclass
class SeedResult:
    seed: int
    status: str  # see OK_STATUSES; failures: failed, killed, held, interrupted
    action: str  # new | resume | skip
    run_dir: str | None = None
    returncode: int | None = None
    seconds: float | None = None  # wall-clock of the worker process
    run_seconds: float | None = None  # the run's own wall-clock for this attempt (run.json)
    error: str = ""
    job_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    @property
    def overhead(self) -> float | None:
        """Launch overhead: the worker's wall-clock minus the time the run itself recorded
        (interpreter start, imports, plugin discovery, figures, writing the record)."""
        if self.seconds is None or self.run_seconds is None:
            return None
        return self.seconds - self.run_seconds


def _norm(bindings: Iterable[str]) -> list[str]:
    return [" ".join(b.split()) for b in bindings]


def matching_runs(spec: SeedSpec) -> list[tuple[Path, dict]]:
    """Run folders of ``spec``'s experiment with its profile, seed and bindings, oldest first."""
    folder = Path(spec.runs_dir) / spec.experiment
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        try:
            meta = json.loads((path / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("experiment", spec.experiment) == spec.experiment
                and meta.get("profile") == spec.profile and meta.get("seed") == spec.seed
                and _norm(meta.get("gin_bindings", [])) == _norm(spec.bindings)):
            found.append((path, meta))
    return found


def plan(spec: SeedSpec) -> tuple[str, Path | None]:
    """("skip", complete run) | ("resume", newest incomplete run) | ("new", None)."""
    found = matching_runs(spec)
    done = [p for p, m in found if m.get("status") == "complete"]
    if done:
        return "skip", done[-1]
    if found and spec.resume:
        return "resume", found[-1][0]
    return "new", None


def command(spec: SeedSpec, action: str, run_dir: Path | None = None) -> list[str]:
    """The `python -m registry run` command line for one seed."""
    cmd = [spec.python, "-m", "registry", "run", spec.experiment]
    if action == "resume":
        cmd += ["--resume", Path(run_dir).name]  # profile, seed, bindings come from the record
    else:
        cmd += ["--profile", spec.profile, "--seed", str(spec.seed)]
        for b in spec.bindings:
            cmd += ["--gin", b]
        if spec.deterministic:
            cmd.append("--deterministic")
    if spec.device != "auto":
        cmd += ["--device", spec.device]
    if spec.data_dir:
        cmd += ["--data-dir", spec.data_dir]
    if spec.threads:
        cmd += ["--threads", str(spec.threads)]
    return cmd + ["--quiet"]


def worker_env(spec: SeedSpec) -> dict:
    env = dict(os.environ)
    env["REPRO_RUNS"] = spec.runs_dir
    pythonpath = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pythonpath if pythonpath else "")
    if spec.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(spec.threads)
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_seed(spec: SeedSpec, on_start: Callable | None = None,
             echo_output: bool = False) -> SeedResult:
    """Run (or skip, or resume) one seed in a `python -m registry run` process and wait.

    Never raises for a failed run: the result says what happened.  ``on_start(spec,
    process, action, run_dir)`` is called once the process is started (local launcher);
    ``echo_output`` copies the worker's output to this process's (a Slurm job's log)."""
    try:
        action, run_dir = plan(spec)
        if action == "skip":
            return SeedResult(spec.seed, "skipped", "skip", str(run_dir))
        before = {p for p, _ in matching_runs(spec)}
        attempts_before = (_read_meta(run_dir) or {}).get("attempts", 0) if run_dir else 0
        started = time.time()
        proc = subprocess.Popen(command(spec, action, run_dir), cwd=ROOT, env=worker_env(spec),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if on_start is not None:
            on_start(spec, proc, action, run_dir)
        stdout, err = proc.communicate()
        if echo_output:
            sys.stdout.write(stdout or "")
            sys.stderr.write(err or "")
        seconds = time.time() - started
        if run_dir is None:  # the folder the new run created
            new = [p for p, _ in matching_runs(spec) if p not in before]
            run_dir = new[-1] if new else None
        meta = _read_meta(run_dir) if run_dir else None
        result = SeedResult(spec.seed, "failed", action, str(run_dir) if run_dir else None,
                            proc.returncode, round(seconds, 3))
        if meta and meta.get("attempts", 0) > attempts_before:  # this attempt wrote its record
            result.run_seconds = round(meta.get("wall_seconds", 0.0)
                                       - meta.get("wall_seconds_before", 0.0), 3)
        rc = proc.returncode
        if rc == 0 and meta and meta.get("status") == "complete":
            result.status = "complete"
        elif rc < 0:
            result.status = "killed"
            try:
                result.error = f"worker killed by {signal.Signals(-rc).name}"
            except ValueError:
                result.error = f"worker killed by signal {-rc}"
        elif rc == 130 or (meta and meta.get("status") == "interrupted"):
            result.status = "interrupted"
            result.error = _last_line(err) or "interrupted"
        elif rc == 2 and action == "resume" and _HELD.search(err or ""):
            result.status = "held"
            result.error = f"held by another process: {_last_line(err).removeprefix('error: ')}"
        else:
            result.error = _last_line(err) or f"exit code {rc}"
            if action == "resume" and rc == 2:
                result.error += " (--no-resume starts this seed afresh)"
        return result
    except Exception as exc:  # noqa: BLE001 (a worker's own failure must not end the sweep)
        return SeedResult(spec.seed, "failed", "new", error=f"{type(exc).__name__}: {exc}")


def run_job(spec: SeedSpec) -> SeedResult:
    """What one submitit job runs: one seed, its command and outcome in the job's log."""

    def started(spec, proc, action, run_dir):
        print(f"[sweep] seed {spec.seed}: {action}: {' '.join(proc.args)}", flush=True)

    result = run_seed(spec, started, echo_output=True)
    print(f"[sweep] seed {spec.seed}: {result.status} {result.run_dir or ''} {result.error}",
          flush=True)
    if spec.result_file:  # JSON, so that the sweep never unpickles a file to read a result
        path = Path(spec.result_file)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(vars(result)))
        os.replace(tmp, path)
    return result


def _read_meta(run_dir) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError, TypeError):
        return None


# ----------------------------------------------------------------- output


class _Echo:
    """One line per seed as it starts and ends, from any worker thread."""

    def __init__(self, echo: Callable[[str], None], runs_dir: str):
        self.echo, self.runs_dir, self.lock = echo, Path(runs_dir), threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.echo(line)

    def where(self, run_dir) -> str:
        if not run_dir:
            return "-"
        p = Path(run_dir)
        return str(p.relative_to(self.runs_dir)) if p.is_relative_to(self.runs_dir) else str(p)

    def start(self, spec: SeedSpec, action: str, run_dir, extra: str = "") -> None:
        what = {"new": "new run", "resume": f"resume {self.where(run_dir)}"}.get(action, action)
        self(f"[sweep] seed {spec.seed:<3} start     {what}{extra}")

    def end(self, r: SeedResult) -> None:
        if r.status == "skipped":
            self(f"[sweep] seed {r.seed:<3} skipped   {self.where(r.run_dir)} (already complete)")
            return
        timing = f"{r.seconds:.1f} s" if r.seconds is not None else ""
        if r.run_seconds is not None:
            timing += f" (run {r.run_seconds:.1f} s)"
        line = f"[sweep] seed {r.seed:<3} {r.status:<9} {self.where(r.run_dir)}  {timing}".rstrip()
        if r.error and not r.ok:
            line += f"\n              {r.error}"
        self(line)


def summary(results: list[SeedResult], wall: float, workers: int | None) -> str:
    n = len(results)
    by = {s: sum(r.status == s for r in results) for s in {r.status for r in results}}
    done = by.get("complete", 0) + by.get("skipped", 0)
    text = f"{done}/{n} complete"
    extras = [f"{by[s]} {s}" for s in ("skipped", "submitted", "planned", "failed", "killed",
                                        "held", "interrupted") if by.get(s)]
    if extras:
        text += f" ({', '.join(extras)})"
    if workers:
        text += f"; sweep wall-clock {wall:.1f} s with {workers} worker{'s' * (workers != 1)}"
    else:
        text += f"; sweep wall-clock {wall:.1f} s"
    overheads = [r.overhead for r in results if r.overhead is not None]
    if overheads:
        text += (f"; launch overhead per seed {sum(overheads) / len(overheads):.1f} s "
                 f"(min {min(overheads):.1f}, max {max(overheads):.1f}: worker wall-clock "
                 f"minus the run's own)")
    return text


# ------------------------------------------------------------ launchers


def _run_local(specs: list[SeedSpec], jobs: int, out: _Echo, on_start=None) -> list[SeedResult]:
    live: dict[int, subprocess.Popen] = {}

    def started(spec, proc, action, run_dir):
        live[spec.seed] = proc
        out.start(spec, action, run_dir, f"  (pid {proc.pid}, {spec.threads or '?'} threads)")
        if on_start is not None:
            on_start(spec, proc, action, run_dir)

    def one(spec):
        try:
            return run_seed(spec, started)
        finally:
            live.pop(spec.seed, None)

    results: dict[int, SeedResult] = {}
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep")
    futures = {pool.submit(one, s): s for s in specs}
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                r = fut.result()
                results[r.seed] = r
                out.end(r)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop(list(live.values()), out)
        raise
    pool.shutdown()
    return [results[s.seed] for s in specs]


def _stop(procs: list[subprocess.Popen], out: _Echo) -> None:
    """After ^C: the workers (same process group) got SIGINT too and mark their runs
    interrupted; give them time, then insist."""
    out(f"[sweep] interrupted: stopping {len(procs)} worker(s); resume with the same command")
    deadline = time.time() + 2
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 5)):
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)
        deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class SlurmOptions:
    """Job options of ``--launcher slurm``: command line, or ``sweep.slurm.*`` in a gin file."""

    partition: str | None = None
    time_min: int = 60
    gpus: int = 0
    cpus: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int | None = None  # at most this many seeds running at once
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load, venv, ...)
    additional: dict = field(default_factory=dict)  # any other #SBATCH option

    def executor_parameters(self, name: str) -> dict:
        """Keyword arguments for submitit's ``AutoExecutor.update_parameters``."""
        params = {"name": name, "timeout_min": int(self.time_min), "gpus_per_node": int(self.gpus),
                  "nodes": 1, "tasks_per_node": 1}
        if self.cpus:
            params["cpus_per_task"] = int(self.cpus)
        if self.mem_gb:
            params["mem_gb"] = float(self.mem_gb)
        for key in ("partition", "account", "qos", "constraint", "array_parallelism"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        # workers import common.sweep, whatever directory the job starts in
        setup = [f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", *self.setup]
        params["slurm_setup"] = setup
        params["local_setup"] = setup
        if self.additional:
            params["slurm_additional_parameters"] = dict(self.additional)
        return params


_GIN_SLURM = None


def load_launcher_config(path) -> dict:
    """The ``sweep.slurm.*`` bindings of a gin file, as a dict of SlurmOptions fields."""
    import gin

    global _GIN_SLURM
    if _GIN_SLURM is None:
        def slurm(partition=None, time_min=None, gpus=None, cpus=None, mem_gb=None, account=None,
                  qos=None, constraint=None, array_parallelism=None, setup=None, additional=None):
            return {k: v for k, v in locals().items() if v is not None}

        _GIN_SLURM = gin.external_configurable(slurm, name="slurm", module="sweep")
    if not Path(path).is_file():
        raise SweepError(f"launcher config {path} does not exist")
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
        values = _GIN_SLURM()
    except Exception as exc:  # noqa: BLE001 (gin raises many types; all are the file's fault)
        raise SweepError(f"launcher config {path}: {str(exc).splitlines()[0]} "
                         f"(bindings look like: sweep.slurm.partition = \"gpu\")") from None
    finally:
        gin.clear_config()
    if "setup" in values:
        values["setup"] = tuple(values["setup"])
    return values


def _run_submitit(specs: list[SeedSpec], opts: SlurmOptions, executor: str, folder: Path,
                  out: _Echo, wait_for: bool, poll_s: float) -> list[SeedResult]:
    import submitit

    results: dict[int, SeedResult] = {}
    todo = []
    for spec in specs:  # no job (and no queue wait) for a seed that is already complete
        action, run_dir = plan(spec)
        if action == "skip":
            results[spec.seed] = SeedResult(spec.seed, "skipped", "skip", str(run_dir))
            out.end(results[spec.seed])
        else:
            todo.append(spec)
    if not todo:
        return [results[s.seed] for s in specs]
    todo = [replace(s, result_file=str(folder / f"seed-{s.seed}.json")) for s in todo]
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=executor)
    ex.update_parameters(**opts.executor_parameters(f"{specs[0].experiment}-sweep"))
    jobs = ex.map_array(run_job, todo)
    for spec, job in zip(todo, jobs):
        out.start(spec, "submitted", None, f" job {job.job_id}")
    out(f"[sweep] submitit folder {folder} (job logs: <job id>/<job id>_0_log.out, .err)")
    if not wait_for:
        for spec, job in zip(todo, jobs):
            results[spec.seed] = SeedResult(spec.seed, "submitted", "new", job_id=str(job.job_id))
        return [results[s.seed] for s in specs]
    pending = dict(zip(todo, jobs))
    try:
        while pending:
            for spec, job in list(pending.items()):
                if executor == "debug":
                    job.wait()  # runs it, in this process
                elif not job.done():
                    continue
                del pending[spec]
                r = _job_result(spec, job)
                results[spec.seed] = r
                out.end(r)
            if pending:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        out(f"[sweep] interrupted; {len(pending)} job(s) left running "
            f"(scancel {' '.join(str(j.job_id) for j in pending.values())} to stop them)")
        raise
    return [results[s.seed] for s in specs]


def _job_result(spec: SeedSpec, job) -> SeedResult:
    """The SeedResult a finished job wrote, or a failure saying how the job ended."""
    try:
        r = SeedResult(**json.loads(Path(spec.result_file).read_text()))
    except (OSError, ValueError, TypeError):  # the job died: time limit, node failure, ...
        try:
            state = job.state
            log = _last_line(job.stderr() or "")
        except Exception:  # noqa: BLE001 (the scheduler's answer is only a courtesy here)
            state, log = "unknown", ""
        _, run_dir = plan(spec)
        r = SeedResult(spec.seed, "failed", "new", str(run_dir) if run_dir else None,
                       error=f"job ended ({state}) without a result" + (f": {log}" if log else ""))
    r.job_id = str(job.job_id)
    return r


# ------------------------------------------------------------------ API


def sweep(name: str, seeds, profile: str | None = None, launcher: str = "local", jobs: int = 1,
          bindings=(), device: str = "auto", runs_dir=None, threads: int | None = None,
          deterministic: bool = False, data_dir: str | None = None,
          slurm: SlurmOptions | dict | None = None, executor: str = "slurm", wait: bool = True,
          resume: bool = True,
          dry_run: bool = False, echo: Callable[[str], None] = print,
          on_start: Callable | None = None, poll_s: float | None = None) -> list[SeedResult]:
    """Run experiment ``name`` once per seed; return one SeedResult per seed, in order.

    ``seeds``: a list of ints or a string such as "0-19".  ``launcher``: "local" (``jobs``
    worker processes here, ``threads`` each, default cores // jobs) or "slurm" (one submitit
    job per seed; ``slurm`` holds the job options, ``executor`` is "slurm", or "local"/"debug"
    to run the same path here; ``jobs`` caps the seeds running at once).  ``resume=False``
    starts a new run where a seed's earlier run is incomplete.  Bad input (name,
    profile, bindings, seeds) raises before anything starts."""
    import gin

    import registry
    from common import runs

    seeds = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
    if not seeds:
        raise SweepError("no seeds to run")
    if launcher not in LAUNCHERS:
        raise SweepError(f"unknown launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if executor not in EXECUTORS:
        raise SweepError(f"unknown submitit executor {executor!r}: "
                         f"use one of {', '.join(EXECUTORS)}")
    if device not in DEVICES:
        raise SweepError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    jobs = max(1, int(jobs or 1))
    exp = registry.get(name)
    profile = profile or exp.default_profile
    bindings = tuple(bindings)
    try:
        runs.parse_config(exp, profile, list(bindings))  # a bad profile or binding fails here
    finally:
        gin.clear_config()
    root = runs.runs_root(runs_dir).resolve()

    cores = os.cpu_count() or 1
    if launcher == "slurm":
        opts = slurm if isinstance(slurm, SlurmOptions) else SlurmOptions(**(slurm or {}))
        if opts.array_parallelism is None and jobs > 1:
            opts.array_parallelism = jobs
        threads = threads or opts.cpus or (max(1, cores // min(jobs, len(seeds)))
                                           if executor != "slurm" else None)
    else:
        threads = threads or max(1, cores // min(jobs, len(seeds)))
    specs = [SeedSpec(name, profile, s, str(root), bindings, device, deterministic, data_dir,
                      threads, resume) for s in seeds]
    out = _Echo(echo, str(root))
    where = (f"{jobs} local worker(s), {threads} thread(s) each" if launcher == "local"
             else f"submitit {executor} executor")
    out(f"[sweep] {name} [{profile}] seeds {_seeds_str(seeds)} -> {root / name} ({where})")

    if dry_run:
        results = []
        for spec in specs:
            action, run_dir = plan(spec)
            detail = (f"{out.where(run_dir)} is complete" if action == "skip"
                      else " ".join(command(spec, action, run_dir)[1:]))
            out(f"[sweep] seed {spec.seed:<3} {action:<9} {detail}")
            results.append(SeedResult(spec.seed, "skipped" if action == "skip" else "planned",
                                      action, str(run_dir) if run_dir else None))
        return results

    started = time.time()
    if launcher == "local":
        results = _run_local(specs, jobs, out, on_start)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = root / ".submitit" / name / stamp
        if poll_s is None:
            poll_s = 30.0 if executor == "slurm" else 0.5
        results = _run_submitit(specs, opts, executor, folder, out, wait, poll_s)
    wall = time.time() - started
    workers = jobs if launcher == "local" else None
    out(f"[sweep] {name} [{profile}]: " + summary(results, wall, workers))
    if any(r.ok and r.status in ("complete", "skipped") for r in results):
        out(f"[sweep] next: python -m registry compare {name} --profile {profile}")
    return results


def _seeds_str(seeds: list[int]) -> str:
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


# ------------------------------------------------------------------ CLI


def add_sweep_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to a CLI's subparsers (it sets ``fn=cmd_sweep``);
    ``parents``: parsers whose options every command takes (--runs-dir, ...)."""
    from registry import PROFILES

    p = subparsers.add_parser(
        "sweep", help="run an experiment once per seed, here or on Slurm (resumable)",
        description="Run EXP once per seed. Every seed is an ordinary run folder (what `report` "
                    "aggregates); seeds already complete are skipped and interrupted ones resumed, "
                    "so rerunning the same command finishes a sweep.",
        parents=list(parents))
    p.add_argument("name", help="the experiment (see `python -m registry list`)")
    p.add_argument("--seeds", required=True, type=_seeds_arg, metavar="SEEDS",
                   help="seeds to run: 0-19, 0,3,5 or 0-2,7")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="budget of every run (default: the experiment's default profile)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: worker processes on this machine; "
                        "slurm: one job per seed via submitit")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local: worker processes at once (default 1); "
                        "slurm: most jobs running at once")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="CPU threads per worker (default: cores // jobs locally, --cpus on Slurm)")
    p.add_argument("--gin", action="append", default=[], metavar="BINDING",
                   help="override a parameter in every run, e.g. --gin 'gce.train.epochs = 3' "
                        "(repeatable; part of what identifies a seed's run when resuming)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="device of every run")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms in every new run")
    p.add_argument("--data-dir", default=None,
                   help="offline dataset root (default: $REPRO_DATA, then ~/.cache/repro-hub/data)")
    p.add_argument("--no-resume", action="store_true",
                   help="start a new run for a seed whose earlier run is incomplete, instead of "
                        "resuming it (complete seeds are still skipped)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what each seed would do (skip, resume, new) and launch nothing")
    s = p.add_argument_group("slurm (--launcher slurm)")
    s.add_argument("--partition", default=None, help="Slurm partition")
    s.add_argument("--time-min", type=int, default=None, metavar="MIN",
                   help="time limit per job in minutes (default 60)")
    s.add_argument("--gpus", type=int, default=None, metavar="G", help="GPUs per job (default 0)")
    s.add_argument("--cpus", type=int, default=None, metavar="C",
                   help="CPUs per job (also each run's thread budget)")
    s.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="memory per job")
    s.add_argument("--account", default=None, help="Slurm account to charge")
    s.add_argument("--launcher-config", default=None, metavar="FILE",
                   help="gin file of job options, e.g. sweep.slurm.partition = \"gpu\"; "
                        "sweep.slurm.setup = [\"module load cuda\"] (command-line options win)")
    s.add_argument("--executor", choices=EXECUTORS, default="slurm",
                   help="submitit executor: slurm, or local/debug to try the Slurm path here")
    s.add_argument("--no-wait", action="store_true",
                   help="submit and return; rerun the same sweep (or `report`) once the jobs end")
    p.set_defaults(fn=cmd_sweep)
    return p


def slurm_options(args) -> SlurmOptions:
    """Job options: the defaults, then --launcher-config, then the command line."""
    values = load_launcher_config(args.launcher_config) if args.launcher_config else {}
    for key in ("partition", "time_min", "gpus", "cpus", "mem_gb", "account"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return SlurmOptions(**values)


def cmd_sweep(args) -> int:
    """The ``sweep`` command: 0 if every seed is complete (or submitted), 1 otherwise."""
    from registry import ReproError

    try:
        opts = slurm_options(args) if args.launcher == "slurm" else None
        results = sweep(args.name, args.seeds, profile=args.profile, launcher=args.launcher,
                        jobs=args.jobs, bindings=args.gin, device=args.device,
                        runs_dir=getattr(args, "runs_dir", None), threads=args.threads,
                        deterministic=args.deterministic, data_dir=args.data_dir, slurm=opts,
                        executor=args.executor, wait=not args.no_wait, dry_run=args.dry_run,
                        resume=not args.no_resume,
                        echo=lambda line: print(line, flush=True))
    except SweepError as exc:
        raise ReproError(str(exc)) from None
    return 0 if all(r.ok for r in results) else 1
