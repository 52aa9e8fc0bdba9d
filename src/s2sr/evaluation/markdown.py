"""Markdown tables of ``s2sr evaluate``'s reports (the panel's and the opensr-test ones)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(keys: Sequence[str], columns: Sequence[str],
          rows: Iterable[tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """A Markdown table: ``keys`` label columns (left-aligned), then ``columns`` of values
    (right-aligned); ``rows`` yields each row's labels and cells."""
    return ["| " + " | ".join([*keys, *columns]) + " |",
            "|" + "---|" * len(keys) + "---:|" * len(columns),
            *("| " + " | ".join([*labels, *cells]) + " |" for labels, cells in rows)]
