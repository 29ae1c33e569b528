"""Run records, in one import for tools and tests: every run leaves a
self-describing folder (see ``common.execute`` for what ``run.json`` holds).

The machinery lives in four modules, each with one job:

- ``common.atomic``: atomic writes and weights-only loads;
- ``common.records``: run folders as later commands see them, and provenance
  groups for reports;
- ``common.context``: ``RunContext`` and ``Resumable``, what a paper imports;
- ``common.execute``: configuring, locking and executing a run.
"""

from common.atomic import atomic_path, torch_load, torch_save, write_json, write_text
from common.context import Resumable, RunContext, derived_seed
from common.execute import RunInterrupted, execute, parse_config, run_lock
from common.records import (RunRecord, Section, archived_runs, find_run, fmt_seconds,
                            list_runs, profile_doc, reports_root, runs_root,
                            sections)

__all__ = ["atomic_path", "torch_load", "torch_save", "write_json", "write_text", "Resumable",
           "RunContext", "derived_seed", "RunInterrupted", "execute", "parse_config",
           "run_lock", "RunRecord", "Section", "archived_runs", "find_run", "fmt_seconds",
           "list_runs", "profile_doc", "reports_root", "runs_root", "sections"]
