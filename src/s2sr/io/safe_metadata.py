"""Radiometric facts of a Sentinel-2 SAFE product, read from its ``MTD_MSIL1C.xml`` /
``MTD_MSIL2A.xml``: level, processing baseline, quantification value and, from baseline 04.00
on, the per-band additive DN offset (``RADIO_ADD_OFFSET`` for L1C, ``BOA_ADD_OFFSET`` for
L2A), so that ``reflectance = (DN + offset) / quantification``. The file may be hostile:
its size and values are bounded and a DOCTYPE (external entities, billion laughs) is refused.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from s2sr.core.bands import (
    BASELINE_04_OFFSET,
    QUANTIFICATION_VALUE,
    SAFE_BAND_IDS,
    normalize_band_name,
    parse_baseline,
)
from s2sr.core.errors import RasterReadError
from s2sr.core.safe_text import printable

log = logging.getLogger(__name__)

#: Real MTD files are a few hundred kB.
MAX_MTD_BYTES = 16 * 1024 * 1024
#: Bounds on QUANTIFICATION_VALUE (10000 in every product) and on DN offsets (-1000).
QUANTIFICATION_RANGE = (1.0, 1_000_000.0)
MAX_ABS_OFFSET = 10000.0


@dataclass(frozen=True)
class SafeMetadata:
    """Radiometric facts read from a product's MTD file."""

    level: str  # "L1C" or "L2A"
    baseline: str
    quantification: float
    offsets: dict[str, float]  # band -> additive DN offset
    start_time: str | None
    #: why the PROCESSING_BASELINE could not be read (``None``: read, or absent)
    baseline_error: str | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _bad(source: str, what: str) -> RasterReadError:
    return RasterReadError(f"{source}: product metadata {what}: the MTD file is corrupt or "
                           "not from ESA; re-download the product")


def _number(text: str, source: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(source, f"{what} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(source, f"{what} {text[:40]!r} is not finite")
    return value


def _integer(text: str | None, source: str, what: str) -> int:
    if text is None:
        raise _bad(source, f"has a {what} without its attribute")
    if not re.fullmatch(r"\s*\d{1,3}\s*", text) or int(text) >= len(SAFE_BAND_IDS):
        raise _bad(source, f"{what} {text[:40]!r} is not a band number (0-12)")
    return int(text)


def parse_safe_metadata(xml: bytes, source: str) -> SafeMetadata:
    """Read level, baseline, quantification and offsets from MTD XML bytes.

    Raises:
        RasterReadError: not XML, a DOCTYPE/ENTITY declaration (XXE, billion laughs), or a
            value out of its documented range (band ids, quantification, offsets).
    """
    root = _parse_xml(xml, source)
    level = "L2A" if "2A" in _local(root.tag) else "L1C"
    baseline, start, quant = "", None, None
    band_by_id = dict(enumerate(SAFE_BAND_IDS))
    raw_offsets: dict[int, float] = {}
    for el in root.iter():
        name = _local(el.tag)
        text = (el.text or "").strip()
        if name == "PROCESSING_BASELINE":
            baseline = text
        elif name == "PRODUCT_START_TIME":
            start = text[:64]
        elif name in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and quant is None:
            quant = _number(text, source, name)
            low, high = QUANTIFICATION_RANGE
            if not low <= quant <= high:
                raise _bad(source, f"{name} {text[:40]!r} is outside {low:g}-{high:g} (ESA "
                                   "products use 10000)")
        elif name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            band_id = _integer(el.attrib.get("band_id"), source, f"{name} band_id")
            value = _number(text, source, f"{name} of band_id {band_id}")
            if abs(value) > MAX_ABS_OFFSET:
                raise _bad(source, f"{name} {value:g} of band_id {band_id} is beyond "
                                   f"+-{MAX_ABS_OFFSET:g} (ESA products use -1000)")
            raw_offsets[band_id] = value
        elif name == "Spectral_Information" and "physicalBand" in el.attrib:
            band_id = _integer(el.attrib.get("bandId"), source, "Spectral_Information bandId")
            physical = el.attrib["physicalBand"].strip()
            band = normalize_band_name(physical) if len(physical) <= 4 else None
            if band is None:
                raise _bad(source, f"physicalBand {physical[:40]!r} is not a Sentinel-2 band")
            band_by_id[band_id] = band
    unknown = sorted(i for i in raw_offsets if i not in band_by_id)
    if unknown:
        raise _bad(source, f"gives offsets for band_id {unknown} that no band has (0-12)")
    offsets = {band_by_id[i]: v for i, v in raw_offsets.items()}
    baseline, baseline_error, offsets = _baseline_and_offsets(baseline, offsets, source)
    return SafeMetadata(
        level=level, baseline=baseline or "unknown", quantification=quant or QUANTIFICATION_VALUE,
        offsets=offsets, start_time=start, baseline_error=baseline_error,
    )


def _parse_xml(xml: bytes, source: str) -> ET.Element:
    """The root of MTD XML bytes, refused when too large or declaring a DOCTYPE/ENTITY."""
    if len(xml) > MAX_MTD_BYTES:
        raise _bad(source, f"is {len(xml)} bytes (more than {MAX_MTD_BYTES})")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise _bad(source, "declares a DOCTYPE/ENTITY (never in ESA products; refused as "
                           "unsafe)")
    try:
        return ET.fromstring(xml)
    except ET.ParseError as err:
        raise RasterReadError(
            f"{source}: product metadata is not valid XML ({err}): re-download the product"
        ) from None


def _baseline_and_offsets(baseline: str, offsets: dict[str, float], source: str
                          ) -> tuple[str, str | None, dict[str, float]]:
    """The parsed baseline ("" when unknown), what is wrong with it (None when nothing),
    and the offsets: the documented one for every band at baseline 04.00 or later when
    the metadata gives none."""
    baseline_error = None
    try:
        baseline = parse_baseline(baseline) or ""
    except ValueError as err:
        baseline_error = f"PROCESSING_BASELINE {printable(baseline, 40)} {err}"
        if offsets:  # the per-band offsets say what the baseline would
            log.warning("%s: %s: treating it as unknown (the per-band offsets are used)",
                        printable(source), baseline_error)
        baseline = ""
    new_baseline = bool(baseline) and float(baseline) >= 4.0
    if new_baseline and not offsets:
        log.warning(
            "%s: baseline %s but no offsets in the metadata; applying the documented %g",
            source, baseline, BASELINE_04_OFFSET,
        )
        offsets = {b: BASELINE_04_OFFSET for b in SAFE_BAND_IDS}
    return baseline, baseline_error, offsets
