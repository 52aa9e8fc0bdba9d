"""Sentinel-2 L1C/L2A SAFE products, as folders or ``.zip`` archives.

The product metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) gives the processing
baseline, the quantification value and, from baseline 04.00 on, the per-band additive
offset (``RADIO_ADD_OFFSET`` for L1C, ``BOA_ADD_OFFSET`` for L2A). With them,
``reflectance = (DN + offset) / quantification``. Archives are read in place through
GDAL's ``/vsizip/`` without extracting; entries that would escape the archive's folder
(absolute paths, ``..``, backslashes, drive letters), symbolic links and entries that inflate
far beyond their compressed size (zip bombs) are refused before anything is inflated; metadata
values are bounded and a DOCTYPE (external entities, billion laughs) is refused.
"""

from __future__ import annotations

import logging
import math
import re
import stat
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from s2sr.bands import (
    BASELINE_04_OFFSET,
    QUANTIFICATION_VALUE,
    SAFE_BAND_IDS,
    normalize_band_name,
)
from s2sr.errors import RasterReadError, UnsafeArchiveError
from s2sr.io.scene import Scene, band_files, open_band_files

log = logging.getLogger(__name__)

_MTD_RE = re.compile(r"(?:^|/)MTD_MSIL(1C|2A)\.xml$")
_IMG_RE = re.compile(r"GRANULE/[^/]+/IMG_DATA/(?:R10m/)?[^/]+\.jp2$")
#: Real MTD files are a few hundred kB; band entries of a 10980 px tile about 100-250 MB.
MAX_MTD_BYTES = 16 * 1024 * 1024
MAX_ENTRY_BYTES = 4 * 1024**3
#: JPEG 2000 hardly compresses further; a zip entry inflating this much is a zip bomb.
MAX_COMPRESSION_RATIO = 100
MAX_ENTRIES = 100_000
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


def is_safe_folder(path: Path) -> bool:
    """Whether ``path`` is an unzipped SAFE product (a folder with an MTD_MSIL*.xml)."""
    return path.is_dir() and any(path.glob("MTD_MSIL*.xml"))


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
    if len(xml) > MAX_MTD_BYTES:
        raise _bad(source, f"is {len(xml)} bytes (more than {MAX_MTD_BYTES})")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise _bad(source, "declares a DOCTYPE/ENTITY (never in ESA products; refused as "
                           "unsafe)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise RasterReadError(
            f"{source}: product metadata is not valid XML ({err}): re-download the product"
        ) from None
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
    if baseline and not re.fullmatch(r"\d{2}\.\d{2}", baseline):
        log.warning("%s: unreadable PROCESSING_BASELINE %r: treating it as unknown",
                    source, baseline[:40])
        baseline = ""
    new_baseline = bool(baseline) and float(baseline) >= 4.0
    if new_baseline and not offsets:
        log.warning(
            "%s: baseline %s but no offsets in the metadata; applying the documented %g",
            source, baseline, BASELINE_04_OFFSET,
        )
        offsets = {b: BASELINE_04_OFFSET for b in SAFE_BAND_IDS}
    return SafeMetadata(
        level=level, baseline=baseline or "unknown", quantification=quant or QUANTIFICATION_VALUE,
        offsets=offsets, start_time=start,
    )


def check_zip_entries(names: Sequence[str], source: str) -> None:
    """Refuse archive entries that are absolute or climb out with ``..``."""
    for name in names:
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name):
            raise UnsafeArchiveError(
                f"{source} holds entry {name!r} that escapes the archive's folder: refusing to "
                "read it; re-create the archive from the .SAFE folder"
            )


def check_zip_infos(infos: Sequence[zipfile.ZipInfo], source: str) -> None:
    """Refuse escaping names, symbolic links and zip bombs, from the central directory only
    (nothing is inflated)."""
    if len(infos) > MAX_ENTRIES:
        raise UnsafeArchiveError(f"{source} holds {len(infos)} entries (more than {MAX_ENTRIES}):"
                                 " refusing to read it; re-create the archive from the .SAFE")
    check_zip_entries([i.filename for i in infos], source)
    for info in infos:
        if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                f"{source} holds a symbolic link {info.filename!r}: refusing to read it (it could "
                "point at any file); re-create the archive from the .SAFE folder")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_ENTRY_BYTES or (
                info.file_size > 1024 * 1024 and ratio > MAX_COMPRESSION_RATIO):
            raise UnsafeArchiveError(
                f"{source} entry {info.filename!r} inflates to {info.file_size} bytes from "
                f"{info.compress_size} (a zip bomb?): refusing to read it; re-download the product")


def _check_links(safe: Path, files: Sequence[str]) -> None:
    """Refuse files of a SAFE folder that are links leading out of the product."""
    root = safe.resolve()
    for name in files:
        path = Path(name)
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise UnsafeArchiveError(
                f"{path} in {safe} is a symbolic link to {path.resolve()}: refusing to read it; "
                "copy the real file into the product")


def _scene_from(
    files: dict[str, str], meta: SafeMetadata, bands: Sequence[str] | None, source: str,
    dn_offset: float | None = None,
) -> Scene:
    dn = {b: meta.offsets.get(b, 0.0) if dn_offset is None else dn_offset for b in files}
    gains = {b: 1.0 / meta.quantification for b in files}
    offsets = {b: dn[b] / meta.quantification for b in files}
    tags = {
        "S2_PROCESSING_LEVEL": meta.level,
        "S2_PROCESSING_BASELINE": meta.baseline,
        "S2_DN_OFFSET": ",".join(f"{b}:{dn[b]:g}" for b in sorted(files)),
    }
    if meta.start_time:
        tags["S2_START_TIME"] = meta.start_time
    # DN 0 marks missing data in every Sentinel-2 product.
    return open_band_files(files, bands, source, gains, offsets, nodata=0, tags=tags)


def open_safe(path: Path, bands: Sequence[str] | None, dn_offset: float | None = None) -> Scene:
    """Open a SAFE folder or its ``.zip`` as a :class:`Scene` of its 10 m bands.

    ``dn_offset`` (DN units) overrides the metadata's per-band offsets.
    """
    if path.is_dir():
        mtd = sorted(path.glob("MTD_MSIL*.xml"))
        _check_links(path, [str(m) for m in mtd])
        if mtd[0].stat().st_size > MAX_MTD_BYTES:
            raise RasterReadError(f"{mtd[0]} is {mtd[0].stat().st_size} bytes (more than "
                                  f"{MAX_MTD_BYTES}): it is not product metadata; re-download")
        meta = parse_safe_metadata(mtd[0].read_bytes(), str(path))
        images = [str(p) for p in path.glob("GRANULE/*/IMG_DATA/**/*.jp2")]
        granules = {Path(p).relative_to(path).parts[1] for p in images}
        _check_granules(granules, path)
        files = band_files(images)
        _check_links(path, list(files.values()))
        return _scene_from(files, meta, bands, str(path), dn_offset)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            check_zip_infos(infos, str(path))
            names = [i.filename for i in infos]
            mtd_names = [n for n in names if _MTD_RE.search(n) and n.count("/") <= 1]
            if not mtd_names:
                raise RasterReadError(
                    f"{path} holds no MTD_MSIL1C.xml/MTD_MSIL2A.xml: it is not a zipped "
                    "Sentinel-2 SAFE product"
                )
            with archive.open(mtd_names[0]) as member:
                xml = member.read(MAX_MTD_BYTES + 1)
            meta = parse_safe_metadata(xml, str(path))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as err:
        raise RasterReadError(
            f"{path} is not a readable zip archive ({err}): re-download the product"
        ) from None
    images = [n for n in names if _IMG_RE.search(n)]
    _check_granules({n.split("GRANULE/", 1)[1].split("/", 1)[0] for n in images}, path)
    vsi = {b: f"/vsizip/{path.resolve()}/{n}" for b, n in band_files(images).items()}
    return _scene_from(vsi, meta, bands, str(path), dn_offset)


def _check_granules(granules: set[str], path: Path) -> None:
    if len(granules) > 1:
        raise RasterReadError(
            f"{path} holds {len(granules)} granules: s2sr reads single-tile products; "
            "process each granule's IMG_DATA folder separately"
        )
