"""The manifest of a paired dataset: its format, its rows, and their validation.

``manifest.json`` holds the format name and version, one entry per scene pair (``pairs``:
pair id -> kind, site, split, scale, patch size, bands, array file names, each band's
resolution and further band groups (:mod:`s2sr.data.bandgroups`), ...) and one row
per patch (``patches``); ``decisions.json`` maps patch ids to a person's decisions. The
folder that holds them, its lock and its arrays are :mod:`s2sr.data.store`.

Georeferencing (format version 2): every patch row carries ``crs`` (``"EPSG:n"`` or WKT)
and ``lr_transform`` / ``hr_transform``, the six affine coefficients ``(a, b, c, d, e, f)``
(as ``affine.Affine`` and rasterio order them: ``x = a*col + b*row + c``,
``y = d*col + e*row + f``) of *that patch's own* stored input / target array: pixel (0, 0)
of the array is the patch's top-left pixel. ``lr_row``/``lr_col`` give the same corner in
pixels of the input grid and ``hr_row``/``hr_col`` in pixels of the target grid, both
counted from the scene's top-left corner (scene-absolute).

Everything read from a dataset folder is untrusted: :func:`validate_manifest` and
:func:`validate_decisions` check types, keys, statuses and array file names, and a damaged
file is one :class:`~s2sr.core.errors.DataError` naming it and the fix.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from s2sr.core.constants import PATCH_STATS, SCALES
from s2sr.core.errors import DataError, UsageError
from s2sr.data.bandgroups import ARRAY_NAME, MAX_PATCH, check_band_groups
from s2sr.data.validation import Thresholds, validate

log = logging.getLogger(__name__)

FORMAT = "s2sr-pairs"
FORMAT_VERSION = 2
STATUSES = ("auto-accepted", "auto-rejected", "accepted", "rejected")
#: Longest note a decision may carry (characters).
MAX_NOTE = 500
#: Longest label (site, kind, sensor) a pair may carry (characters).
MAX_LABEL = 100
# bidirectional overrides and isolates: they make a note display as other text
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAN_TRANSFORM = (math.nan,) * 6


def transform_tuple(transform: Affine) -> list[float]:
    """The six coefficients ``(a, b, c, d, e, f)`` of an affine transform."""
    return [float(v) for v in tuple(transform)[:6]]


def effective_status(row: dict[str, Any], decisions: dict[str, dict[str, Any]]) -> tuple[
        str, str]:
    """(status, reason) of a patch: a person's decision wins over the automatic one."""
    decision = decisions.get(row["patch_id"])
    if decision:
        return decision["status"], decision.get("note", "") or "manual"
    return row["auto_status"], row["auto_reason"]


def effective_rows(data: dict[str, Any], decisions: dict[str, dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Patch rows of the manifest ``data`` with their effective ``status`` and ``reason``."""
    out = []
    for row in data["patches"]:
        status, reason = effective_status(row, decisions)
        out.append({**row, "status": status, "reason": reason})
    return out


def summarize(root: Path, pairs: dict[str, dict[str, Any]], rows: list[dict[str, Any]]
              ) -> dict[str, Any]:
    """Counts per site, split, kind, status and reason, and per pair details, of a dataset's
    ``pairs`` and effective ``rows`` (as in ``s2sr pairs info --json``)."""
    per_pair: dict[str, dict[str, Any]] = {}
    for pid, info in pairs.items():
        mine = [r for r in rows if r["pair_id"] == pid]
        per_pair[pid] = {
            **{k: v for k, v in info.items() if k not in ("lr_array", "hr_array")},
            "patches": len(mine),
            "by_status": dict(Counter(r["status"] for r in mine)),
            "by_reason": dict(Counter(r["reason"] for r in mine if r["reason"])),
        }
    return {
        "dataset": str(root),
        "patches": len(rows),
        "by_site": dict(Counter(r["site"] for r in rows)),
        "by_split": dict(Counter(r["split"] for r in rows)),
        "by_kind": dict(Counter(r["kind"] for r in rows)),
        "by_status": dict(Counter(r["status"] for r in rows)),
        "by_reason": dict(Counter(r["reason"] for r in rows if r["reason"])),
        "pairs": per_pair,
    }


def patch_rows(pair_id: str, origins: list[tuple[int, int]], stats: dict[str, list[float]],
               thresholds: Thresholds, *, common: dict[str, Any], patch: int, scale: int,
               lr_grid: Affine, hr_grid: Affine, lr_offset: tuple[int, int] = (0, 0)
               ) -> list[dict[str, Any]]:
    """Validate a pair's patches and make their manifest rows.

    Args:
        pair_id: the pair's id (patch ids are ``pair_id:row:col``).
        origins: ``(row, col)`` of each patch on the input (lr) grid, from ``lr_offset``.
        stats: per-patch statistics (see :func:`s2sr.data.validation.validate`).
        thresholds: validation thresholds.
        common: fields shared by every row (kind, site, split, scenes, CRS).
        patch: input patch size. scale: target pixels per input pixel.
        lr_grid: transform of the input grid, pixel (0, 0) at the scene's top-left corner.
        hr_grid: transform of the target grid, same corner (``scale`` times finer).
        lr_offset: ``(row, col)`` on the input grid where ``origins`` count from.
    """
    arrays = {key: np.asarray(v, dtype=float) for key, v in stats.items()}
    reasons = validate(arrays, thresholds)
    rows = []
    for k, ((r, c), reason) in enumerate(zip(origins, reasons, strict=True)):
        lr_r, lr_c = lr_offset[0] + r, lr_offset[1] + c
        rows.append({
            "patch_id": f"{pair_id}:{r}:{c}", "pair_id": pair_id, "index": k, **common,
            "lr_row": lr_r, "lr_col": lr_c, "lr_size": patch,
            "hr_row": lr_r * scale, "hr_col": lr_c * scale, "hr_size": patch * scale,
            "lr_transform": transform_tuple(lr_grid * Affine.translation(lr_c, lr_r)),
            "hr_transform": transform_tuple(
                hr_grid * Affine.translation(lr_c * scale, lr_r * scale)),
            **{key: _num(arrays[key][k]) for key in arrays},
            "auto_status": "auto-rejected" if reason else "auto-accepted",
            "auto_reason": reason,
        })
    return rows


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


# --- free text: notes and labels ---------------------------------------------------------

def _bad_character(text: str) -> str | None:
    """A description of the first character ``text`` may not hold, else ``None``."""
    if text.isprintable():  # fast path: no control, surrogate or format character
        return None
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            return ("bytes that are not UTF-8 (e.g. typed in a Latin-1 terminal)"
                    if "\udc80" <= ch <= "\udcff" else "a lone UTF-16 surrogate")
        if unicodedata.category(ch) == "Cc":
            return f"a control character ({ch!r})"
        if ch in _BIDI:
            return f"a bidirectional override (U+{ord(ch):04X})"
    return None


def check_text(value: object, what: str, limit: int) -> str:
    """Refuse text a dataset cannot keep: not a string, not UTF-8, control characters
    (newlines included), bidirectional overrides, or longer than ``limit`` characters.

    Args:
        value: the text. what: its name in the message (``"--note"``). limit: the
            largest length.

    Raises:
        UsageError: naming the problem and the fix.
    """
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text, got a {type(value).__name__}")
    if len(value) > limit:
        raise UsageError(f"{what} is {len(value)} characters long: keep it to {limit}")
    bad = _bad_character(value)
    if bad is not None:
        raise UsageError(f"{what} holds {bad}: write it as one line of UTF-8 text")
    return value


def clean_text(value: str, limit: int | None = None) -> str:
    """Text read from a dataset, made storable: bytes that are not UTF-8 become ``\\xNN``,
    lone surrogates U+FFFD, control characters and bidirectional overrides a space; cut
    to ``limit`` characters when given. (For files of older versions, and for paths.)"""
    if _bad_character(value) is None:
        return value[:limit]
    out = []
    for ch in value:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)[:limit]


def clean_strings(item: Any) -> Any:
    """``item`` (JSON-like) with every string passed through :func:`clean_text`."""
    if isinstance(item, str):
        return clean_text(item)
    if isinstance(item, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_strings(v)
                for k, v in item.items()}
    if isinstance(item, list):
        return [clean_strings(v) for v in item]
    return item


# --- validation of what is read from a dataset folder (untrusted) -------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_transform(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 6 and all(_is_num(x) and math.isfinite(x)
                                                      for x in v)


_PAIR_FIELDS: dict[str, Any] = {
    "kind": _is_str, "site": _is_str, "split": _is_str,
    "scale": lambda v: v in SCALES and _is_int(v),
    "patch": lambda v: _is_int(v) and 1 <= v <= MAX_PATCH,
    "bands": lambda v: isinstance(v, list) and 0 < len(v) <= 64 and all(map(_is_str, v)),
    "lr_array": lambda v: _is_str(v) and bool(ARRAY_NAME.match(v)),
    "hr_array": lambda v: _is_str(v) and bool(ARRAY_NAME.match(v)),
    "shift_px": lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_num, v)),
    "time_gap_days": lambda v: v is None or _is_num(v),
}
_ROW_FIELDS: dict[str, Any] = {
    "patch_id": _is_str, "pair_id": _is_str, "kind": _is_str, "site": _is_str,
    "split": _is_str, "auto_reason": _is_str,
    "index": lambda v: _is_int(v) and v >= 0,
    "lr_size": lambda v: _is_int(v) and 1 <= v <= MAX_PATCH,
    "hr_size": lambda v: _is_int(v) and 1 <= v <= 4 * MAX_PATCH,
    "lr_row": _is_int, "lr_col": _is_int,
    "auto_status": lambda v: v in ("auto-accepted", "auto-rejected"),
}
_ROW_FIELDS_V2: dict[str, Any] = {"crs": _is_str, "lr_transform": _is_transform,
                                  "hr_transform": _is_transform}


def _check_fields(where: str, item: Any, checks: dict[str, Any], path: Path) -> None:
    if not isinstance(item, dict):
        raise DataError(f"{path} is damaged: {where} is a {type(item).__name__}, not an "
                        "object; rebuild the dataset (or restore the file)")
    for key, ok in checks.items():
        if key not in item:
            raise DataError(f"{path} is damaged: {where} lacks {key!r}; rebuild the dataset "
                            "(or restore the file)")
        if not ok(item[key]):
            raise DataError(f"{path} is damaged: {where} has a bad {key!r} "
                            f"({str(item[key])[:60]!r}); rebuild the dataset (or restore "
                            "the file)")


def validate_manifest(data: Any, path: Path) -> dict[str, Any]:
    """Check a parsed manifest's structure; returns it (version-1 rows get NaN transforms).

    Raises:
        DataError: naming the file, the bad entry and the fix.
    """
    if not isinstance(data, dict):
        raise DataError(f"{path} is not an s2sr pairs manifest (a {type(data).__name__}, not "
                        "an object): rebuild the dataset")
    if data.get("format") != FORMAT:
        raise DataError(f"{path} is not an s2sr pairs manifest (format "
                        f"{str(data.get('format'))[:40]!r}): rebuild the dataset")
    version = data.get("format_version")
    if version not in (1, FORMAT_VERSION) or not _is_int(version):
        raise DataError(f"{path} has format version {str(version)[:20]!r}, not one this s2sr "
                        f"reads (1-{FORMAT_VERSION}): rebuild the dataset or upgrade s2sr")
    pairs, patches = data.get("pairs"), data.get("patches")
    if not isinstance(pairs, dict):
        raise DataError(f"{path} is damaged: 'pairs' is missing or not an object; rebuild "
                        "the dataset")
    if not isinstance(patches, list):
        raise DataError(f"{path} is damaged: 'patches' is missing or not a list; rebuild "
                        "the dataset")
    for pid, info in pairs.items():
        _check_fields(f"pair {pid[:60]!r}", info, _PAIR_FIELDS, path)
        check_band_groups(pid, info, path)  # groups and resolutions (issue 22)
    seen: set[str] = set()
    checks = {**_ROW_FIELDS, **(_ROW_FIELDS_V2 if version >= 2 else {})}
    for k, row in enumerate(patches):
        _check_fields(f"patch row {k}", row, checks, path)
        info = pairs.get(row["pair_id"])
        if info is None:
            raise DataError(f"{path} is damaged: patch row {k} names pair "
                            f"{row['pair_id'][:60]!r}, which is not in 'pairs'; rebuild the "
                            "dataset")
        if row["lr_size"] != info["patch"] or row["hr_size"] != info["patch"] * info["scale"]:
            raise DataError(f"{path} is damaged: patch row {k} has size {row['lr_size']}/"
                            f"{row['hr_size']}, its pair says {info['patch']} x "
                            f"{info['scale']}; rebuild the dataset")
        if row["patch_id"] in seen:
            raise DataError(f"{path} is damaged: patch {row['patch_id'][:80]!r} appears twice; "
                            "rebuild the dataset")
        seen.add(row["patch_id"])
        for key in PATCH_STATS:
            if key in row and row[key] is not None and not _is_num(row[key]):
                raise DataError(f"{path} is damaged: patch row {k} has a bad {key!r}; rebuild "
                                "the dataset")
        if version < 2:  # old manifests: patch georeferencing was wrong, do not pass it on
            row.update(crs=str(row.get("crs", "")), lr_transform=list(_NAN_TRANSFORM),
                       hr_transform=list(_NAN_TRANSFORM))
    indexes: dict[str, list[int]] = {pid: [] for pid in pairs}
    for row in patches:
        indexes[row["pair_id"]].append(row["index"])
    for pid, idx in indexes.items():
        if sorted(idx) != list(range(len(idx))):
            raise DataError(f"{path} is damaged: the patch indexes of pair {pid[:60]!r} are "
                            f"not 0..{len(idx) - 1}; rebuild the dataset")
    if version < 2:
        log.warning("%s was made by an older s2sr whose patch georeferencing was wrong: "
                    "map positions are not available; rebuild it for them", path)
    return data


def validate_decisions(data: Any, path: Path) -> dict[str, dict[str, Any]]:
    """Check a parsed ``decisions.json``: patch id -> {status, note?, time?}.

    A note an older s2sr let through (not UTF-8, control characters, too long) is
    repaired with :func:`clean_text` and a warning, so that the dataset stays usable; the
    next decision writes the repaired text.
    """
    fix = "fix it or delete it (the manual decisions in it are then lost)"
    if not isinstance(data, dict):
        raise DataError(f"{path} is damaged (a {type(data).__name__}, not an object of patch "
                        f"decisions): {fix}")
    for pid, d in data.items():
        if not isinstance(d, dict) or d.get("status") not in ("accepted", "rejected") \
                or not isinstance(d.get("note", ""), str) \
                or not isinstance(d.get("time", ""), str):
            raise DataError(f"{path} is damaged: the decision on {pid[:80]!r} is not "
                            f"{{status: accepted|rejected, note: text}}: {fix}")
        note = d.get("note", "")
        if len(note) > MAX_NOTE or _bad_character(note) is not None:
            d["note"] = clean_text(note, MAX_NOTE)
            log.warning("%s: the note on %s held text s2sr cannot keep (%s); it is read as "
                        "%r and saved so at the next decision", path, clean_text(pid, 80),
                        _bad_character(note) or "too long", d["note"][:60])
    return data


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file of a dataset; a corrupt one is a :class:`DataError` ending in ``what``
    (the fix)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0][:80]
        raise DataError(f"{path} is corrupt ({first}): {what}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file: {what}") from None
