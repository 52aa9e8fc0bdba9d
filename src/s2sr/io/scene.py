"""Opening Sentinel-2 scenes as a stack of named bands on one grid: the reader dispatcher.

:func:`open_scene` picks the reader by the kind of input: a SAFE product (folder or ``.zip``,
:mod:`s2sr.io.safe`), a folder of per-band files (:mod:`s2sr.io.bandfolder`) or a multi-band
raster (:mod:`s2sr.io.geotiff`). Each returns a :class:`Scene` (:mod:`s2sr.io.base`), whose
:class:`GeoMeta` says where the pixels are and how DN map to reflectance
(``reflectance = DN * gain + offset``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.io.bandfolder import band_files, band_folder_files, open_band_files
from s2sr.io.base import Scene
from s2sr.io.geotiff import open_geotiff
from s2sr.io.processing_baseline import check_dn_offset
from s2sr.io.safe import is_safe_folder, open_safe
from s2sr.io.stac import open_stac_item


def open_scene(
    path: str | os.PathLike[str],
    bands: Sequence[str] | None = None,
    band_names: Sequence[str] | None = None,
    dn_offset: float | None = None,
) -> Scene:
    """Open a Sentinel-2 scene in any supported layout.

    Args:
        path: a multi-band GeoTIFF/COG, a folder of per-band files (also a granule folder or
            its ``IMG_DATA``), a ``.SAFE`` folder or its ``.zip``, or a STAC Item ``.json``
            (:mod:`s2sr.io.stac`).
        bands: bands to read, in order (e.g. a model's bands); ``None`` for all.
        band_names: for a multi-band file, ``--bands``: selects among the file's band
            descriptions, or names its bands by position when it has none.
        dn_offset: additive DN offset (``--offset``; -1000 for processing baseline >= 04.00),
            overriding what the product metadata, name or tags say. ``None``: detect it.

    Returns:
        An open :class:`Scene`.
    """
    check_dn_offset(dn_offset)
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"input {p} does not exist: check the path")
    if band_names is not None and (p.is_dir() or p.suffix.lower() in (".zip", ".json")):
        raise UsageError("--bands applies to multi-band files only; per-band files are named")
    if p.suffix.lower() == ".json":
        return open_stac_item(p, bands, dn_offset=dn_offset)
    if p.suffix.lower() == ".zip" or is_safe_folder(p):
        return open_safe(p, bands, dn_offset=dn_offset)
    if p.is_dir():
        files = band_files(band_folder_files(p))
        return open_band_files(files, bands, str(p), dn_offset=dn_offset)
    return open_geotiff(str(p), bands, band_names, dn_offset=dn_offset)
