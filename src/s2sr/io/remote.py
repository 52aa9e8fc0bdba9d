"""Remote raster assets (http(s) URLs) and documents, read under narrow rules.

GDAL's ``/vsicurl/`` is switched on (:func:`remote_env`) only around the opens and reads of
the assets a STAC item names, with the driver fixed by the file suffix (a remote file
cannot turn out to be a VRT that reads elsewhere) and no directory listing (no side-car
files fetched). Documents and fingerprints are fetched with :func:`open_url`, which
follows redirects to http(s) URLs only.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
import warnings
from typing import Any, Final

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from s2sr.core.errors import DataError, RasterReadError
from s2sr.io.base import short_error
from s2sr.io.gdal_safety import DRIVER_BY_SUFFIX, SAFE_GDAL_OPTIONS, check_size, open_raster

#: Seconds to wait for a STAC JSON URL.
URL_TIMEOUT: Final[float] = 60.0

#: GDAL options while reading the remote assets of a STAC item: the safe options, with
#: ``/vsicurl/`` allowed for raster files only and no directory listing.
REMOTE_GDAL_OPTIONS: Final[dict[str, str]] = {
    **SAFE_GDAL_OPTIONS,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.jp2,.TIF,.TIFF,.JP2",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "2",
    "GDAL_HTTP_TIMEOUT": "60",
}

_URL_RE = re.compile(r"^https?://", re.IGNORECASE)


def remote_env() -> Any:
    """A :class:`rasterio.Env` with :data:`REMOTE_GDAL_OPTIONS` (see the module's text)."""
    return rasterio.Env(**REMOTE_GDAL_OPTIONS)


def is_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL."""
    return bool(_URL_RE.match(text))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (urllib would follow one to ``ftp://``)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if not is_url(newurl):
            raise DataError(f"{req.full_url[:120]} redirects to {newurl[:120]!r}, not an "
                            "http(s) URL: refusing to follow it")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(url: str | urllib.request.Request) -> Any:
    """``urlopen`` with :data:`URL_TIMEOUT`, following http(s) redirects only."""
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    return opener.open(url, timeout=URL_TIMEOUT)


def open_remote(path: str, source: str) -> Any:
    """Open an asset (local path or ``/vsicurl/`` URL) with the driver its suffix implies,
    remote access allowed for it alone; sizes checked right after opening."""
    if not path.startswith("/vsicurl/"):
        return open_raster(path, product=source)
    url = path[len("/vsicurl/"):]
    suffix = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    driver = DRIVER_BY_SUFFIX[suffix]
    try:
        with warnings.catch_warnings(), remote_env():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path, driver=driver)
    except RasterioError as err:
        raise RasterReadError(f"cannot open {url[:200]} of {source} as a {driver} raster "
                              f"({short_error(err)}): check the URL and the network"
                              ) from None
    try:
        check_size(dataset, url[:200])
    except Exception:
        dataset.close()
        raise
    return dataset
