"""The tree's contracts, read from the source: bundle file names have one owner, packages talk through their
public APIs only, and dependencies point down the pipeline (twin_kit -> spatial -> scenes -> sim -> policies)."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["twin_kit", "spatial", "scenes", "sim", "policies", "twin_cli"]  # each may import only those before it
PACKAGES = set(LAYERS)
OWNER = REPO / "spatial" / "bundle.py"
# A string that is a path ending in a bundle file name (prose that mentions one has spaces and is allowed).
BUNDLE_NAME = re.compile(r"^[\w./{}-]*(scene\.json|cameras\.json|points\.ply|splats\.ply|collision\.\w+|"
                         r"transforms\.json|scene\.usda|scene\.usdz|colmap/sparse)$")


def _sources(*tops: str) -> list[Path]:
    out = []
    for top in tops:
        out += sorted(p for p in (REPO / top).rglob("*.py") if "isaac" not in p.parts)
    return out


CODE = _sources(*LAYERS, "benches", "examples")


def _imports(tree: ast.AST):
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            yield n, n.module, [a.name for a in n.names]
        elif isinstance(n, ast.Import):
            for a in n.names:
                yield n, a.name, []


def test_no_bundle_file_name_outside_the_bundle_module():
    bad = []
    for p in CODE:
        if p == OWNER:
            continue
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and BUNDLE_NAME.match(n.value.strip()):
                bad.append(f"{p.relative_to(REPO)}:{n.lineno}: {n.value!r}")
    assert not bad, "bundle file names spelled outside spatial/bundle.py:\n" + "\n".join(bad)


def test_packages_import_each_other_only_through_their_public_api():
    bad = []
    for p in CODE:
        top = p.relative_to(REPO).parts[0]
        for n, mod, names in _imports(ast.parse(p.read_text())):
            pkg = mod.split(".")[0]
            if pkg not in PACKAGES or pkg == top:
                continue
            where = f"{p.relative_to(REPO)}:{n.lineno}"
            if mod != pkg or isinstance(n, ast.Import):
                bad.append(f"{where}: imports {mod} (use `from {pkg} import ...`)")
                continue
            api = set(importlib.import_module(pkg).__all__)
            bad += [f"{where}: {pkg}.{name} is not in {pkg}'s public API" for name in names if name not in api]
    assert not bad, "\n".join(bad)


def test_no_private_module_imported_across_packages():
    bad = []
    for p in CODE + _sources("tests"):
        rel = p.relative_to(REPO)
        top = rel.parts[0]
        for n, mod, names in _imports(ast.parse(p.read_text())):
            parts = mod.split(".")
            if parts[0] not in PACKAGES or (parts[0] == top and top != "tests"):
                continue
            if top == "tests" and rel.parts[1] == parts[0]:
                continue  # a package's own tests may pin its private helpers
            private = [x for x in parts[1:] + names if x.startswith("_") and not x.startswith("__")]
            if private:
                bad.append(f"{rel}:{n.lineno}: {mod} {names}")
    assert not bad, "private modules imported across packages:\n" + "\n".join(bad)


def test_dependencies_point_down_the_pipeline():
    bad = []
    for p in _sources(*LAYERS):
        top = p.relative_to(REPO).parts[0]
        for n, mod, _ in _imports(ast.parse(p.read_text())):
            pkg = mod.split(".")[0]
            if pkg in PACKAGES and LAYERS.index(pkg) > LAYERS.index(top):
                bad.append(f"{p.relative_to(REPO)}:{n.lineno}: {top} imports {pkg} (a later stage)")
        for n in ast.walk(ast.parse(p.read_text())):  # importlib strings count too
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"[a-z_]+(\.\w+)+", n.value):
                pkg = n.value.split(".")[0]
                if pkg in PACKAGES and LAYERS.index(pkg) > LAYERS.index(top):
                    bad.append(f"{p.relative_to(REPO)}:{n.lineno}: {top} names {n.value!r} (a later stage)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("pkg", LAYERS[:-2])
def test_every_public_name_resolves(pkg):
    m = importlib.import_module(pkg)
    missing = [name for name in m.__all__ if not hasattr(m, name)]
    assert not missing, f"{pkg} lists names it cannot load: {missing}"


def test_ruff_is_clean():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
