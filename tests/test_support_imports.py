"""The tests' own layout: shared helpers come from tests/support/, never from a conftest.py
or from another test module (pytest imports those under names that depend on the rootdir
and import mode)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``path``, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_helpers_come_from_support_only() -> None:
    bad = [f"{path.relative_to(TESTS)}:{line} imports {module}"
           for path in sorted(TESTS.rglob("*.py"))
           for line, module in imported_modules(path)
           if any(part == "conftest" or part.startswith("test_") for part in module.split("."))]
    assert not bad, "import shared helpers from tests/support/ instead:\n" + "\n".join(bad)


def test_the_check_sees_a_conftest_import(tmp_path: Path) -> None:
    faulty = tmp_path / "test_faulty.py"
    faulty.write_text("def test_x():\n    from conftest import texture\n"
                      "from review.test_review_http import raw\n")
    assert sorted(imported_modules(faulty)) == [(2, "conftest"), (3, "review.test_review_http")]
