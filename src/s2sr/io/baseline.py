"""The processing-baseline DN offset of Sentinel-2 files found outside a SAFE product.

From processing baseline 04.00 (25 January 2022) on, L1C/L2A digital numbers carry an
additive offset of -1000. A SAFE product says so in its MTD file; band files copied out of
it (a per-band folder, a granule folder, a GeoTIFF extract) lose that file, so the offset is
looked for, in this order, in: the raster's own tags (``S2_DN_OFFSET`` written by s2sr,
``PROCESSING_BASELINE``/``S2_PROCESSING_BASELINE``), an ``MTD_MSIL*.xml`` in the folder or a
parent folder (a granule inside its product), an ``MTD_TL.xml`` (its tile id ends in
``_N05.09``), and the product name in the path (``S2B_MSIL2A_20230615T..._N0509_...``).
:func:`apply_offsets` turns what is found (or a user's ``--offset``) into the reflectance
offsets of a scene's bands.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s2sr.bands import BASELINE_04_OFFSET, SAFE_BAND_IDS, normalize_band_name
from s2sr.errors import UsageError
from s2sr.io.base import SCENE_LOGGER
from s2sr.io.dn import is_integer
from s2sr.io.safe_metadata import parse_safe_metadata

log = logging.getLogger(__name__)
scene_log = logging.getLogger(SCENE_LOGGER)
#: Largest DN offset accepted (the baseline 04.00 offset is -1000).
MAX_DN_OFFSET = 10000.0

_PRODUCT_RE = re.compile(r"S2[A-D]_MSIL(?:1C|2A)_\d{8}T\d{6}_N(\d{2})(\d{2})_", re.IGNORECASE)
_TILE_ID_RE = re.compile(r"_N(\d{2})\.(\d{2})\b")
_MAX_MTD_BYTES = 16 * 1024 * 1024
_PARENTS = 4


@dataclass(frozen=True)
class BaselineOffsets:
    """DN offsets of a scene's bands and where they were found."""

    baseline: str
    offsets: dict[str, float]  # band -> additive DN offset
    quantification: float | None
    found_in: str


def offset_of(baseline: str) -> float:
    """The documented DN offset of a baseline string such as ``"05.09"``."""
    try:
        return BASELINE_04_OFFSET if float(baseline) >= 4.0 else 0.0
    except ValueError:
        return 0.0


def _uniform(baseline: str, found_in: str) -> BaselineOffsets:
    off = offset_of(baseline)
    return BaselineOffsets(baseline, {b: off for b in SAFE_BAND_IDS}, None, found_in)


def _from_tags(tags: dict[str, str], source: str) -> BaselineOffsets | None:
    raw = tags.get("S2_DN_OFFSET")
    baseline = tags.get("S2_PROCESSING_BASELINE") or tags.get("PROCESSING_BASELINE") or ""
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
                log.warning("%s: ignoring malformed S2_DN_OFFSET tag %r", source, raw[:80])
                offsets = {}
                break
            offsets[band] = number
        if offsets:
            return BaselineOffsets(baseline or "unknown", offsets, None, "its S2_DN_OFFSET tag")
    if re.fullmatch(r"\d{2}\.\d{2}", baseline.strip()):
        return _uniform(baseline.strip(), "its PROCESSING_BASELINE tag")
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
            if match:
                return _uniform(f"{match.group(1)}.{match.group(2)}", str(tl))
    for part in reversed(path.resolve().parts):
        match = _PRODUCT_RE.search(part)
        if match:
            return _uniform(f"{match.group(1)}.{match.group(2)}", f"the product name {part}")
    return None


def detect_offsets(path: str | Path, tags: dict[str, str] | None = None) -> BaselineOffsets | None:
    """DN offsets for the Sentinel-2 files at ``path``, or ``None`` when nothing says."""
    found = _from_tags(tags or {}, str(path))
    if found is None and not str(path).startswith("/vsi"):
        found = _from_folders(Path(path))
    if found is not None:
        log.info("%s: processing baseline %s (from %s)", path, found.baseline, found.found_in)
    return found


def check_dn_offset(dn_offset: float | None) -> None:
    """Refuse a user's DN offset (``--offset``) that is not finite or beyond +-10000."""
    if dn_offset is not None and not (
            math.isfinite(dn_offset) and abs(dn_offset) <= MAX_DN_OFFSET):
        raise UsageError(
            f"DN offset {dn_offset} is out of range: give a finite number within "
            f"+-{MAX_DN_OFFSET:g} (-1000 for processing baseline 04.00 and later, 0 before)"
        )


def apply_offsets(
    bands: Sequence[str], gains: list[float], offsets: list[float], explicit_scale: bool,
    dtype: str, dn_offset: float | None, where: str, tags: dict[str, str], s2_files: bool,
) -> tuple[list[float], list[float]]:
    """Reflectance offsets from an explicit DN offset, or from the detected baseline.

    ``s2_files``: the files are recognisably Sentinel-2 product files (named as in products,
    JPEG 2000, or tagged as Sentinel-2), so an unknown baseline is worth a warning; plain
    GeoTIFF exports are DN = reflectance x 10000 as documented.
    """
    if dn_offset is not None:
        if not is_integer(dtype):
            raise UsageError(f"a DN offset applies to integer DN, but {where} holds {dtype} "
                             "reflectance: drop the offset")
        tags["S2_DN_OFFSET"] = ",".join(f"{b}:{dn_offset:g}" for b in bands)
        return gains, [dn_offset * g for g in gains]
    if explicit_scale or not is_integer(dtype):
        return gains, offsets
    found = detect_offsets(where, tags)
    if found is None:
        if not s2_files:
            return gains, offsets
        scene_log.warning(
            "%s: cannot tell the processing baseline of these Sentinel-2 DN (no product name, "
            "MTD_MSIL*.xml/MTD_TL.xml or baseline tag): assuming no DN offset; for products "
            "of baseline 04.00 or later (acquired from 25 January 2022) pass --offset -1000 "
            "(dn_offset=-1000), or --offset 0 to silence this", where)
        return gains, offsets
    if found.quantification is not None:
        gains = [1.0 / found.quantification for _ in bands]
    new = [found.offsets.get(b, 0.0) * g for b, g in zip(bands, gains, strict=True)]
    tags["S2_PROCESSING_BASELINE"] = found.baseline
    tags["S2_DN_OFFSET"] = ",".join(f"{b}:{found.offsets.get(b, 0.0):g}" for b in bands)
    return gains, new
