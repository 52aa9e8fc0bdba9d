"""The architecture of s2sr, read from the source (``ast``, nothing imported but core):

1. every module lives in a room of :data:`LAYERS`, and imports only the rooms its room may
   (the one-way rule ``core <- io <- models <- inference <- batch/training/evaluation <- cli``,
   with ``data`` beside io/models, ``losses`` over models, ``review`` over data), counting
   imports at module level, inside functions and under ``TYPE_CHECKING`` alike;
2. the graph of every import (the same three kinds, ``s2sr/__init__``'s lazy
   ``__getattr__`` included) has no cycle;
3. nobody imports a private name (``_x``) of another room: not the library, not the
   benchmarks, not the docs scripts, not the tests (a name another room needs is public in
   its one home);
4. ``s2sr.core`` imports no torch and nothing of s2sr outside core (checked by importing it);
5. no module but a package's ``__init__`` lists in ``__all__`` a name it imports from another
   module ("importable from here as before"): each name is imported from its one home.

Each check first runs on a small package with known faults, so that it can fail.
docs/architecture.md states the same map of rooms.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "s2sr"

#: Room -> the rooms its modules may import (besides their own). ``top`` is the package's
#: ``__init__`` (its lazy ``__getattr__`` reaches inference and batch) and ``__main__``.
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "io": frozenset({"core"}),
    "models": frozenset({"core", "io"}),
    "data": frozenset({"core", "io", "models"}),
    "losses": frozenset({"core", "models"}),
    "review": frozenset({"core", "io", "data"}),
    "inference": frozenset({"core", "io", "models", "data", "losses"}),
    "batch": frozenset({"core", "io", "models", "data", "losses", "inference"}),
    "training": frozenset({"core", "io", "models", "data", "losses", "inference"}),
    "evaluation": frozenset({"core", "io", "models", "data", "losses", "inference"}),
    "cli": frozenset({"core", "io", "models", "data", "losses", "review", "inference",
                      "batch", "training", "evaluation"}),
    "top": frozenset({"core", "io", "models", "data", "losses", "review", "inference",
                      "batch", "training", "evaluation", "cli"}),
}

#: Third-party packages core may not import (core is torch-free).
TORCH_FAMILY = ("torch", "torchvision", "lightning", "pytorch_lightning", "onnx",
                "onnxruntime")


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package."""

    module: str  # the importing module
    target: str  # the package module it loads
    line: int
    where: str  # "module", "function" or "TYPE_CHECKING"
    names: tuple[str, ...]  # the names a ``from ... import`` takes

    def __str__(self) -> str:
        return f"{self.module}:{self.line} ({self.where}) -> {self.target}"


def modules_of(src: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every module of ``package`` under ``src``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """Every import statement of ``tree`` with where it runs."""
    found: list[tuple[ast.stmt, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, where))
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "function"
            elif _is_type_checking(child) and where == "module":
                inner = "TYPE_CHECKING"
            visit(child, inner)

    visit(tree, "module")
    return found


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> str:
    base = node.module or ""
    if node.level:
        pkg = here if is_pkg else here.rpartition(".")[0]
        parts = pkg.split(".")
        anchor = parts[:len(parts) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return base


def imports_of(src: Path, package: str) -> list[Import]:
    """Every import of a package module by a package module (any level)."""
    modules = modules_of(src, package)
    out: list[Import] = []
    for here, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, where in _statements(tree):
            if isinstance(node, ast.Import):
                pairs = [(a.name, ()) for a in node.names]
            else:
                base = _resolve(node, here, path.name == "__init__.py")
                # ``from pkg import sub`` loads the submodule; ``from pkg import name`` pkg
                pairs = [(f"{base}.{a.name}", ()) if f"{base}.{a.name}" in modules
                         else (base, (a.name,)) for a in node.names]
            for target, names in pairs:
                if target in modules and target != here:
                    out.append(Import(here, target, node.lineno, where, names))
    return out


def room_of(module: str) -> str:
    """The room of a module: ``s2sr.io.scene`` -> ``io``; the package itself and its
    ``__main__`` -> ``top``; a module directly under the package -> its own name (no room)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "top"
    return parts[1]


def direction_violations(src: Path, package: str,
                         layers: dict[str, frozenset[str]]) -> list[str]:
    """Imports that go against ``layers``, and modules outside every room."""
    bad = sorted({f"{m} is in no room: move it into one of {sorted(layers)}"
                  for m in modules_of(src, package) if room_of(m) not in layers})
    for imp in imports_of(src, package):
        a, b = room_of(imp.module), room_of(imp.target)
        if a != b and a in layers and b in layers and b not in layers[a]:
            bad.append(f"{imp}: {a} may not import {b}")
    return sorted(set(bad), key=bad.index)


def cycles(src: Path, package: str) -> list[list[str]]:
    """The strongly connected components (size > 1) of the full import graph."""
    graph: dict[str, set[str]] = {m: set() for m in modules_of(src, package)}
    for imp in imports_of(src, package):
        graph[imp.module].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reach_ins(files: dict[str, Path], package: str) -> list[str]:
    """``from x import _name`` and ``module._name`` where x is a package module of another
    room than the importer (every file of ``files`` outside ``package`` is another room).

    Args:
        files: display name (a module name, or a path) -> file.
        package: the package whose private names are guarded.
    """
    bad = []
    for name, path in files.items():
        here = room_of(name) if name.split(".")[0] == package else f"file {name}"
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node, _ in _statements(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                if base.split(".")[0] != package:
                    continue
                for a in node.names:
                    if _private(a.name) and room_of(base) != here:
                        bad.append(f"{name}:{node.lineno} imports {base}.{a.name}")
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
            else:
                for a in node.names:
                    if a.name.split(".")[0] == package:
                        aliases[a.asname or a.name.split(".")[0]] = (
                            a.name if a.asname else package)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and room_of(aliases[node.value.id]) != here):
                bad.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return sorted(set(bad))


def outside_files(*folders: Path) -> dict[str, Path]:
    """Display path -> file for every Python file under ``folders``."""
    return {str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p): p
            for folder in folders for p in sorted(folder.rglob("*.py"))}


def re_exports(src: Path, package: str) -> list[str]:
    """Names a module (not a package ``__init__``) imports from the package and lists in
    its ``__all__``."""
    bad = []
    for name, path in modules_of(src, package).items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        imported: dict[str, str] = {}
        public: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, False)
                if base.split(".")[0] == package:
                    imported.update({a.asname or a.name: base for a in node.names})
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                public = list(ast.literal_eval(node.value))
        bad += [f"{name} re-exports {imported[n]}.{n}" for n in public if n in imported]
    return bad


# -- the checks on a package with known faults ------------------------------------------

@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    """Package ``fp``: ``fp.low`` imports ``fp.high`` inside a function (against the rule
    and a cycle with ``fp.high``'s top-level import), ``fp.high`` reaches a private name
    of ``fp.low``, ``fp.stray`` is in no room, ``fp.core`` imports torch lazily."""
    files = {
        "__init__.py": "def __getattr__(name):\n    from fp import high\n"
                       "    return getattr(high, name)\n",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from fp.high.b import g\n    return g\n_hidden = 1\n",
        "high/__init__.py": "",
        "high/b.py": "from fp.low.a import _hidden\nimport fp.low.a as la\n"
                     "def g():\n    return la._hidden\n",
        "high/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from fp.low import a\nfrom fp import high\n",
        "stray.py": "X = 1\n",
        "high/d.py": "from fp.low.a import f\n__all__ = ['f', 'g']\ndef g():\n    return f\n",
        "core/__init__.py": "",
        "core/k.py": "def f():\n    import torch\n    return torch\n",
    }
    for rel, text in files.items():
        (tmp_path / "fp" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fp" / rel).write_text(textwrap.dedent(text))
    return tmp_path


FAULTY_LAYERS = {"core": frozenset(), "low": frozenset({"core"}),
                 "high": frozenset({"core", "low"}), "top": frozenset({"high", "low"})}


def test_checks_find_known_faults(faulty: Path) -> None:
    wheres = {(i.module, i.target, i.where) for i in imports_of(faulty, "fp")}
    assert ("fp.low.a", "fp.high.b", "function") in wheres
    assert ("fp.high.c", "fp.low.a", "TYPE_CHECKING") in wheres
    assert ("fp", "fp.high", "function") in wheres
    bad = direction_violations(faulty, "fp", FAULTY_LAYERS)
    assert any("fp.low.a:2 (function) -> fp.high.b: low may not import high" in b
               for b in bad), bad
    assert any(b.startswith("fp.stray is in no room") for b in bad), bad
    assert len(bad) == 2, bad
    assert ["fp.high.b", "fp.low.a"] in cycles(faulty, "fp")
    private = private_reach_ins(modules_of(faulty, "fp"), "fp")
    assert private == ["fp.high.b:1 imports fp.low.a._hidden",
                       "fp.high.b:4 uses fp.low.a._hidden"]
    assert _core_imports(faulty, "fp") == ["fp.core.k:2 imports torch"]
    assert re_exports(faulty, "fp") == ["fp.high.d re-exports fp.low.a.f"]


# -- the checks on s2sr ------------------------------------------------------------------

def test_imports_follow_the_layers() -> None:
    found = imports_of(SRC, PACKAGE)
    assert len(found) > 300  # the graph is the real one
    bad = direction_violations(SRC, PACKAGE, LAYERS)
    assert not bad, "\n".join(["imports against the one-way rule (docs/architecture.md):",
                               *bad])


def test_no_import_cycle_at_any_level() -> None:
    found = cycles(SRC, PACKAGE)
    assert not found, "import cycles (module, function and TYPE_CHECKING imports):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_no_private_name_crosses_a_room() -> None:
    files = {**modules_of(SRC, PACKAGE), **outside_files(ROOT / "benchmarks", ROOT / "docs")}
    bad = private_reach_ins(files, PACKAGE)
    assert not bad, "private names used outside their room (make them public in their " \
        "one home):\n" + "\n".join(bad)


def test_tests_use_public_names_only() -> None:
    bad = private_reach_ins(outside_files(ROOT / "tests"), PACKAGE)
    assert not bad, "tests using private names of s2sr:\n" + "\n".join(bad)


def _core_imports(src: Path, package: str) -> list[str]:
    """Torch-family imports in ``package.core`` (any level)."""
    bad = []
    for name, path in modules_of(src, package).items():
        if room_of(name) != "core":
            continue
        for node, _ in _statements(ast.parse(path.read_text())):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if not node.level else [])
            bad += [f"{name}:{node.lineno} imports {t}" for t in targets
                    if t.split(".")[0] in TORCH_FAMILY]
    return bad


def test_core_is_torch_free() -> None:
    assert not _core_imports(SRC, PACKAGE)
    core = sorted(m for m in modules_of(SRC, PACKAGE) if room_of(m) == "core")
    code = ("import importlib, sys\n"
            f"for m in {core!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_FAMILY!r}"
            " or (m.startswith('s2sr.') and not m.startswith('s2sr.core'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(core) >= 4 and proc.stdout.strip() == "[]", proc.stdout


def test_names_are_imported_from_their_one_home() -> None:
    bad = re_exports(SRC, PACKAGE)
    assert not bad, "names re-exported outside a package __init__ (import them from their " \
        "home instead, and drop them from __all__):\n" + "\n".join(bad)


def documented_layers(text: str) -> dict[str, frozenset[str]]:
    """The "may import" table of docs/architecture.md as :data:`LAYERS`' rooms: backquoted
    rooms in the second column, "every room it may import" adds the rooms the first
    column's ones may, a row saying only "every room" allows all rooms but ``top``."""
    rows = [line.split("|")[1:3] for line in text.splitlines()
            if line.startswith("| `") and line.count("|") >= 3]
    rooms = set(LAYERS) - {"top"}
    found: dict[str, frozenset[str]] = {}
    for left, right in rows:
        names = re.findall(r"`(\w+)`", left)
        allowed = set(re.findall(r"`(\w+)`", right)) & rooms
        if "every room it may import" in right:
            allowed |= {r for a in list(allowed) for r in found.get(a, ())}
        elif "every room" in right:
            allowed = rooms
        found.update({n: frozenset(allowed - {n}) for n in names})
    return found


def test_docs_state_the_same_layers() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    text = text[text.index("may import (besides itself)"):]
    documented = documented_layers(text)
    assert set(documented) == set(LAYERS) - {"top"}, sorted(documented)
    differ = {room: (sorted(documented[room]), sorted(LAYERS[room])) for room in documented
              if documented[room] != LAYERS[room]}
    assert not differ, f"docs/architecture.md and LAYERS disagree (docs, test): {differ}"
