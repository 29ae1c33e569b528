"""The manifests that let `list`, `show` and `compare` start without importing the
plugins (and torch): each one equals what its plugin registers, a stale one is
never trusted, and the read-only commands really do not load torch."""

import dataclasses
import json
import subprocess
import sys

import pytest

import registry
from registry import ROOT


@pytest.mark.parametrize("package", registry._packages())
def test_manifest_matches_what_the_plugin_registers(package):
    path = registry._package_dir(package) / registry.MANIFEST
    assert path.exists(), f"{path} is missing: run `python -m registry manifest`"
    committed = json.loads(path.read_text())
    assert committed == registry.manifest_for(package), (
        f"{path} is stale: run `python -m registry manifest` and commit it")


def test_described_experiments_equal_the_registered_ones():
    described = {e.name: e for p in registry._packages() for e in registry._from_manifest(p) or ()}
    assert sorted(described) == sorted(registry.discover())
    for name, desc in described.items():
        loaded = registry.get(name)
        assert dataclasses.replace(loaded, run=None, figures=()) == desc
        assert desc.profiles == loaded.profiles and desc.claims_path == loaded.claims_path


def test_a_stale_or_broken_manifest_is_not_trusted(tmp_path, monkeypatch):
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    entry = {"name": "toy_exp", "paper": {"title": "T", "authors": "A", "venue": "V",
                                          "arxiv": "", "code": ""},
             "module": "papers.toy", "function": "run", "folder": ".", "gin_module": "toy",
             "figures": [], "default_profile": "cpu", "description": "d",
             "claims_file": "claims.toml", "data": []}
    (pkg / registry.MANIFEST).write_text(json.dumps(
        {"sources": registry.sources_digest(pkg), "experiments": [entry]}))
    monkeypatch.setattr(registry, "_package_dir", lambda package: tmp_path / package)
    fresh = registry._from_manifest("toy")
    assert [e.name for e in fresh] == ["toy_exp"] and fresh[0].run is None
    assert fresh[0].folder == pkg.resolve()

    (pkg / "__init__.py").write_text("X = 2\n")  # the code changed after the manifest
    assert registry._from_manifest("toy") is None
    (pkg / "sub").mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    assert registry._from_manifest("toy") is not None  # back to the digested bytes
    (pkg / "sub" / "new.py").write_text("")  # a new module also invalidates it
    assert registry._from_manifest("toy") is None
    (pkg / "sub" / "new.py").unlink()
    (pkg / registry.MANIFEST).write_text("{not json")
    assert registry._from_manifest("toy") is None


def test_read_only_commands_start_without_torch():
    name = registry.names()[0]
    script = (
        "import sys, contextlib, io\n"
        "from registry.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        f"    codes = [main(['list']), main(['show', {name!r}]), main(['compare', {name!r}])]\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'gin', 'matplotlib', 'pandas') if m in sys.modules]\n"
        "print(codes, heavy, 'note:' in out.getvalue())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 0, 0] [] False", done.stdout + done.stderr
