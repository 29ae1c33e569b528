"""Atomic file writes: a temporary file beside the target, fsync, rename.

An interrupted write never leaves a truncated file that a later report would
trust.  Files are created with the user's umask (like ``open``), not 0600.
Checkpoints hold only tensors and plain Python values and load with
``torch.load(..., weights_only=True)``.

Torch is imported only by the functions that need it, so that the commands
which only read JSON and TOML (``list``, ``show``, ``compare``) start without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from registry import ReproError


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:  # O_EXCL: never clobber; mode 0o666 & ~umask, as open() would give
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """Write ``obj`` as JSON atomically: indented for people (run.json, metrics.json),
    or ``compact`` for machine-read results (arrays of maps, curves), which
    indentation would inflate several times."""
    text = json.dumps(obj, default=_json_default, **(
        {"separators": (",", ":")} if compact else {"indent": 2}))
    write_text(path, text + "\n")


def _json_default(x):
    if hasattr(x, "tolist"):  # tensors, numpy arrays and scalars
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def own_storage(obj: Any) -> Any:
    """A copy whose tensors own their storage (a saved slice does not drag its base)."""
    torch = sys.modules.get("torch")  # without torch loaded there is no tensor to copy
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: own_storage(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(own_storage(v) for v in obj)
    return obj


def torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: Path) -> Any:
    """The one way this project reads a .pt file: weights-only (no pickled code runs)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReproError(f"{path} is corrupt, unreadable or not weights-only "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); delete it "
                         f"to restart that part from scratch, or start a new run") from exc
