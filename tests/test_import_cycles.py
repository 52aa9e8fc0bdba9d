"""Every s2sr module imports on its own, and the module-level import graph has no cycle.

Import cycles used to be hidden in function bodies (a local ``from s2sr... import`` that
runs late enough to find its module initialised). These tests keep them out:

1. each module is imported first, in a process where no s2sr module was loaded yet: a
   cycle that breaks depending on which module comes first fails here;
2. the graph of module-level imports (``ast``, no import executed) has no cycle at all,
   even one that happens to import in every order;
3. imports inside functions are allowed only where listed below with their reason (heavy
   optional modules: the command line must start without torch).

The checks run on a small package with a known cycle first, so that they can fail.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "s2sr"

#: Imports inside functions of library modules that are there on purpose: (module,
#: imported module) -> why. The command line (``s2sr.cli.*``) imports every library module
#: inside its commands: see test_command_line_starts_without_heavy_modules.
ALLOWED_LOCAL = {
    ("s2sr", "s2sr.inference"): "``import s2sr`` must not import torch (lazy predict)",
    ("s2sr", "s2sr.batch"): "``import s2sr`` must not import torch (lazy predict_many)",
    ("s2sr.training.trainer", "s2sr.training.curves"): "matplotlib only when a run ends",
    # no cycle needs these two; their module's owner moves them to the top
}

# Runs in a fresh interpreter: preloads the third-party modules the package imports (so
# that each module costs a fork, not a torch import), then imports each module of the
# package in a forked child in which no module of the package was loaded yet.
_IMPORT_EACH = r"""
import ast, importlib, json, os, sys, traceback
from pathlib import Path

src, package = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, str(src))
files = sorted((src / package).rglob("*.py"))
modules, external = [], set()
for path in files:
    parts = list(path.relative_to(src).with_suffix("").parts)
    modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            external.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            external.add(node.module)
for name in sorted(external):
    if name.split(".")[0] != package:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # optional dependency: the module that needs it reports it below
loaded = [m for m in sys.modules if m.split(".")[0] == package]
assert not loaded, loaded
failures = {}
for module in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            importlib.import_module(module)
        except BaseException:
            os.write(write, traceback.format_exc()[-3000:].encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        out = handle.read().decode()
    _, status = os.waitpid(pid, 0)
    if status:
        failures[module] = out or f"exit status {status}"
print(json.dumps({"modules": modules, "failures": failures}))
"""


def import_each(src: Path, package: str) -> tuple[list[str], dict[str, str]]:
    """Import every module of ``package`` under ``src`` first; (modules, failures)."""
    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH, str(src), package],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["modules"], result["failures"]


def _modules(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _targets(node: ast.AST, here: str, modules: dict[str, tuple[Path, bool]],
             package: str) -> list[str]:
    """The package's modules an import statement loads (its explicit targets)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            pkg = here if modules[here][1] else here.rpartition(".")[0]
            anchor = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        # ``from pkg import sub`` loads the submodule; ``from pkg import name`` the package
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
        return []
    return [n for n in names if n.split(".")[0] == package and n in modules and n != here]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def module_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports while it is being imported.

    Only statements that run at import time count: the module's top level, including
    ``try``/``if`` blocks, but not ``if TYPE_CHECKING:`` nor function bodies. The implicit
    step from a submodule to its parent package is left out: Python initialises the
    parent first, and a submodule that needs one of the parent's names imports it
    explicitly, which is an edge. (Counting it would make a cycle of every package whose
    ``__init__`` re-exports its submodules, which is the ordinary layout.)
    """
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def visit(stmts: list[ast.stmt], here: str) -> None:
        for node in stmts:
            if _is_type_checking(node) or isinstance(
                    node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if isinstance(node, ast.ClassDef):  # a class body runs at import
                    visit(node.body, here)
                continue
            graph[here].update(_targets(node, here, modules, package))
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [], here)

    for name, (path, _) in modules.items():
        visit(ast.parse(path.read_text()).body, name)
    return graph


def function_imports(src: Path, package: str) -> set[tuple[str, str]]:
    """(module, imported module) of every package import inside a function body."""
    modules = _modules(src, package)
    found: set[tuple[str, str]] = set()
    for name, (path, _) in modules.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    found.update((name, t) for t in _targets(node, name, modules, package))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


@pytest.fixture
def cyclic(tmp_path: Path) -> Path:
    """A package ``cyc`` whose ``a`` and ``b`` import each other at the top (``a`` first
    fails), plus imports that must not count: in a function, under TYPE_CHECKING."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from cyc.b import B\nA = 1\n",
        "b.py": "from cyc.a import A\nB = 2\n",
        "c.py": "def f():\n    from cyc import d\n    return d\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyc import c\n"
                "from . import e\n",
        "e.py": "X = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_checks_find_a_known_cycle(cyclic: Path) -> None:
    graph = module_graph(cyclic, "cyc")
    assert graph["cyc.c"] == set() and graph["cyc.d"] == {"cyc.e"}
    assert find_cycle(graph) in (["cyc.a", "cyc.b", "cyc.a"], ["cyc.b", "cyc.a", "cyc.b"])
    assert function_imports(cyclic, "cyc") == {("cyc.c", "cyc.d")}
    modules, failures = import_each(cyclic, "cyc")
    assert set(modules) == {"cyc", "cyc.a", "cyc.b", "cyc.c", "cyc.d", "cyc.e"}
    assert set(failures) == {"cyc.a", "cyc.b"}
    assert "ImportError" in failures["cyc.a"] and "partially initialized" in failures["cyc.a"]


@pytest.mark.slow  # one interpreter per module; test_architecture checks cycles statically
def test_every_module_imports_first() -> None:
    modules, failures = import_each(SRC, PACKAGE)
    assert len(modules) > 60 and "s2sr.data.store" in modules
    assert not failures, "\n\n".join(f"{m}:\n{tb}" for m, tb in failures.items())


def test_module_level_imports_have_no_cycle() -> None:
    graph = module_graph(SRC, PACKAGE)
    assert "s2sr.data.manifest" in graph["s2sr.data.store"]  # the graph is the real one
    cycle = find_cycle(graph)
    assert cycle is None, ("import cycle " + " -> ".join(cycle or []) + ": move what both "
                           "need into a third module instead of importing inside a function")


def test_imports_inside_functions_are_only_the_listed_ones() -> None:
    found = {(m, t) for m, t in function_imports(SRC, PACKAGE)
             if not m.startswith("s2sr.cli.")}
    unlisted = sorted(found - set(ALLOWED_LOCAL))
    assert not unlisted, (f"imports inside functions: {unlisted}; move them to the top of "
                          "the module (break a cycle by moving code), or list them in "
                          "ALLOWED_LOCAL with the heavy module they defer")


def test_command_line_starts_without_heavy_modules() -> None:
    """Why the command line imports the library inside its commands: ``s2sr --help``."""
    heavy = ["torch", "numpy", "rasterio", "matplotlib", "lightning", "scipy"]
    code = ("import sys, s2sr.cli.main; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
