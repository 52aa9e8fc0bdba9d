"""The one YAML reader of s2sr's configs (training experiments, the Table 1 files), and
the one way their error messages echo a value.

A config is untrusted: it is read with a bounded size, composed by PyYAML's safe loader
(no ``!!python`` objects), then checked as a graph *before* any Python object is built:

- at most :data:`MAX_ALIASES` aliases (``*name``), no alias that refers to the node that
  holds it, at most :data:`MAX_NODES` values once every alias is expanded (a 700-byte
  "billion laughs" chain would otherwise expand to gigabytes) and at most
  :data:`MAX_DEPTH` levels of nesting;
- no key twice in one mapping (PyYAML would silently keep the last one). Merge keys
  (``<<: *defaults``) keep their YAML meaning: a key written next to them overrides the
  merged one.

Every refusal is a :class:`~s2sr.core.errors.UsageError` that names the file, the line and the
fix; :func:`s2sr.core.checks.shown` is how any value from the file appears in a message
(clipped, however large or deep the value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from s2sr.core.checks import shown
from s2sr.core.errors import UsageError

__all__ = ["MAX_ALIASES", "MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "read_yaml",
           "shown_key"]

#: A config file is a few kilobytes; anything this large is not one.
MAX_CONFIG_BYTES = 1024 * 1024
#: Aliases (``*name``) a file may use: a few anchors for shared stage settings are plenty.
MAX_ALIASES = 64
#: Values (scalars, lists, mappings) of the whole document once aliases are expanded.
MAX_NODES = 100_000
#: Levels of nesting (an experiment file has about five).
MAX_DEPTH = 64

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"

def shown_key(key: Any, limit: int = 40) -> str:
    """A mapping key for a message's dotted place (``loss.feature.<key>``), clipped."""
    text = key if isinstance(key, str) else shown(key, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RefusedError(Exception):
    """The document breaks one of the reader's bounds; the message says which and where."""


class _BoundedLoader(_Loader):
    """PyYAML's safe loader, refusing a key twice in one mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        merges = 0
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                merges += 1
                if merges > 1:
                    raise _RefusedError(f"line {line}: a second merge key '<<' in one mapping: "
                                        "merge several mappings with '<<: [*a, *b]'")
                continue
            if not isinstance(key_node, ScalarNode):
                continue  # PyYAML refuses unhashable keys itself
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise _RefusedError(f"line {line}: key {shown(key)} is given twice in one mapping "
                                    f"(first on line {first}): keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: Node) -> None:
    """Refuse aliases beyond the budget, self-referring aliases, documents that expand
    beyond :data:`MAX_NODES` values and nesting beyond :data:`MAX_DEPTH` (iteratively:
    no recursion on hostile depth)."""
    size: dict[int, int] = {}       # expanded size of each finished node
    open_: set[int] = set()         # nodes whose children are being measured
    aliases = 0
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, finish = stack.pop()
        key = id(node)
        if finish:
            open_.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_NODES:
                raise _RefusedError(f"line {node.start_mark.line + 1}: more than {MAX_NODES} "
                                    "values once its aliases are expanded: it is not an "
                                    "experiment file")
            size[key] = total
            continue
        if key in open_:
            raise _RefusedError(f"line {node.start_mark.line + 1}: an alias refers to the value "
                                "that contains it: write the value out")
        if key in size:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _RefusedError(f"line {node.start_mark.line + 1}: more than {MAX_ALIASES} "
                                    "aliases (*name): write the values out")
            continue
        if depth > MAX_DEPTH:
            raise _RefusedError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} "
                                "levels deep: it is not an experiment file")
        children = _children(node)
        if not children:
            size[key] = 1
            continue
        open_.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(children))


def _parse(text: str) -> Any:
    """Compose, check, then construct the single document of ``text``."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_graph(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _read_text(path: Path, what: str, example: str) -> str:
    """The file's text, read with a bound (a file that grows, or lies about its size)."""
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder: give the YAML file, e.g. {example}")
    if not path.is_file():
        raise UsageError(f"{what} {path} is not a regular file: give a YAML file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{what} {path} cannot be read ({err.strerror}): check its "
                         "permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"{what} {path} is more than {MAX_CONFIG_BYTES} bytes: it is not an "
                         "experiment file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {err.start}): save it as "
                         "UTF-8 YAML") from None


def read_yaml(path: Path, what: str = "config", example: str = "configs/smoke.yaml") -> Any:
    """The YAML document of ``path``, within the bounds above (an empty document, or one
    of only comments, is refused). ``what`` names the file in messages; ``example`` is a
    file to give instead of a folder."""
    text = _read_text(path, what, example)
    if not text.strip():
        raise UsageError(f"{what} {path} is empty: start from {example}")
    try:
        data = _parse(text)
    except _RefusedError as err:
        raise UsageError(f"{what} {path}, {err}") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or getattr(err, "context", None)
        first = problem or (str(err).splitlines()[0] if str(err) else type(err).__name__)
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{path} is not valid YAML ({where}{shown_key(first, 120)}): fix the "
                         "file (python objects and tags are refused)") from None
    except RecursionError:
        raise UsageError(f"{path} nests too deeply to be an experiment file") from None
    except (ValueError, OverflowError) as err:  # e.g. a 5000-digit integer, a 13th month
        detail = ("an integer of thousands of digits" if "integer string conversion" in
                  str(err) else shown_key(str(err), 120))
        raise UsageError(f"{what} {path} holds a value YAML cannot read ({detail}): fix "
                         "the value") from None
    if data is None:
        raise UsageError(f"{what} {path} is empty (only comments): start from {example}")
    return data
