"""Opening untrusted rasters with GDAL without letting them read other files or the network.

GDAL picks a driver from a file's *content*, not its name: a band entry named
``*_B02_10m.jp2`` that holds GDAL VRT XML is opened as a VRT, and a VRT can read any local
file (``VRTRawRasterBand``) or fetch a URL (a ``/vsicurl/`` source). So:

* files inside an input product (SAFE folder or zip, per-band folder) and single rasters
  named ``.tif``/``.tiff``/``.jp2`` are opened with the driver their name implies only;
* a VRT that a user passes deliberately is checked before GDAL sees it (recursively, through
  the VRTs it references): raw-file bands, Python pixel functions, remote (``/vsicurl/``,
  ``http://``, ...) and non-file sources are refused;
* every open and read runs under :data:`SAFE_GDAL_OPTIONS`, which switch off remote access
  (``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` matches nothing), VRT raw bands (honoured from GDAL
  3.12; older GDAL relies on the check above) and VRT Python.

Sizes are bounded right after opening, before anything is read or allocated.
"""

from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any, Final

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from s2sr.core.errors import DataError, RasterReadError, UnsafeInputError

#: GDAL configuration for reading untrusted files: no network, no raw-file or Python VRT bands.
SAFE_GDAL_OPTIONS: Final[dict[str, str]] = {
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",
    "GDAL_VRT_RAWRASTERBAND_ALLOWED_SOURCE": "SIBLING_OR_CHILD_OF_VRT_PATH",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".s2sr-remote-access-disabled",
    "GDAL_HTTP_NETRC": "NO",
    "CPL_VSIL_CURL_HEADER_FILE_KVP_ENABLED": "NO",
}

#: Driver by file name suffix for files whose format the name promises.
DRIVER_BY_SUFFIX: Final[dict[str, str]] = {
    ".jp2": "JP2OpenJPEG", ".tif": "GTiff", ".tiff": "GTiff",
}

#: No Sentinel-2 scene (a 10980 px tile, or a mosaic of many) comes near these.
MAX_SIDE: Final[int] = 100_000
MAX_SAMPLES: Final[int] = 40_000_000_000  # width x height x bands
MAX_BANDS: Final[int] = 256

_MAX_VRT_BYTES = 16 * 1024 * 1024
_MAX_VRT_DEPTH = 4
_REMOTE_RE = re.compile(r"^(?:/vsi(?!zip/|tar/|gzip/|mem/)[a-z0-9_]+/|[a-z][a-z0-9+.-]*://)",
                        re.IGNORECASE)


def safe_env() -> Any:
    """A :class:`rasterio.Env` with :data:`SAFE_GDAL_OPTIONS` (enter it around opens and reads;
    it applies to the current thread)."""
    return rasterio.Env(**SAFE_GDAL_OPTIONS)


def sniff(path: str) -> str:
    """A short description of what a local file's first bytes look like ('' if unknown)."""
    try:
        if path.startswith("/vsizip/") and ".zip/" in path:
            archive, member = path[len("/vsizip/"):].split(".zip/", 1)
            with zipfile.ZipFile(archive + ".zip") as zf, zf.open(member) as f:
                head = f.read(512)
        elif path.startswith("/vsi"):
            return ""
        else:
            with open(path, "rb") as f:
                head = f.read(512)
    except (OSError, KeyError, zipfile.BadZipFile, NotImplementedError, EOFError):
        return ""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "GDAL VRT XML" if b"VRTDataset" in head else "XML/text"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"jP  " or head[:4] == b"\xffO\xffQ":
        return "JPEG 2000"
    if not head:
        return "an empty file"
    return ""


def check_vrt(path: str, depth: int = 0) -> None:
    """Refuse a VRT (and the VRTs it references) that reads raw files, runs Python or reaches
    beyond local files.

    Raises:
        UnsafeInputError: with the offending element and the file that holds it.
    """
    if depth > _MAX_VRT_DEPTH:
        raise UnsafeInputError(f"{path}: VRTs nested more than {_MAX_VRT_DEPTH} deep: refusing "
                               "to read it; flatten it with gdal_translate")
    try:
        size = os.path.getsize(path)
        if size > _MAX_VRT_BYTES:
            raise UnsafeInputError(f"{path} is a {size}-byte VRT (more than {_MAX_VRT_BYTES}): "
                                   "refusing to parse it; flatten it with gdal_translate")
        text = Path(path).read_bytes()
    except OSError as err:
        raise RasterReadError(f"cannot read {path} ({err.strerror}): check the path") from None
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise UnsafeInputError(f"{path} declares a DOCTYPE/ENTITY: refusing to read it "
                               "(VRTs never need one); re-create the VRT with gdalbuildvrt")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise RasterReadError(f"{path} is not valid VRT XML ({err}): re-create it with "
                              "gdalbuildvrt") from None
    base = Path(path).parent
    for el in root.iter():
        sub = el.attrib.get("subClass", el.attrib.get("subclass", ""))
        if sub == "VRTRawRasterBand" or el.tag == "PixelFunctionCode" or (
                el.tag == "PixelFunctionLanguage" and (el.text or "").strip().lower() == "python"):
            what = "a raw-file band (VRTRawRasterBand)" if sub else "Python pixel code"
            raise UnsafeInputError(
                f"{path} holds {what}: refusing to read it (it can read any file); use a VRT of "
                "plain sources (gdalbuildvrt) or convert the data to GeoTIFF")
        if el.tag not in ("SourceFilename", "SourceDataset"):
            continue
        name = (el.text or "").strip()
        if _REMOTE_RE.match(name) or ":" in name.split("/", 1)[0] or name.startswith("<"):
            raise UnsafeInputError(
                f"{path} references {name[:120]!r}: s2sr reads local files only; download the "
                "data and point the VRT at the local copy")
        relative = el.attrib.get("relativeToVRT", el.attrib.get("relativetoVRT", "0")) == "1"
        target = base / name if relative else Path(name)
        if sniff(str(target)) == "GDAL VRT XML" or target.suffix.lower() == ".vrt":
            check_vrt(str(target), depth + 1)


def open_raster(path: str, *, driver: str | None = None, product: str | None = None) -> Any:
    """Open ``path`` for reading with the driver its name implies, safely.

    Args:
        path: a local file or a ``/vsizip/`` member.
        driver: the only GDAL driver allowed; ``None`` picks it from the suffix
            (:data:`DRIVER_BY_SUFFIX`), or, for other suffixes, lets GDAL choose after a VRT
            check.
        product: the product (SAFE, zip, folder) the file belongs to, for messages; files of a
            product always need a known suffix.

    Raises:
        UnsafeInputError: the content is not what the name says, or a VRT is unsafe.
        RasterReadError: the file cannot be opened. DataError: absurd size or band count.
    """
    suffix = os.path.splitext(path)[1].lower()
    driver = driver or DRIVER_BY_SUFFIX.get(suffix)
    where = f" in {product}" if product else ""
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept as surrogate escapes
            raise RasterReadError(
                f"the file name {path}{where} is not valid UTF-8, which GDAL needs: rename "
                "it (e.g. convmv -f latin1 -t utf8 --notest FILE)") from None
    if driver is None and product is not None:
        raise UnsafeInputError(f"{path}{where} is not a .jp2/.tif file: refusing to read it")
    content = sniff(path)
    if driver is None and (content == "GDAL VRT XML" or suffix == ".vrt"):
        check_vrt(path)
    try:
        with warnings.catch_warnings(), safe_env():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path, driver=driver) if driver else rasterio.open(path)
    except RasterioError as err:
        msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        if driver is not None and content and content not in ("TIFF", "JPEG 2000"):
            raise UnsafeInputError(
                f"{path}{where} holds {content}, not the {driver} raster its name says: refusing "
                "to read it (a disguised VRT can read other files or the network); re-download "
                "or re-export it from a trusted source") from None
        kind = f"a {driver} raster" if driver else "a raster"
        raise RasterReadError(
            f"cannot open {path}{where} as {kind} ({msg}): check that it is a complete, not "
            "truncated GeoTIFF/JP2 file; re-download or re-export it") from None
    try:
        check_size(dataset, path)
    except Exception:
        dataset.close()
        raise
    return dataset


def check_size(dataset: Any, path: str) -> None:
    """Refuse absurd sizes and band counts right after opening, before anything is read."""
    w, h, n = int(dataset.width), int(dataset.height), int(dataset.count)
    if n == 0:
        raise DataError(f"{path} has no raster bands: supply a raster with the Sentinel-2 bands")
    if n > MAX_BANDS:
        raise DataError(f"{path} claims {n} bands (s2sr reads at most {MAX_BANDS}): the file is "
                        "corrupt or not a Sentinel-2 scene; extract the bands you need with "
                        "gdal_translate -b")
    if w > MAX_SIDE or h > MAX_SIDE or w * h * n > MAX_SAMPLES:
        raise DataError(
            f"{path} claims {w} x {h} pixels x {n} bands, beyond what any Sentinel-2 scene has "
            f"(at most {MAX_SIDE} px a side and {MAX_SAMPLES:.0e} samples): the file is corrupt, "
            "or crop it into tiles first (gdal_translate -srcwin)")
