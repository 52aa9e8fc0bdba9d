"""STAC JSON documents, bounded and checked: Items and ItemCollections, their ids, and
the hrefs s2sr reads (the scenes they make are :mod:`s2sr.io.stac`).

The JSON is untrusted: its size, nesting, number of items and assets and the length of
every string s2sr uses are bounded before anything else, and only these hrefs are read:

* local files (absolute, relative to the JSON's folder, or ``file://``) named ``.tif``,
  ``.tiff`` or ``.jp2``, opened exactly like the files of a product (driver by suffix);
* ``http(s)://`` URLs of such files, read through GDAL's ``/vsicurl/``.

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
from pathlib import Path
from typing import Any, Final

from s2sr.core.errors import InputNotFoundError, RasterReadError, StacError
from s2sr.io.base import short_error
from s2sr.io.gdal_safety import DRIVER_BY_SUFFIX
from s2sr.io.remote import is_url, open_url

#: Largest STAC JSON read (a day of Sentinel-2 over Europe is a few MB).
MAX_JSON_BYTES: Final[int] = 32 * 1024 * 1024
MAX_ITEMS: Final[int] = 10_000
MAX_ASSETS: Final[int] = 512
MAX_HREF: Final[int] = 2048
MAX_ID: Final[int] = 200
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


def item_base(item: dict[str, Any], source: str) -> str:
    """What an item's relative hrefs resolve against: the URL of the remote document it
    came from (:data:`ORIGIN_KEY`), else the folder of its file ``source``."""
    origin = item.get(ORIGIN_KEY)
    return origin if isinstance(origin, str) and is_url(origin) else \
        str(Path(source).resolve().parent)
