"""Checks on a ``.zip`` archive's central directory before anything is inflated.

Entries that would escape the archive's folder (absolute paths, ``..``, backslashes, drive
letters), symbolic links, too many entries and entries that inflate far beyond their
compressed size (zip bombs) are refused.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath

from s2sr.core.errors import UnsafeArchiveError

#: Band entries of a 10980 px tile are about 100-250 MB.
MAX_ENTRY_BYTES = 4 * 1024**3
#: JPEG 2000 hardly compresses further; a zip entry inflating this much is a zip bomb.
MAX_COMPRESSION_RATIO = 100
MAX_ENTRIES = 100_000


def check_zip_entries(names: Sequence[str], source: str) -> None:
    """Refuse archive entries that are absolute or climb out with ``..``."""
    for name in names:
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name):
            raise UnsafeArchiveError(
                f"{source} holds entry {name!r} that escapes the archive's folder: refusing to "
                "read it; re-create the archive from the .SAFE folder"
            )


def check_zip_infos(infos: Sequence[zipfile.ZipInfo], source: str) -> None:
    """Refuse escaping names, symbolic links and zip bombs, from the central directory only
    (nothing is inflated)."""
    if len(infos) > MAX_ENTRIES:
        raise UnsafeArchiveError(f"{source} holds {len(infos)} entries (more than {MAX_ENTRIES}):"
                                 " refusing to read it; re-create the archive from the .SAFE")
    check_zip_entries([i.filename for i in infos], source)
    for info in infos:
        if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                f"{source} holds a symbolic link {info.filename!r}: refusing to read it (it could "
                "point at any file); re-create the archive from the .SAFE folder")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_ENTRY_BYTES or (
                info.file_size > 1024 * 1024 and ratio > MAX_COMPRESSION_RATIO):
            raise UnsafeArchiveError(
                f"{source} entry {info.filename!r} inflates to {info.file_size} bytes from "
                f"{info.compress_size} (a zip bomb?): refusing to read it; re-download the product")
