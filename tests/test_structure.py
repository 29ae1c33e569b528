"""The layout's rule that no paper imports another paper (shared pieces live in common/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
