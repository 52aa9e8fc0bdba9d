"""STAC Items and ItemCollections as Sentinel-2 scenes.

A STAC Item (a GeoJSON ``Feature`` with ``assets``) names one file per band; s2sr picks the
assets of the bands a model needs by the Sentinel-2 band names or the ``eo:bands`` (STAC
1.0) / ``bands`` (1.1) names and common names (``blue`` -> B02, ``nir`` -> B08), and opens
them with the per-band reader (:func:`s2sr.io.bandfolder.open_band_files`): no VRT is made.

The JSON is untrusted: its size, nesting, number of items and assets and the length of
every string s2sr uses are bounded before anything else, and only these hrefs are read:

* local files (absolute, relative to the JSON's folder, or ``file://``) named ``.tif``,
  ``.tiff`` or ``.jp2``, opened exactly like the files of a product (driver by suffix);
* ``http(s)://`` URLs of such files, read through GDAL's ``/vsicurl/``. Remote access is
  switched on (:func:`remote_env`) only around the opens and reads of these assets, with
  the driver fixed by the suffix (so a remote file cannot turn out to be a VRT that reads
  elsewhere) and no directory listing (no side-car files fetched).

Other schemes (``s3://``, GDAL ``/vsi...`` paths, credentials in a URL) are refused, and
so is ``file://`` with a host. A document fetched over http(s) may reference http(s) assets
only (relative hrefs resolve against its URL and stay remote): a remote document never
makes s2sr read a local file. Its items, written out as local Item files, keep the
document's URL (:data:`ORIGIN_KEY`), so that rule holds when they are opened.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from s2sr.core.bands import normalize_band_name, parse_baseline
from s2sr.core.errors import (
    BandError,
    InputNotFoundError,
    RasterReadError,
    StacError,
    UsageError,
)
from s2sr.core.safe_text import printable
from s2sr.io.bandfolder import open_band_files
from s2sr.io.base import Scene, short_error
from s2sr.io.gdal_safety import DRIVER_BY_SUFFIX
from s2sr.io.remote import (  # noqa: F401  (remote_env, open_url: part of this module's API)
    REMOTE_GDAL_OPTIONS,
    URL_TIMEOUT,
    is_url,
    open_remote,
    open_url,
    remote_env,
)

#: Largest STAC JSON read (a day of Sentinel-2 over Europe is a few MB).
MAX_JSON_BYTES: Final[int] = 32 * 1024 * 1024
MAX_ITEMS: Final[int] = 10_000
MAX_ASSETS: Final[int] = 512
MAX_HREF: Final[int] = 2048
MAX_ID: Final[int] = 200
#: Reflectance that ``raster:bands`` may make of integer DN 10000 (Sentinel-2: 1, or 0.9
#: with the -1000 DN offset of baseline 04.00 and later).
PLAUSIBLE_DN10000: Final[tuple[float, float]] = (0.2, 5.0)
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
#: Key of an Item written out by s2sr holding the URL of the document it came from.
ORIGIN_KEY: Final[str] = "s2sr:document_url"




def read_json_bounded(source: str) -> Any:
    """Parse a STAC JSON from a local path or an http(s) URL, bounded in size and nesting.

    Raises:
        InputNotFoundError: no such file. StacError: too large, too deep, not JSON.
    """
    if is_url(source):
        _check_url(source, "STAC URL")
        try:
            with open_url(source) as response:
                data = response.read(MAX_JSON_BYTES + 1)
        except (OSError, ValueError) as err:
            raise RasterReadError(f"cannot fetch {source[:200]} ({short_error(err)}): check "
                                  "the URL and the network") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise InputNotFoundError(f"STAC file {source} does not exist: check the path")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise StacError(f"{source} is {path.stat().st_size} bytes, more than the "
                            f"{MAX_JSON_BYTES} s2sr reads: split the ItemCollection")
        try:  # bounded as the URL's read is, should the file grow after the stat
            with open(path, "rb") as handle:
                data = handle.read(MAX_JSON_BYTES + 1)
        except OSError as err:
            raise RasterReadError(f"cannot read {source} ({err.strerror or type(err).__name__})"
                                  ": check its permissions") from None
    if len(data) > MAX_JSON_BYTES:
        raise StacError(f"{source[:200]} is more than {MAX_JSON_BYTES} bytes: split the "
                        "ItemCollection")
    try:
        return json.loads(data)
    except RecursionError:
        raise StacError(f"{source[:200]} is nested too deeply to be a STAC document: "
                        "refusing it") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise StacError(f"{source[:200]} is not valid JSON ({short_error(err)}): give a "
                        "STAC Item or ItemCollection") from None


def stac_items(doc: Any, source: str) -> list[dict[str, Any]]:
    """The Items of a STAC Item or ItemCollection (checked: ids, assets).

    Raises:
        StacError: not a STAC Item/ItemCollection, too many items, or a malformed item.
    """
    if not isinstance(doc, dict):
        raise StacError(f"{source[:200]} is not a STAC Item or ItemCollection (a JSON "
                        "object with type Feature or FeatureCollection)")
    kind = doc.get("type")
    if kind == "Feature":
        features: Any = [doc]
    elif kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise StacError(f"{source[:200]}: an ItemCollection needs a list of features")
        if len(features) > MAX_ITEMS:
            raise StacError(f"{source[:200]} holds {len(features)} items, more than "
                            f"{MAX_ITEMS}: split it")
    else:
        raise StacError(f"{source[:200]} has type {str(kind)[:40]!r}, not a STAC Item "
                        "(Feature) or ItemCollection (FeatureCollection)")
    items = []
    for k, item in enumerate(features):
        items.append(_check_item(item, f"{source[:200]} item {k}"))
    return items


def _check_item(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise StacError(f"{where} is not a STAC Item (type Feature)")
    ident = item.get("id")
    if not isinstance(ident, str) or not ident.strip() or len(ident) > MAX_ID:
        raise StacError(f"{where} has no usable id (a string of 1 to {MAX_ID} characters)")
    assets = item.get("assets")
    if not isinstance(assets, dict) or not assets:
        raise StacError(f"{where} ({ident}) has no assets")
    if len(assets) > MAX_ASSETS:
        raise StacError(f"{where} ({ident}) has {len(assets)} assets, more than {MAX_ASSETS}")
    props = item.get("properties")
    if props is not None and not isinstance(props, dict):
        raise StacError(f"{where} ({ident}): properties is not an object")
    return item


def safe_stem(item_id: str) -> str:
    """An item id as a file name stem (characters other than ``A-Za-z0-9._-`` -> ``_``)."""
    stem = _UNSAFE_ID.sub("_", item_id).strip("._") or "item"
    return stem[:MAX_ID]


def _check_url(url: str, what: str) -> None:
    if len(url) > MAX_HREF or any(ord(c) < 32 for c in url):
        raise StacError(f"{what} {url[:80]!r}... is longer than {MAX_HREF} characters or "
                        "holds control characters: refusing it")
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        raise StacError(f"{what} {url[:120]!r} holds credentials: s2sr sends none; use a "
                        "public or pre-signed URL")
    if not parts.hostname:
        raise StacError(f"{what} {url[:120]!r} has no host")


def resolve_href(href: Any, base: str, where: str) -> str:
    """An asset's href as a local path or an http(s) URL (relative ones against ``base``,
    the JSON's URL or folder).

    Raises:
        StacError: not a string, too long, a scheme other than file/http(s), a GDAL virtual
            path, credentials, ``file://`` with a host, anything but an http(s) URL when
            ``base`` is one (a remote document), or a suffix other than .tif/.tiff/.jp2.
    """
    if not isinstance(href, str) or not href.strip():
        raise StacError(f"{where}: the href is not a non-empty string")
    href = href.strip()
    if len(href) > MAX_HREF or any(ord(c) < 32 for c in href):
        raise StacError(f"{where}: href {href[:80]!r}... is longer than {MAX_HREF} "
                        "characters or holds control characters: refusing it")
    if href.lower().startswith("/vsi"):
        raise StacError(f"{where}: href {href[:120]!r} is a GDAL virtual path: give a file "
                        "path or an http(s) URL")
    remote = is_url(base)
    if href.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(href)
        if parts.netloc:
            raise StacError(f"{where}: href {href[:120]!r} names the host {parts.netloc[:60]!r}:"
                            " s2sr reads local files only (file:///path); copy the asset here")
        if remote:
            raise StacError(f"{where}: a STAC document fetched over http(s) may reference "
                            f"http(s) assets only, not the local file {href[:80]!r}: download "
                            "the item to use local files")
        resolved = urllib.parse.unquote(parts.path)
        if not os.path.isabs(resolved):
            raise StacError(f"{where}: href {href[:120]!r} is not an absolute file URL: "
                            "write file:///absolute/path or a path relative to the JSON")
    elif is_url(href):
        _check_url(href, f"{where}: href")
        resolved = href
    elif _SCHEME_RE.match(href) and not re.match(r"^[A-Za-z]:[\\/]", href):
        raise StacError(f"{where}: href {href[:120]!r} uses a scheme s2sr does not read "
                        "(only local files and http(s) URLs): download the asset first")
    elif remote:
        resolved = urllib.parse.urljoin(base, href)
        if not is_url(resolved):
            raise StacError(f"{where}: a STAC document fetched over http(s) may reference "
                            f"http(s) assets only, not {href[:80]!r}: download the item to "
                            "use local files")
        _check_url(resolved, f"{where}: href")
    else:
        resolved = str(Path(base) / href) if not os.path.isabs(href) else href
    path_part = urllib.parse.urlsplit(resolved).path if is_url(resolved) else resolved
    if os.path.splitext(path_part)[1].lower() not in DRIVER_BY_SUFFIX:
        raise StacError(f"{where}: href {resolved[:120]!r} is not a .tif/.tiff/.jp2 file")
    return resolved


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
    origin = item.get(ORIGIN_KEY)
    base = origin if isinstance(origin, str) and is_url(origin) else \
        str(Path(source).resolve().parent)
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
    origin = item.get(ORIGIN_KEY)
    base = origin if isinstance(origin, str) and is_url(origin) else \
        str(Path(source).resolve().parent)
    files: dict[str, str] = {}
    for band, (key, asset) in chosen.items():
        href = resolve_href(asset.get("href"), base, f"{where}, asset {key[:40]}")
        files[band] = f"/vsicurl/{href}" if is_url(href) else href
        if not is_url(href) and not Path(href).is_file():
            raise InputNotFoundError(f"{where}: asset {key[:40]} ({href[:200]}) does not "
                                     "exist: check the item's hrefs")
    props = item.get("properties") or {}
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


def item_with_absolute_hrefs(item: dict[str, Any], base: str) -> dict[str, Any]:
    """A copy of ``item`` whose asset hrefs are absolute (resolved against ``base``);
    hrefs that cannot be used are kept as they are (opening the item then says why). When
    ``base`` is a URL (a remote document) the copy names it under :data:`ORIGIN_KEY`, so
    that it is opened under the rules of a remote document wherever it is written."""
    assets: dict[str, Any] = {}
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict):
            continue
        try:
            href = resolve_href(asset.get("href"), base, "")
        except StacError:
            assets[key] = asset
            continue
        assets[key] = {**asset, "href": href if is_url(href) else str(Path(href).resolve())}
    copy = {**item, "assets": assets}
    if is_url(base):
        copy[ORIGIN_KEY] = base
    return copy
