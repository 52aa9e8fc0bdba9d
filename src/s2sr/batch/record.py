"""Completion records: what makes a re-run skip an output.

Beside every output ``OUT.tif`` a run of many scenes writes ``OUT.tif.s2sr.json`` *after*
the output is in place: the model's SHA-256, the options that shape the output, what the
input was (path, size, modification time; for a STAC Item or a VRT also each raster file
behind it, and for remote assets their ETag/Last-Modified/size, or that they cannot be
verified) and the output's own size, modification time and SHA-256. A later run skips
the output only when a record exists, says the same model, options and input, and the
output still has that checksum; an output without a record (the run stopped between the
two writes) or with a stale one is made again. Records are written atomically (temporary
name, then rename), like the outputs; a file at a record's name that is no record is
never replaced without ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from s2sr.core.errors import S2SRError
from s2sr.core.files import write_atomic
from s2sr.core.version import __version__
from s2sr.io.gdal_safety import open_raster
from s2sr.io.remote import is_url, open_url
from s2sr.io.stac import item_band_files
from s2sr.models.weights import file_sha256

RECORD_SUFFIX: Final[str] = ".s2sr.json"
RECORD_FORMAT: Final[str] = "s2sr-completion-record"
RECORD_VERSION: Final[int] = 1
#: Records larger than this are not s2sr's (a record is a few hundred bytes).
MAX_RECORD_BYTES: Final[int] = 1 << 20
#: Files looked at (at most) to fingerprint an input folder.
MAX_FINGERPRINT_FILES: Final[int] = 10_000


def record_path(output: str | os.PathLike[str]) -> Path:
    """``OUT.tif`` -> ``OUT.tif.s2sr.json``."""
    p = Path(output)
    return p.with_name(p.name + RECORD_SUFFIX)


def input_fingerprint(source: str | os.PathLike[str]) -> dict[str, Any]:
    """What an input was: its absolute path, and size and newest modification time (of the
    files in it, for a folder), so that a changed input makes its output stale. A STAC Item
    (``.json``) or a VRT names the rasters it reads: those are fingerprinted too
    (:func:`file_fingerprint`) under ``rasters``."""
    p = Path(source).resolve()
    if p.is_file():
        st = p.stat()
        found: dict[str, Any] = {"path": str(p), "size": st.st_size,
                                 "mtime_ns": st.st_mtime_ns}
        behind = _files_behind(p)
        if behind is not None:
            found["rasters"] = [file_fingerprint(f) for f in behind]
        return found
    size = count = newest = 0
    for root, _dirs, files in os.walk(p):
        for name in files:
            try:
                st = (Path(root) / name).stat()
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime_ns)
            count += 1
            if count >= MAX_FINGERPRINT_FILES:
                break
        if count >= MAX_FINGERPRINT_FILES:
            break
    return {"path": str(p), "size": size, "files": count, "mtime_ns": newest}


def file_fingerprint(name: str) -> dict[str, Any]:
    """A raster file's fingerprint: size and modification time of a local file; ETag,
    Last-Modified and size of an http(s) URL (a HEAD request), ``verifiable: False`` when the
    server gives none of them."""
    if is_url(name):
        return _url_fingerprint(name)
    try:
        st = os.stat(name)
    except OSError:
        return {"path": name, "missing": True}
    return {"path": str(Path(name).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _url_fingerprint(url: str) -> dict[str, Any]:
    found: dict[str, Any] = {"url": url}
    try:
        request = urllib.request.Request(url, method="HEAD")
        with open_url(request) as response:
            headers = response.headers
            for key in ("ETag", "Last-Modified", "Content-Length"):
                value = headers.get(key)
                if value:
                    found[key.lower()] = str(value)[:200]
    except (OSError, ValueError) as err:
        found["unreachable"] = type(err).__name__
        return found
    found["verifiable"] = any(k in found for k in ("etag", "last-modified"))
    return found


def _files_behind(path: Path) -> list[str] | None:
    """The raster files a STAC Item or VRT reads (``None`` for other inputs)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return item_band_files(path)
        if suffix == ".vrt":
            with open_raster(str(path)) as dataset:
                return sorted(str(f) for f in dataset.files if Path(f) != path)
    except (S2SRError, OSError):
        return []  # opening the input reports why
    return None


def unverifiable(request: dict[str, Any]) -> bool:
    """Whether a request's input has remote rasters whose change cannot be detected."""
    rasters = request.get("input", {}).get("rasters") or []
    return any("url" in r and not r.get("verifiable") for r in rasters)


def make_request(source: str | os.PathLike[str], model_sha256: str,
                 options: dict[str, Any]) -> dict[str, Any]:
    """What an output must have been made from: the part of a record a re-run compares."""
    return {"input": input_fingerprint(source), "model_sha256": model_sha256,
            "options": json.loads(json.dumps(options, default=str))}


def write_record(output: str | os.PathLike[str], request: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the completion record of a finished ``output`` (atomically, last).

    Returns:
        The record.
    """
    out = Path(output)
    st = out.stat()
    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION, "s2sr_version": __version__,
        **request,
        "output": {"name": out.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                   "sha256": file_sha256(out)},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    path = record_path(out)
    write_atomic(path, json.dumps(record, indent=1))
    return record


def read_record(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record beside ``output``, or ``None`` when there is none or it is unreadable."""
    path = record_path(output)
    try:
        if not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    return data


def check_record(output: str | os.PathLike[str], request: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``output`` is complete for ``request``, and if not, why.

    Returns:
        ``(True, "complete")`` or ``(False, reason)``.
    """
    out = Path(output)
    if not out.is_file():
        return False, "no output"
    record = read_record(out)
    if record is None:
        return False, "no completion record"
    for key in ("model_sha256", "options", "input"):
        if record.get(key) != request.get(key):
            return False, f"stale record ({key.replace('_', ' ')} changed)"
    saved = record.get("output")
    if not isinstance(saved, dict):
        return False, "damaged record"
    st = out.stat()
    if saved.get("size") != st.st_size:
        return False, "output size differs from its record"
    if saved.get("sha256") != file_sha256(out):
        return False, "output checksum differs from its record"
    return True, "complete"
