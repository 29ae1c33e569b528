"""The layout's rules: no paper imports another paper (shared pieces live in common/), the
registry is a pure module with no import cycle with common/, and no two experiments share
a profile file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import registry

PAPERS = Path(__file__).resolve().parents[1] / "papers"
FILES = sorted(p for p in PAPERS.glob("*/**/*.py"))


def imported_papers(path: Path) -> set[str]:
    """The papers (``papers.<name>``) a file imports, however it spells the import."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "papers":  # from papers import madry
                modules = [f"papers.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..madry import x
            modules = [f"papers.{(node.module or '').split('.')[0]}"] if node.module else \
                [f"papers.{alias.name}" for alias in node.names]
        else:
            continue
        for m in modules:
            parts = m.split(".")
            if parts[0] == "papers" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_there_are_paper_files():
    assert len(FILES) > 20


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PAPERS)) for p in FILES])
def test_no_paper_imports_another_paper(path):
    own = path.relative_to(PAPERS).parts[0]
    others = imported_papers(path) - {own}
    assert not others, (f"papers/{path.relative_to(PAPERS)} imports papers.{sorted(others)}: "
                        f"move what they share to common/")


def test_the_check_sees_cross_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import papers.madry.experiment\nfrom papers import abs\nfrom papers.gce.method import q\n"
                 "def f():\n    from papers.pwcca import method\n")
    assert imported_papers(f) == {"madry", "abs", "gce", "pwcca"}


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
