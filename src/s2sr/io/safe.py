"""Sentinel-2 L1C/L2A SAFE products, as folders or ``.zip`` archives, as a :class:`Scene`.

The product metadata (:mod:`s2sr.io.safe_metadata`) gives the processing baseline, the
quantification value and the per-band DN offsets; the 10 m band files are then opened as a
band folder (:mod:`s2sr.io.bandfolder`). Archives are read in place through GDAL's
``/vsizip/`` without extracting, once their central directory has passed
:mod:`s2sr.io.archive`'s checks; links leading out of a product folder are refused.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from s2sr.core.errors import DataError, RasterReadError, UnsafeArchiveError
from s2sr.io.archive import check_zip_infos
from s2sr.io.bandfolder import band_files, open_band_files
from s2sr.io.base import Scene
from s2sr.io.processing_baseline import OFFSET_FIX, record_offsets, warn_unknown
from s2sr.io.safe_metadata import MAX_MTD_BYTES, SafeMetadata, parse_safe_metadata

_MTD_RE = re.compile(r"(?:^|/)MTD_MSIL(1C|2A)\.xml$")
_IMG_RE = re.compile(r"GRANULE/[^/]+/IMG_DATA/(?:R10m/|R20m/)?[^/]+\.jp2$")


def is_safe_folder(path: Path) -> bool:
    """Whether ``path`` is an unzipped SAFE product (a folder with an MTD_MSIL*.xml)."""
    return path.is_dir() and any(path.glob("MTD_MSIL*.xml"))


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
    tags = {"S2_PROCESSING_LEVEL": meta.level, "S2_PROCESSING_BASELINE": meta.baseline}
    if meta.start_time:
        tags["S2_START_TIME"] = meta.start_time
    if dn_offset is not None:
        how = "given (--offset / dn_offset)"
    elif meta.offsets:
        how = "read from the product metadata"
    elif meta.baseline_error:
        raise DataError(f"{source}: product metadata {meta.baseline_error} and gives no DN "
                        f"offsets, so the offset is unknown: {OFFSET_FIX}")
    elif meta.baseline != "unknown":
        how = f"read from the product metadata (baseline {meta.baseline})"
    else:
        how = "assumed: the product metadata states no baseline"
        warn_unknown(source, tags, s2_files=True)
    record_offsets(tags, sorted(files), [dn[b] for b in sorted(files)], how)
    # DN 0 marks missing data in every Sentinel-2 product.
    return open_band_files(files, bands, source, gains, offsets, nodata=0, tags=tags)


def open_safe(path: Path, bands: Sequence[str] | None, dn_offset: float | None = None,
              resolution: int = 10) -> Scene:
    """Open a SAFE folder or its ``.zip`` as a :class:`Scene` of its 10 m bands (of its
    20 m bands with ``resolution`` 20: an L2A product's ``R20m``, an L1C product's B05...).

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
        files = band_files(images, resolution)
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
    vsi = {b: f"/vsizip/{path.resolve()}/{n}"
           for b, n in band_files(images, resolution).items()}
    return _scene_from(vsi, meta, bands, str(path), dn_offset)


def _check_granules(granules: set[str], path: Path) -> None:
    if len(granules) > 1:
        raise RasterReadError(
            f"{path} holds {len(granules)} granules: s2sr reads single-tile products; "
            "process each granule's IMG_DATA folder separately"
        )
