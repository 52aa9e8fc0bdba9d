"""The documentation's relative links and anchors point somewhere, and its make targets exist.

Checks README.md, MODEL_CARD.md, benchmarks/README.md and docs/*.md: every relative link
(``[text](path)``, ``![alt](path)``, ``[text](path#anchor)``, ``[text](#anchor)``) outside
code names a file of the repository, and every anchor a heading of that file, slugged as
GitHub does. External links (http, https, mailto) are not fetched.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "MODEL_CARD.md", ROOT / "benchmarks" / "README.md",
               *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_EXTERNAL = ("http://", "https://", "mailto:")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters of any script, digits and _
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` that name no file, or no heading of it."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    broken = []
    for target in _LINK.findall(text):
        if target.startswith(_EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    assert doc.exists(), f"{doc} is gone: update tests/test_docs_links.py"
    broken = broken_links(doc)
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_docs_folder_is_checked() -> None:
    names = {p.name for p in DOCS}
    assert {"architecture.md", "benchmarks.md", "predict.md"} <= names


def test_slugs_follow_github() -> None:
    assert slug("Scene adaptation (`--adapt`)") == "scene-adaptation---adapt"
    assert slug("The study's Table 1") == "the-studys-table-1"
    assert slug("Weights, exports and checkpoints") == "weights-exports-and-checkpoints"


def test_a_broken_link_and_a_missing_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Here\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Top\n\n[ok](other.md#here) [ok](other.md#twice-1) [ok](#top) "
        "[gone](missing.md) [no anchor](other.md#nowhere) [self](#nowhere)\n\n"
        "`[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n"
        "[web](https://example.org/missing.md)\n", encoding="utf-8")
    broken = broken_links(doc)
    assert len(broken) == 3, broken
    assert broken[0].startswith("missing.md: no file")
    assert broken[1] == "other.md#nowhere: no heading #nowhere in other.md"
    assert broken[2] == "#nowhere: no heading #nowhere in doc.md"


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", (ROOT / "README.md").read_text("utf-8")))
    assert {"demo", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def _room_rows() -> dict[str, str]:
    """Room -> its row of docs/architecture.md's table of rooms."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `s2sr\.(\w+)` \|(.*)\|$", text, re.M))


def test_architecture_names_every_module_of_every_room() -> None:
    rows = _room_rows()
    rooms = {p.name for p in (ROOT / "src" / "s2sr").iterdir()
             if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms <= set(rows), f"rooms missing from docs/architecture.md: {rooms - set(rows)}"
    problems = []
    for room, row in rows.items():
        named = set(re.findall(r"`(\w+)\.py`", row))
        present = {p.stem for p in (ROOT / "src" / "s2sr" / room).glob("*.py")} - {"__init__"}
        problems += [f"{room}/{name}.py is named but absent" for name in sorted(named - present)]
        problems += [f"{room}/{name}.py is not named" for name in sorted(present - named)]
    assert not problems, "docs/architecture.md's rooms: " + "; ".join(problems)


def test_architecture_concept_homes_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    homes = text[text.index("## One home per concept"):]
    missing = [name for name in re.findall(r"`(s2sr(?:\.\w+)+)`", homes)
               if not (ROOT / "src" / Path(*name.split("."))).with_suffix(".py").exists()
               and not (ROOT / "src" / Path(*name.split(".")) / "__init__.py").exists()]
    assert missing == []


def _defines(path: Path, name: str) -> bool:
    """Whether the module at ``path`` defines or imports ``name`` at its top level."""
    word = re.escape(name)
    pattern = (rf"^\s*(?:def |class |async def ){word}\b|^{word}\b"  # a definition or assignment
               rf"|^(?:from .* )?import .*\b{word}\b|^\s+{word},?$"  # an import
               rf"|[\"']{word}[\"']")  # listed in __all__ or a lazy __getattr__
    return re.search(pattern, path.read_text(encoding="utf-8"), re.M) is not None


def unresolved_names(text: str) -> list[str]:
    """Dotted ``s2sr.x.y`` names in backticks that are no module, or no name of one."""
    missing = []
    for dotted in sorted(set(re.findall(r"`(s2sr(?:\.\w+)+)[`(]", text))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            base = ROOT / "src" / Path(*parts[:cut])
            module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if module.exists():
                break
        rest = parts[cut:]
        # a name of the module, or a method of one of its classes
        if len(rest) > 2 or not all(_defines(module, name) for name in rest):
            missing.append(dotted)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_names_in_the_docs_exist(doc: Path) -> None:
    missing = unresolved_names(doc.read_text(encoding="utf-8"))
    assert not missing, f"{doc.name} names what s2sr does not hold: {', '.join(missing)}"


def test_a_renamed_module_is_found() -> None:
    assert unresolved_names("`s2sr.io.baseline` and `s2sr.core.errors.NoSuchError`") == [
        "s2sr.core.errors.NoSuchError", "s2sr.io.baseline"]
    assert unresolved_names("`s2sr.core.errors.UsageError` `s2sr.predict(...)`") == []
    assert unresolved_names("`s2sr.io.writer.RasterWriter.write` `s2sr.io.writer.RasterWriter.x.y`"
                            ) == ["s2sr.io.writer.RasterWriter.x.y"]


def recipes(makefile: str) -> dict[str, str]:
    """Make target -> its recipe lines, joined, with ``$(BIN)/`` dropped."""
    out: dict[str, str] = {}
    for match in re.finditer(r"^([A-Za-z][\w-]*):[^\n]*\n((?:\t[^\n]*\n?)*)", makefile, re.M):
        out[match.group(1)] = match.group(2).replace("$(BIN)/", "")
    return out


def test_the_commands_the_readme_gives_for_make_targets_are_their_recipes() -> None:
    steps = recipes((ROOT / "Makefile").read_text(encoding="utf-8"))
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    said = re.findall(r"`make ([\w-]+)` \(`([^`]+)`", readme)
    assert len(said) >= 3, said
    wrong = [f"make {target}: {command}" for target, command in said
             if command not in steps.get(target, "")]
    assert wrong == []
    assert recipes("x: y\n\tpython -m pytest -q\n\nz:\n")["x"] == "\tpython -m pytest -q\n"


def unresolved_imports(text: str) -> list[str]:
    """``from s2sr... import a, b`` lines in code blocks whose module or names do not exist."""
    missing = []
    for block in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M):
        for module_name, names in re.findall(r"^\s*from (s2sr[\w.]*) import ([\w, ]+)$", block,
                                             re.M):
            base = ROOT / "src" / Path(*module_name.split("."))
            module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            for name in (n.strip() for n in names.split(",")):
                if not module.exists() or not _defines(module, name):
                    missing.append(f"from {module_name} import {name}")
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_imports_of_the_examples_exist(doc: Path) -> None:
    missing = unresolved_imports(doc.read_text(encoding="utf-8"))
    assert not missing, f"{doc.name}: " + "; ".join(missing)


def test_a_wrong_import_in_an_example_is_found() -> None:
    text = ("```python\nfrom s2sr.models import build_model, gone\nfrom s2sr.nowhere import x\n"
            "```\n")
    assert unresolved_imports(text) == ["from s2sr.models import gone",
                                        "from s2sr.nowhere import x"]
