"""Folders of single-band files (``*_B02.tif``, ``*_B03_10m.jp2``...) as a :class:`Scene`:
a per-band folder, a granule folder or its ``IMG_DATA``, and the bands of a SAFE product.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from s2sr.core.bands import normalize_band_name
from s2sr.core.dn import gdal_gains
from s2sr.core.errors import BandError, DataError
from s2sr.io.base import BandRef, Scene, build_scene
from s2sr.io.gdal_safety import open_raster
from s2sr.io.processing_baseline import apply_offsets, record_offsets

_BAND_FILE_RE = re.compile(r"(?:^|_)(B\d{2}|B8A)(?:_10m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)
#: The same for the 20 m files (``*_B05.tif``, an L2A product's ``*_B05_20m.jp2``).
_BAND_FILE_20M_RE = re.compile(r"(?:^|_)(B\d{2}|B8A)(?:_20m)?\.(?:tif|tiff|jp2)$",
                               re.IGNORECASE)
#: Band files named as in Sentinel-2 products (``T33UUB_20230601T102031_B02_10m.jp2``, or the
#: older ``S2A_OPER_MSI_L1C_TL_..._B02.jp2``).
_S2_PRODUCT_FILE_RE = re.compile(
    r"^(?:T\d{2}[A-Z]{3}_\d{8}T\d{6}_|S2[A-D]_OPER_MSI_L1C_TL_\w+_)(?:B\d{2}|B8A)(?:_\d{2}m)?\.jp2$",
    re.IGNORECASE)
#: BigEarthNet patch bands (``S2A_MSIL2A_20170613T101031_87_48_B02.tif``): GeoTIFF cuts of
#: L2A products, without a declared nodata, where DN 0 is the product's "no data".
_BIGEARTHNET_FILE_RE = re.compile(
    r"^S2[AB]_MSIL2A_\d{8}T\d{5,6}_\d{1,3}_\d{1,3}_(?:B\d{2}|B8A)\.tif$", re.IGNORECASE)
#: Tags of band files that say the baseline, the offset or the date.
FILE_BASELINE_TAGS = ("S2_DN_OFFSET", "S2_DN_OFFSET_SOURCE", "S2_PROCESSING_BASELINE",
                      "PROCESSING_BASELINE", "ACQUISITION_DATE", "S2_START_TIME",
                      "PRODUCT_START_TIME", "DATATAKE_1_DATATAKE_SENSING_START")


def band_files(names: Sequence[str], resolution: int = 10) -> dict[str, str]:
    """Map band name -> file name for names like ``*_B02.tif`` or ``*_B02_10m.jp2``
    (``resolution`` 20: ``*_B05.tif`` or ``*_B05_20m.jp2``, an L2A product's 20 m files).

    Raises:
        BandError: two files name the same band (one of them would be read in silence).
    """
    pattern = _BAND_FILE_20M_RE if resolution == 20 else _BAND_FILE_RE
    found: dict[str, str] = {}
    for name in sorted(names):
        match = pattern.search(os.path.basename(name))
        if match:
            band = normalize_band_name(match.group(1))
            if band is None:
                continue
            if band in found:
                raise BandError(f"two files hold band {band}: {found[band]} and {name}: keep "
                                "one of them in the folder")
            found[band] = name
    return found


def is_s2_product_band(path: str) -> bool:
    """Whether a file is recognisably a band file of a Sentinel-2 product (named as in the
    product, inside a granule's ``IMG_DATA`` folder, or a BigEarthNet patch band cut from an
    L2A product), where DN 0 marks missing pixels."""
    parts = path.replace("\\", "/").split("/")
    return bool(_S2_PRODUCT_FILE_RE.match(parts[-1]) or _BIGEARTHNET_FILE_RE.match(parts[-1])) \
        or "IMG_DATA" in parts[:-1]


def open_band_files(
    files: dict[str, str], bands: Sequence[str] | None, source: str,
    gains: dict[str, float] | None = None, offsets: dict[str, float] | None = None,
    nodata: float | None = None, tags: dict[str, str] | None = None,
    dn_offset: float | None = None, opener: Callable[[str, str], Any] | None = None,
) -> Scene:
    """Open one single-band file per band (a per-band folder or a SAFE product).

    ``gains``/``offsets`` (reflectance per DN, reflectance of DN 0) come from a product's
    metadata; without them they come from the files' GDAL scale/offset or the detected
    processing baseline (``dn_offset`` overrides it). Files that are recognisably Sentinel-2
    product bands get nodata 0 when they declare none (JPEG 2000 never does).
    ``opener(path, source)`` opens one file (default: :func:`open_raster`, local files only;
    :mod:`s2sr.io.stac` passes its own for the remote assets of a STAC item).
    """
    if not files:
        raise BandError(
            f"{source} holds no per-band files (*_B02.tif, *_B03.jp2, ...): point s2sr at a "
            "multi-band GeoTIFF, a folder of per-band files or a SAFE product"
        )
    wanted = list(bands) if bands is not None else sorted(files)
    owned: list[Any] = []
    tags = dict(tags or {})
    try:
        refs = _open_band_refs(files, wanted, source, opener, owned)
        if gains is None:
            g, o = _file_radiometry(refs, wanted, source, tags, dn_offset)
        else:
            offsets = offsets or {}
            g = [gains[b] for b in wanted]
            o = [offsets.get(b, 0.0) for b in wanted]
            if "S2_DN_OFFSET" not in tags:  # a STAC item's raster:bands
                record_offsets(tags, wanted, [oo / gg for oo, gg in zip(o, g, strict=True)],
                               "read from the STAC item's raster:bands scale/offset")
        if nodata is None:
            nodata = refs[0].dataset.nodata
        if nodata is None and all(is_s2_product_band(r.path) for r in refs):
            nodata = 0  # DN 0 marks missing data in every Sentinel-2 product (and its cuts)
        return build_scene(refs, wanted, source, owned, g, o, nodata, tags)
    except Exception:
        for dataset in owned:
            dataset.close()
        raise


def _open_band_refs(files: dict[str, str], wanted: list[str], source: str,
                    opener: Callable[[str, str], Any] | None, owned: list[Any]
                    ) -> list[BandRef]:
    """Open the file of each wanted band (appending each open dataset to ``owned``, which
    the caller closes on failure).

    Raises:
        DataError: a file with more than one band. BandError: a wanted band has no file.
    """
    available = {}
    for band, path in {b: files[b] for b in wanted if b in files}.items():
        dataset = opener(path, source) if opener else open_raster(path, product=source)
        owned.append(dataset)
        if dataset.count != 1:
            raise DataError(f"{path} in {source} has {dataset.count} bands: a per-band file "
                            "holds one band; pass a multi-band file as the scene itself")
        available[band] = BandRef(path, 1, dataset)
    missing = [b for b in wanted if b not in files]
    if missing:
        raise BandError(
            f"{source} lacks band(s) {', '.join(missing)} (it has {', '.join(sorted(files))}): "
            f"supply a scene with {', '.join(wanted)}"
        )
    return [available[b] for b in wanted]


def _file_radiometry(refs: list[BandRef], wanted: list[str], source: str,
                     tags: dict[str, str], dn_offset: float | None
                     ) -> tuple[list[float], list[float]]:
    """Gains and offsets from the files' GDAL scale/offset or the processing baseline (its
    tags taken from the band files into ``tags``)."""
    g, o = [], []
    explicit = False
    for ref in refs:
        gg, oo, ex = gdal_gains(ref.dataset, [1], ref.path)
        g.append(gg[0])
        o.append(oo[0])
        explicit = explicit or ex
    s2_files = all(is_s2_product_band(r.path) or r.path.lower().endswith(".jp2")
                   for r in refs)
    for ref in refs:  # baseline/date tags of the band files (gdal_edit.py -mo ...)
        file_tags = ref.dataset.tags()
        tags.update({k: v for k, v in file_tags.items()
                     if k in FILE_BASELINE_TAGS and k not in tags})
    return apply_offsets(wanted, g, o, explicit, refs[0].dataset.dtypes[0], dn_offset,
                         source, tags, s2_files)


def band_folder_files(folder: Path, resolution: int = 10) -> list[str]:
    """Files of a per-band folder; for a granule folder (``GRANULE/L2A_T.../``) or its
    ``IMG_DATA`` the bands in ``IMG_DATA/`` and ``IMG_DATA/R10m/`` (L2A) are found too
    (``resolution`` 20: ``R20m/`` instead of ``R10m/``)."""
    found: list[str] = []
    res = "R20m" if resolution == 20 else "R10m"
    for sub in (folder, folder / "IMG_DATA", folder / "IMG_DATA" / res, folder / res):
        if sub.is_dir():
            found += [str(f) for f in sub.iterdir() if f.is_file()]
    return found
