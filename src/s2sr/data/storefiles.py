"""Writing a dataset's files: complete temporaries first, then renames.

A dataset's ``manifest.json``, ``manifest.csv`` and ``decisions.json`` are written to
hidden temporaries (:func:`s2sr.core.files.temp_path`) that are renamed to their final
names only when all of an update's files are complete: a full disk, or any other failure,
leaves the previous files (see :mod:`s2sr.data.store`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from s2sr.core.files import replace_all, temporary


def stage(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary beside ``path``; returns it (rename it, or
    unlink it on failure). A full disk leaves nothing."""
    with temporary(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return tmp


#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``
    (numbers, negative ones included, are left alone)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def stage_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``manifest.csv`` of ``rows``, written to a temporary beside ``path`` (see
    :func:`stage`).

    UTF-8; any character that cannot be encoded is written as a backslash escape, and
    text cells a spreadsheet would run as formulas get a leading ``'``.
    """
    with temporary(path) as tmp, open(tmp, "w", newline="", encoding="utf-8",
                                      errors="backslashreplace") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return tmp


def write_together(files: list[tuple[Path, str]], csv_path: Path, rows: list[dict[str, Any]]
                   ) -> None:
    """Write ``files`` (``(path, text)``) and the CSV of ``rows`` to complete temporaries,
    then rename them all: a failure (a full disk) leaves the previous files and no
    temporary."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files:
            staged.append((stage(path, text), path))
        staged.append((stage_csv(csv_path, rows), csv_path))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    replace_all(staged)
