"""The registry is a pure module: no import cycle with common/."""

from __future__ import annotations

import ast
import subprocess
import sys

import registry

ROOT = registry.ROOT


def test_registry_imports_nothing_of_common():
    tree = ast.parse((ROOT / "registry" / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + \
        [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] in ("common", "papers")], names


def test_common_runs_imports_alone_without_the_cli():
    code = ("import sys, common.runs, common.report, common.claims; "
            "assert 'registry.cli' not in sys.modules, 'common imports the CLI'; "
            "assert not [m for m in sys.modules if m.startswith('papers.')], 'papers imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_each_experiment_has_its_own_profile_files():
    """Siblings never share a profile file, so editing one's budget never changes
    another's config text (which would block its --resume)."""
    seen: dict = {}
    for name in registry.names():
        for profile in registry.get(name).profiles:
            path = registry.get(name).profile_path(profile)
            assert path not in seen, f"{name} and {seen.get(path)} share {path}"
            seen[path] = name
