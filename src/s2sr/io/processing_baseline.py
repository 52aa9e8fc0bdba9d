"""The processing-baseline DN offset of Sentinel-2 files, and the one parser of baselines.

From processing baseline 04.00 (acquisitions from 25 January 2022, and the Collection-1
reprocessing of older ones) L1C/L2A digital numbers carry an additive offset of -1000. A
SAFE product says so in its MTD file; band files copied out of it (a per-band folder, a
granule folder, a GeoTIFF extract) lose that file, so the offset is looked for, in this
order, in: the raster's own tags (``S2_DN_OFFSET`` written by s2sr,
``S2_PROCESSING_BASELINE``/``PROCESSING_BASELINE``), an ``MTD_MSIL*.xml`` in the folder or a
parent folder (a granule inside its product), an ``MTD_TL.xml`` (its tile id ends in
``_N05.09``), the product name in the path (``S2B_MSIL2A_20230615T..._N0509_...``) and a
BigEarthNet v1 patch name (made in 2018 by Sen2Cor 2.5.5 from products before 04.00: no
offset). :func:`apply_offsets` turns what is found (or a user's ``--offset``) into the
reflectance offsets of a scene's bands and records it in the tags ``S2_DN_OFFSET`` and
``S2_DN_OFFSET_SOURCE`` (read, given, or assumed).

:func:`parse_baseline` is the one reading of a baseline, whatever the source (MTD XML, a
STAC ``s2:processing_baseline``, a tag): ``"05.09"``, ``"N0509"``, ``"N05.09"``, and a
decimal number ``5.09`` (JSON or YAML writes it so; ``5.9`` is then ``05.90``: only whether
it is 04.00 or later matters for the offset). Anything else (``"05.09x"``, ``"-1.00"``,
NaN, ``true``) is not a baseline: refused where it would decide the offset.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s2sr.core.bands import (
    BASELINE_04_OFFSET,
    SAFE_BAND_IDS,
    normalize_band_name,
    parse_baseline,
)
from s2sr.core.dn import is_integer
from s2sr.core.errors import DataError, UsageError
from s2sr.core.safe_text import printable
from s2sr.io.base import SCENE_LOGGER
from s2sr.io.safe_metadata import parse_safe_metadata

log = logging.getLogger(__name__)
scene_log = logging.getLogger(SCENE_LOGGER)
#: Largest DN offset accepted (the baseline 04.00 offset is -1000).
MAX_DN_OFFSET = 10000.0
#: The first day of processing baseline 04.00 (and of the -1000 DN offset).
BASELINE_04_DATE = dt.date(2022, 1, 25)
#: How to state the offset, in words every command's user can follow.
OFFSET_FIX = ("record the baseline in the file (e.g. gdal_edit.py -mo "
              "S2_PROCESSING_BASELINE=05.09 FILE; every s2sr command reads it) or, with s2sr "
              "predict, pass --offset -1000 (dn_offset=-1000 in the library); --offset 0 or "
              "a baseline before 04.00 for no offset")

_PRODUCT_RE = re.compile(r"S2[A-D]_MSIL(?:1C|2A)_\d{8}T\d{6}_(N\d{4})_", re.IGNORECASE)
_TILE_ID_RE = re.compile(r"_(N\d{2}\.\d{2})\b")
_BIGEARTHNET_RE = re.compile(r"^S2[AB]_MSIL2A_(\d{8})T\d{5,6}_\d{1,3}_\d{1,3}(?:_(?:B\d{2}|B8A)"
                             r"\.tif)?$")
_DATE_IN_NAME_RE = re.compile(r"(?:^|_)(?:S2[A-D]_MSIL(?:1C|2A)_|T\d{2}[A-Z]{3}_)(20\d{6})T\d")
_DATE_TAGS = ("S2_START_TIME", "ACQUISITION_DATE", "PRODUCT_START_TIME",
              "DATATAKE_1_DATATAKE_SENSING_START", "SENSING_TIME", "DATE_ACQUIRED")
_BASELINE_TAGS = ("S2_PROCESSING_BASELINE", "PROCESSING_BASELINE")
_MAX_MTD_BYTES = 16 * 1024 * 1024
_PARENTS = 4
_warned: set[tuple[str, str]] = set()
#: What s2sr writes as a baseline it does not know, and one known to precede 04.00.
UNKNOWN = "unknown"
BEFORE_04 = "before 04.00"

__all__ = ["BASELINE_04_DATE", "MAX_DN_OFFSET", "BaselineOffsets", "acquisition_date",
           "apply_offsets", "check_dn_offset", "detect_offsets", "offset_of",
           "record_offsets", "warn_once", "warn_unknown"]


@dataclass(frozen=True)
class BaselineOffsets:
    """DN offsets of a scene's bands and where they were found."""

    baseline: str
    offsets: dict[str, float]  # band -> additive DN offset
    quantification: float | None
    found_in: str


def offset_of(baseline: str) -> float:
    """The documented DN offset of a normalised baseline such as ``"05.09"``."""
    return BASELINE_04_OFFSET if float(baseline) >= 4.0 else 0.0


def warn_once(key: str, message: str, *args: object) -> None:
    """Warn on the scene logger, once per process for ``key`` (a file) and ``message``:
    a scene opened twice (to choose a model, then to read it) is told about once."""
    if (key, message) in _warned or not scene_log.isEnabledFor(logging.WARNING):
        return  # said already, or silenced for a first look (then said on the real open)
    _warned.add((key, message))
    scene_log.warning(message, *args)


def acquisition_date(path: str, tags: dict[str, str]) -> dt.date | None:
    """The acquisition date from the tags or a Sentinel-2 product or tile file name."""
    texts = [tags[k] for k in _DATE_TAGS if tags.get(k)]
    texts += [m.group(1) for part in reversed(Path(path).parts)
              if (m := _DATE_IN_NAME_RE.search(part))]
    for text in texts:
        m = re.match(r"^\s*(\d{4})-?(\d{2})-?(\d{2})", text)
        if m:
            try:
                return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                continue
    return None


def _uniform(baseline: str, found_in: str) -> BaselineOffsets:
    off = offset_of(baseline)
    return BaselineOffsets(baseline, {b: off for b in SAFE_BAND_IDS}, None, found_in)


def _from_tags(tags: dict[str, str], source: str) -> BaselineOffsets | None:
    raw = tags.get("S2_DN_OFFSET")
    if tags.get("S2_DN_OFFSET_SOURCE", "").startswith("assumed"):
        raw = None  # an earlier run's guess is no evidence
    key = next((k for k in _BASELINE_TAGS if tags.get(k, "").strip()), None)
    if raw:
        offsets: dict[str, float] = {}
        for item in raw.split(","):
            name, _, value = item.partition(":")
            band = normalize_band_name(name)
            try:
                number = float(value)
            except ValueError:
                band = None
            if band is None or not -10000 <= number <= 10000:
                log.warning("%s: ignoring malformed S2_DN_OFFSET tag %s", printable(source),
                            printable(raw, 80))
                offsets = {}
                break
            offsets[band] = number
        if offsets:
            said = (tags.get(key) or "unknown") if key else "unknown"
            return BaselineOffsets(printable(said, 20), offsets, None, "its S2_DN_OFFSET tag")
    if key is None or tags[key].strip().lower() == UNKNOWN:  # as s2sr writes "don't know"
        return None
    if tags[key].strip().lower() == BEFORE_04:
        return BaselineOffsets(BEFORE_04, {b: 0.0 for b in SAFE_BAND_IDS}, None,
                               f"its {key} tag")
    try:
        baseline = parse_baseline(tags[key])
    except ValueError as err:
        raise DataError(f"{printable(source)}: tag {key}={printable(tags[key], 40)} {err}: "
                        f"fix the tag or {OFFSET_FIX}") from None
    return _uniform(baseline, f"its {key} tag") if baseline else None


def _bigearthnet(path: Path) -> BaselineOffsets | None:
    for part in reversed(path.parts):
        if _BIGEARTHNET_RE.match(part) and part[11:15] in ("2017", "2018"):
            return BaselineOffsets(BEFORE_04, {b: 0.0 for b in SAFE_BAND_IDS}, None,
                                   f"the BigEarthNet v1 patch name {part}")
    return None


def _from_folders(path: Path) -> BaselineOffsets | None:
    start = path if path.is_dir() else path.parent
    folders = [start, *list(start.parents)[:_PARENTS]]
    for folder in folders:
        for mtd in sorted(folder.glob("MTD_MSIL*.xml")):
            if mtd.is_file() and mtd.stat().st_size <= _MAX_MTD_BYTES:
                meta = parse_safe_metadata(mtd.read_bytes(), str(mtd))
                offsets = {b: meta.offsets.get(b, 0.0) for b in SAFE_BAND_IDS}
                return BaselineOffsets(meta.baseline, offsets, meta.quantification, str(mtd))
    for folder in folders:
        tl = folder / "MTD_TL.xml"
        if tl.is_file() and tl.stat().st_size <= _MAX_MTD_BYTES:
            match = _TILE_ID_RE.search(tl.read_bytes()[:65536].decode("utf-8", "replace"))
            baseline = parse_baseline(match.group(1)) if match else None
            if baseline:
                return _uniform(baseline, str(tl))
    for part in reversed(path.resolve().parts):
        match = _PRODUCT_RE.search(part)
        baseline = parse_baseline(match.group(1)) if match else None
        if baseline:
            return _uniform(baseline, f"the product name {part}")
    return _bigearthnet(path)


def detect_offsets(path: str | Path, tags: dict[str, str] | None = None) -> BaselineOffsets | None:
    """DN offsets for the Sentinel-2 files at ``path``, or ``None`` when nothing says.

    Raises:
        DataError: a baseline tag that is not a baseline (it would decide the offset).
    """
    found = _from_tags(tags or {}, str(path))
    if found is None and not str(path).startswith("/vsi"):
        found = _from_folders(Path(path))
    if found is not None:
        log.info("%s: processing baseline %s (from %s)", printable(str(path)), found.baseline,
                 printable(found.found_in))
    return found


def check_dn_offset(dn_offset: float | None) -> None:
    """Refuse a user's DN offset (``--offset``) that is not finite or beyond +-10000."""
    if dn_offset is not None and not (
            math.isfinite(dn_offset) and abs(dn_offset) <= MAX_DN_OFFSET):
        raise UsageError(
            f"DN offset {dn_offset} is out of range: give a finite number within "
            f"+-{MAX_DN_OFFSET:g} (-1000 for processing baseline 04.00 and later, 0 before)"
        )


def record_offsets(tags: dict[str, str], bands: Sequence[str], dn: Sequence[float],
                   source: str) -> None:
    """Write the tags ``S2_DN_OFFSET`` (``B02:-1000,...``) and ``S2_DN_OFFSET_SOURCE``
    (``read from ...``, ``given ...``, ``assumed ...``)."""
    tags["S2_DN_OFFSET"] = ",".join(f"{b}:{d:g}" for b, d in zip(bands, dn, strict=True))
    tags["S2_DN_OFFSET_SOURCE"] = printable(source, 200)


def warn_unknown(where: str, tags: dict[str, str], s2_files: bool) -> None:
    """The warning for integer DN whose baseline nothing states: always for an acquisition
    from 25 January 2022 on (its DN almost surely carry -1000), for other Sentinel-2 product
    files when their date is unknown or earlier (Collection-1 reprocessing added the offset
    to older products too); plain exports without a date are DN = reflectance x 10000."""
    date = acquisition_date(where, tags)
    if date is not None and date >= BASELINE_04_DATE:
        warn_once(where, "%s: acquired %s, on or after 25 January 2022 (processing baseline "
                  "04.00, DN offset -1000), but nothing states its baseline (no product name, "
                  "MTD_MSIL*.xml/MTD_TL.xml or baseline tag): read WITHOUT the offset, which "
                  "biases reflectance by +0.1 if it has one; " + OFFSET_FIX,
                  printable(where), date.isoformat())
    elif s2_files:
        warn_once(where, "%s: cannot tell the processing baseline of these Sentinel-2 DN (no "
                  "product name, MTD_MSIL*.xml/MTD_TL.xml or baseline tag): assuming no DN "
                  "offset; for products of baseline 04.00 or later (acquired from 25 January "
                  "2022, or reprocessed) " + OFFSET_FIX, printable(where))


def apply_offsets(
    bands: Sequence[str], gains: list[float], offsets: list[float], explicit_scale: bool,
    dtype: str, dn_offset: float | None, where: str, tags: dict[str, str], s2_files: bool,
) -> tuple[list[float], list[float]]:
    """Reflectance offsets from an explicit DN offset, or from the detected baseline; the
    DN offset used and where it came from are recorded in ``tags`` (:func:`record_offsets`).

    ``s2_files``: the files are recognisably Sentinel-2 product files (named as in products,
    JPEG 2000, or tagged as Sentinel-2), so an unknown baseline is worth a warning; plain
    GeoTIFF exports are DN = reflectance x 10000 as documented, unless a date says the
    acquisition is from 25 January 2022 on (:func:`warn_unknown`).
    """
    if dn_offset is not None:
        if not is_integer(dtype):
            raise UsageError(f"a DN offset applies to integer DN, but {printable(where)} holds "
                             f"{dtype} reflectance: drop the offset")
        record_offsets(tags, bands, [dn_offset] * len(bands), "given (--offset / dn_offset)")
        return gains, [dn_offset * g for g in gains]
    if not is_integer(dtype):
        record_offsets(tags, bands, [0.0] * len(bands), f"none: {dtype} reflectance")
        return gains, offsets
    if explicit_scale:
        record_offsets(tags, bands, [o / g for o, g in zip(offsets, gains, strict=True)],
                       "read from the file's GDAL band scale/offset")
        return gains, offsets
    found = detect_offsets(where, tags)
    if found is None:
        warn_unknown(where, tags, s2_files)
        record_offsets(tags, bands, [0.0] * len(bands),
                       "assumed: nothing states the processing baseline")
        return gains, offsets
    if found.quantification is not None:
        gains = [1.0 / found.quantification for _ in bands]
    new = [found.offsets.get(b, 0.0) * g for b, g in zip(bands, gains, strict=True)]
    tags["S2_PROCESSING_BASELINE"] = found.baseline
    record_offsets(tags, bands, [found.offsets.get(b, 0.0) for b in bands],
                   f"read from {found.found_in}")
    return gains, new
