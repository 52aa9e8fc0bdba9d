"""Sentinel-2 L1C/L2A SAFE products, as folders or ``.zip`` archives.

The product metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) gives the processing
baseline, the quantification value and, from baseline 04.00 on, the per-band additive
offset (``RADIO_ADD_OFFSET`` for L1C, ``BOA_ADD_OFFSET`` for L2A). With them,
``reflectance = (DN + offset) / quantification``. Archives are read in place through
GDAL's ``/vsizip/`` without extracting; entries that would escape the archive's folder
(absolute paths, ``..``) are refused.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from s2sr.bands import BASELINE_04_OFFSET, QUANTIFICATION_VALUE, SAFE_BAND_IDS
from s2sr.errors import RasterReadError, UnsafeArchiveError
from s2sr.io.scene import Scene, band_files, open_band_files

log = logging.getLogger(__name__)

_MTD_RE = re.compile(r"(?:^|/)MTD_MSIL(1C|2A)\.xml$")
_IMG_RE = re.compile(r"GRANULE/[^/]+/IMG_DATA/(?:R10m/)?[^/]+\.jp2$")


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


def parse_safe_metadata(xml: bytes, source: str) -> SafeMetadata:
    """Read level, baseline, quantification and offsets from MTD XML bytes."""
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
            start = text
        elif name in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and quant is None:
            quant = float(text)
        elif name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            raw_offsets[int(el.attrib["band_id"])] = float(text)
        elif name == "Spectral_Information" and "physicalBand" in el.attrib:
            physical = el.attrib["physicalBand"].upper().replace("B8A", "B8A")
            number = physical[1:]
            band_by_id[int(el.attrib["bandId"])] = (
                "B8A" if number == "8A" else f"B{int(number):02d}"
            )
    offsets = {band_by_id[i]: v for i, v in raw_offsets.items() if i in band_by_id}
    try:
        new_baseline = float(baseline) >= 4.0
    except ValueError:
        new_baseline = False
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


def _scene_from(
    files: dict[str, str], meta: SafeMetadata, bands: Sequence[str] | None, source: str
) -> Scene:
    gains = {b: 1.0 / meta.quantification for b in files}
    offsets = {b: meta.offsets.get(b, 0.0) / meta.quantification for b in files}
    tags = {
        "S2_PROCESSING_LEVEL": meta.level,
        "S2_PROCESSING_BASELINE": meta.baseline,
        "S2_DN_OFFSET": ",".join(f"{b}:{meta.offsets.get(b, 0.0):g}" for b in sorted(files)),
    }
    if meta.start_time:
        tags["S2_START_TIME"] = meta.start_time
    # DN 0 marks missing data in every Sentinel-2 product.
    return open_band_files(files, bands, source, gains, offsets, nodata=0, tags=tags)


def open_safe(path: Path, bands: Sequence[str] | None) -> Scene:
    """Open a SAFE folder or its ``.zip`` as a :class:`Scene` of its 10 m bands."""
    if path.is_dir():
        mtd = sorted(path.glob("MTD_MSIL*.xml"))
        meta = parse_safe_metadata(mtd[0].read_bytes(), str(path))
        images = [str(p) for p in path.glob("GRANULE/*/IMG_DATA/**/*.jp2")]
        granules = {Path(p).relative_to(path).parts[1] for p in images}
        _check_granules(granules, path)
        return _scene_from(band_files(images), meta, bands, str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            check_zip_entries(names, str(path))
            mtd_names = [n for n in names if _MTD_RE.search(n) and n.count("/") <= 1]
            if not mtd_names:
                raise RasterReadError(
                    f"{path} holds no MTD_MSIL1C.xml/MTD_MSIL2A.xml: it is not a zipped "
                    "Sentinel-2 SAFE product"
                )
            meta = parse_safe_metadata(archive.read(mtd_names[0]), str(path))
    except zipfile.BadZipFile as err:
        raise RasterReadError(
            f"{path} is not a readable zip archive ({err}): re-download the product"
        ) from None
    images = [n for n in names if _IMG_RE.search(n)]
    _check_granules({n.split("GRANULE/", 1)[1].split("/", 1)[0] for n in images}, path)
    vsi = {b: f"/vsizip/{path.resolve()}/{n}" for b, n in band_files(images).items()}
    return _scene_from(vsi, meta, bands, str(path))


def _check_granules(granules: set[str], path: Path) -> None:
    if len(granules) > 1:
        raise RasterReadError(
            f"{path} holds {len(granules)} granules: s2sr reads single-tile products; "
            "process each granule's IMG_DATA folder separately"
        )
