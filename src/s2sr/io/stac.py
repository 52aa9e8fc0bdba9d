"""STAC Items as Sentinel-2 scenes.

A STAC Item (a GeoJSON ``Feature`` with ``assets``) names one file per band; s2sr picks the
assets of the bands a model needs by the Sentinel-2 band names or the ``eo:bands`` (STAC
1.0) / ``bands`` (1.1) names and common names (``blue`` -> B02, ``nir`` -> B08), and opens
them with the per-band reader (:func:`s2sr.io.bandfolder.open_band_files`): no VRT is made.

The document is read and checked, and its hrefs resolved, by :mod:`s2sr.io.stac_document`
(what is bounded, which hrefs are read). Remote access is switched on
(:func:`s2sr.io.remote.remote_env`) only around the opens and reads of remote assets, with
the driver fixed by the suffix (so a remote file cannot turn out to be a VRT that reads
elsewhere) and no directory listing (no side-car files fetched).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from s2sr.core.bands import normalize_band_name, parse_baseline
from s2sr.core.errors import BandError, InputNotFoundError, StacError, UsageError
from s2sr.core.safe_text import printable
from s2sr.io.bandfolder import open_band_files
from s2sr.io.base import Scene
from s2sr.io.remote import is_url, open_remote, remote_env
from s2sr.io.stac_document import (
    MAX_ID,
    item_base,
    read_json_bounded,
    resolve_href,
    stac_items,
)

#: Reflectance that ``raster:bands`` may make of integer DN 10000 (Sentinel-2: 1, or 0.9
#: with the -1000 DN offset of baseline 04.00 and later).
PLAUSIBLE_DN10000: Final[tuple[float, float]] = (0.2, 5.0)


def _asset_band(key: str, asset: dict[str, Any]) -> str | None:
    """The Sentinel-2 band a single-band asset holds, or ``None``."""
    listed = asset.get("eo:bands", asset.get("bands"))
    if isinstance(listed, list):
        if len(listed) != 1 or not isinstance(listed[0], dict):
            return None  # multi-band (TCI, visual) or malformed: not one band
        for field in ("name", "common_name"):
            value = listed[0].get(field)
            if isinstance(value, str) and len(value) <= 64:
                band = normalize_band_name(value)
                if band is not None:
                    return band
    return normalize_band_name(key) if len(key) <= 64 else None


def _rank(asset: dict[str, Any]) -> int:
    media = str(asset.get("type", ""))[:100].lower()
    return 0 if "tiff" in media else 1 if "jp2" in media else 2


def _band_assets(item: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Band -> (asset key, asset) of every Sentinel-2 band asset (GeoTIFF before JP2)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict) or not isinstance(key, str):
            continue
        roles = asset.get("roles")
        if isinstance(roles, list) and any(r in ("thumbnail", "overview") for r in roles):
            continue
        band = _asset_band(key, asset)
        if band is None:
            continue
        if band not in found or _rank(asset) < _rank(found[band][1]):
            found[band] = (key, asset)
    return found


def item_band_files(path: str | os.PathLike[str]) -> list[str]:
    """The files (local paths or http(s) URLs) an Item file's band assets name: what
    reading it may read (for the completion record of its output). Hrefs s2sr would refuse
    are left out (opening the item refuses them).

    Raises:
        S2SRError: the file is no readable STAC Item.
    """
    source = str(path)
    items = stac_items(read_json_bounded(source), source)
    if len(items) != 1:
        return []
    item = items[0]
    base = item_base(item, source)
    out = []
    for band, (_key, asset) in sorted(_band_assets(item).items()):
        try:
            out.append(resolve_href(asset.get("href"), base, band))
        except StacError:
            continue
    return out


def select_assets(item: dict[str, Any], bands: Sequence[str], where: str
                  ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Band -> (asset key, asset) for ``bands`` (GeoTIFF assets preferred over JP2).

    Raises:
        BandError: a band without an asset, naming the bands the item has.
    """
    found = _band_assets(item)
    missing = [b for b in bands if b not in found]
    if missing:
        have = ", ".join(sorted(found)) or "no Sentinel-2 band assets"
        raise BandError(f"{where} lacks asset(s) for {', '.join(missing)} (it has {have}): "
                        f"choose items with {', '.join(bands)}")
    return {b: found[b] for b in bands}


def _raster_band(asset: dict[str, Any]) -> dict[str, Any]:
    value = asset.get("raster:bands")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return value[0]
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and \
            abs(float(value)) < 1e12 and float(value) == float(value):
        return float(value)
    return None


def check_raster_bands(gains: dict[str, float], offsets: dict[str, float], where: str
                       ) -> None:
    """Refuse ``raster:bands`` scales/offsets no Sentinel-2 item has: bands of one product
    share one quantification (scale) and one offset, so a band whose scale or offset differs
    from the others' would be read on another scale than its neighbours (and the network,
    which mixes the bands, would spread the error into every band).

    Raises:
        StacError: naming the bands and their values.
    """
    for what, values, tolerance in (("scale", gains, 1e-6), ("offset", offsets, 1e-6)):
        low, high = min(values.values()), max(values.values())
        if high - low > tolerance * max(abs(high), abs(low), 1e-12) and high - low > 1e-9:
            listed = ", ".join(f"{b} {v:g}" for b, v in values.items())
            raise StacError(f"{where}: raster:bands give the bands different {what}s "
                            f"({listed}), which no Sentinel-2 product has: fix the item's "
                            "raster:bands, or pass --offset to ignore them")
    if any(abs(v) > 1.0 for v in offsets.values()):
        listed = ", ".join(f"{b} {v:g}" for b, v in offsets.items())
        raise StacError(f"{where}: raster:bands offsets ({listed}) exceed 1 reflectance: fix "
                        "the item's raster:bands, or pass --offset to ignore them")


def open_stac_item(path: str | os.PathLike[str], bands: Sequence[str] | None = None,
                   dn_offset: float | None = None) -> Scene:
    """Open the bands of a STAC Item JSON file (or an ItemCollection of one item).

    Relative hrefs are resolved against the file's folder. Radiometry: the assets'
    ``raster:bands`` scale/offset when every asset has them, otherwise as for a per-band
    folder, with the item's ``s2:processing_baseline`` telling the DN offset.

    Args:
        path: the JSON file. bands: bands to read, in order (default B02, B03, B04, B08).
        dn_offset: the additive DN offset, overriding what the item says.
    """
    source = str(path)
    items = stac_items(read_json_bounded(source), source)
    if len(items) != 1:
        raise UsageError(f"{source} holds {len(items)} STAC items: pass it with -o FOLDER "
                         "to super-resolve each item into its own output")
    item = items[0]
    wanted = list(bands) if bands is not None else ["B02", "B03", "B04", "B08"]
    where = f"STAC item {item['id'][:80]} in {source}"
    chosen = select_assets(item, wanted, where)
    files = _asset_files(chosen, item_base(item, source), where)
    props = item.get("properties") or {}
    tags, bad_baseline = _item_tags(item, props, where)
    gains, offsets, nodata = _raster_radiometry(chosen, props, dn_offset, where)
    if bad_baseline and gains is None and dn_offset is None:  # it would decide the offset
        raise StacError(f"{bad_baseline}: correct the item (e.g. \"05.09\") or, with s2sr "
                        "predict, pass --offset -1000 (baseline 04.00 or later) or --offset 0")
    remote = any(f.startswith("/vsicurl/") for f in files.values())
    scene = open_band_files(files, wanted, source, gains=gains, offsets=offsets,
                            nodata=nodata, tags=tags, dn_offset=dn_offset, opener=open_remote)
    if gains is not None and np.issubdtype(np.dtype(scene.meta.dtype), np.integer):
        top = max(scene.meta.gains) * 10_000 + max(scene.meta.offsets)
        if not PLAUSIBLE_DN10000[0] <= top <= PLAUSIBLE_DN10000[1]:
            scene.close()
            raise StacError(
                f"{where}: raster:bands scale {max(scene.meta.gains):g} and offset "
                f"{max(scene.meta.offsets):g} make DN 10000 a reflectance of {top:g}, not a "
                "Sentinel-2 one (about 1): fix the item's raster:bands, or pass --offset to "
                "ignore them")
    if remote:
        scene.env = remote_env
    return scene


def _asset_files(chosen: dict[str, tuple[str, dict[str, Any]]], base: str, where: str
                 ) -> dict[str, str]:
    """Band -> the file GDAL opens (``/vsicurl/`` URL or local path) of each chosen asset.

    Raises:
        StacError: an href s2sr does not read. InputNotFoundError: a local asset is missing.
    """
    files: dict[str, str] = {}
    for band, (key, asset) in chosen.items():
        href = resolve_href(asset.get("href"), base, f"{where}, asset {key[:40]}")
        files[band] = f"/vsicurl/{href}" if is_url(href) else href
        if not is_url(href) and not Path(href).is_file():
            raise InputNotFoundError(f"{where}: asset {key[:40]} ({href[:200]}) does not "
                                     "exist: check the item's hrefs")
    return files


def _item_tags(item: dict[str, Any], props: dict[str, Any], where: str
               ) -> tuple[dict[str, str], str | None]:
    """The scene's tags (item id, processing baseline, date), and what is wrong with the
    item's ``s2:processing_baseline`` if it cannot be read (None when it can)."""
    tags: dict[str, str] = {"S2_STAC_ITEM": item["id"][:MAX_ID]}
    bad_baseline = None
    try:  # one parser for every source (s2sr.core.bands.parse_baseline): "05.09", 5.09, "N0509"
        baseline = parse_baseline(props.get("s2:processing_baseline"))
    except ValueError as err:
        baseline = None
        bad_baseline = (f"{where}: s2:processing_baseline "
                        f"{printable(repr(props.get('s2:processing_baseline')), 40)} {err}")
    if baseline:
        tags["PROCESSING_BASELINE"] = baseline
    date = props.get("datetime")
    if isinstance(date, str) and re.match(r"^\d{4}-\d{2}-\d{2}", date):
        tags["ACQUISITION_DATE"] = date[:10]
    return tags, bad_baseline


def _raster_radiometry(chosen: dict[str, tuple[str, dict[str, Any]]], props: dict[str, Any],
                       dn_offset: float | None, where: str
                       ) -> tuple[dict[str, float] | None, dict[str, float] | None,
                                  float | None]:
    """(gains, offsets, nodata) from the assets' ``raster:bands``: gains and offsets only
    when every asset has a positive scale and no ``dn_offset`` overrides them (checked by
    :func:`check_raster_bands`); nodata when the assets agree, else 0 for Sentinel-2."""
    rb = {b: _raster_band(a) for b, (_, a) in chosen.items()}
    gains: dict[str, float] | None = None
    offsets: dict[str, float] | None = None
    scales = {b: _number(r.get("scale")) for b, r in rb.items()}
    if dn_offset is None and all(v is not None and v > 0 for v in scales.values()):
        gains = {b: float(v) for b, v in scales.items() if v is not None}
        offsets = {b: _number(r.get("offset")) or 0.0 for b, r in rb.items()}
        check_raster_bands(gains, offsets, where)
    nodatas = {_number(r.get("nodata")) for r in rb.values()}
    nodata = nodatas.pop() if len(nodatas) == 1 else None
    platform = str(props.get("platform", props.get("constellation", "")))[:40].lower()
    if nodata is None and platform.startswith("sentinel-2"):
        nodata = 0.0  # DN 0 marks missing data in every Sentinel-2 product
    return gains, offsets, nodata
