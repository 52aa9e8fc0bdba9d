"""Acquisition dates of scenes: from options, tags or file names."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from s2sr.core.errors import UsageError

_TAG_KEYS = ("S2_START_TIME", "ACQUISITION_DATE", "DATE_ACQUIRED", "acquisition_date",
             "TIFFTAG_DATETIME", "datetime", "DATE")
_NAME_RE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?:T\d{6})?(?!\d)")


def parse_date(text: str) -> dt.date:
    """``2020-01-13``, ``20200113``, ``2020:01:13 ...`` or ISO date-times -> date."""
    text = text.strip()
    m = re.match(r"^(\d{4})[-:/]?(\d{2})[-:/]?(\d{2})", text)
    if not m:
        raise UsageError(f"cannot read a date from {text!r}: use YYYY-MM-DD")
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise UsageError(f"{text!r} is not a valid date: use YYYY-MM-DD") from None


def scene_date(path: str | Path, tags: dict[str, str], given: str | None) -> dt.date | None:
    """The acquisition date: ``given`` > tags > a YYYYMMDD in the file name > unknown."""
    if given:
        return parse_date(given)
    for key in _TAG_KEYS:
        if tags.get(key):
            try:
                return parse_date(tags[key])
            except UsageError:
                continue
    m = _NAME_RE.search(Path(path).name)
    if m:
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    return None
