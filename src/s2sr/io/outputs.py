"""One output policy for every command that writes: what may be written where.

Every command that writes (predict, evaluate, train, demo, pairs, export...) checks its
outputs with these before any work: an existing output is refused without ``overwrite``; a
file where a folder is wanted (and the reverse), a missing parent folder, a name that is not
UTF-8, or an output that is one of the inputs are refused with or without it.

* :func:`check_output_file` / :func:`check_output_dir`: the checks of one output;
* :func:`check_not_input`, :func:`check_utf8_name`, :func:`check_creatable`: three of them
  on their own (the last: a missing output folder that could not be made).

How the files are then written (temporaries, atomic renames, locks, clean-up) is
:mod:`s2sr.core.files`; signals are :mod:`s2sr.core.signals`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from s2sr.core.errors import OutputExistsError, UsageError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_not_input(path: Path, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output that is one of ``inputs`` or lies inside an input folder.

    Raises:
        UsageError: naming the input.
    """
    for source in inputs:
        if source is None:
            continue
        src = Path(source)
        if _same_file(path, src):
            raise UsageError(
                f"output {path} is the input {src}: writing it would destroy the input; "
                "choose another output name"
            )
        # an output written inside an input folder (per-band folder, SAFE product)
        with contextlib.suppress(OSError):
            if src.is_dir() and path.resolve().is_relative_to(src.resolve()):
                raise UsageError(
                    f"output {path} lies inside the input folder {src}: choose an output "
                    "outside it"
                )


def check_utf8_name(path: Path) -> Path:
    """``path``, refused when its name holds bytes that are not UTF-8 (GDAL and the JSON
    records need UTF-8 names)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"output name {path} is not valid UTF-8: choose a UTF-8 name") from None
    return path


def check_creatable(folder: str | os.PathLike[str]) -> Path:
    """Refuse a missing output folder that could not be made: the nearest existing folder
    above it must be a writable folder (not a file, nor a broken link).

    Returns:
        ``folder`` as a :class:`Path`.
    """
    f = Path(folder)
    above = f
    while not (above.exists() or above.is_symlink()) and above != above.parent:
        above = above.parent
    if above.is_symlink() and not above.exists():
        raise UsageError(f"output folder {f} cannot be made: {above} is a broken link; "
                         "choose another output path")
    if above.exists() and not above.is_dir():
        raise UsageError(f"output folder {f} cannot be made: {above} is a file, not a "
                         "folder; choose another output path")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {f} cannot be made: {above} is not writable; "
                         "choose another output path")
    return f


def check_output_file(
    path: str | os.PathLike[str], overwrite: bool,
    inputs: Iterable[str | os.PathLike[str] | None] = (), *, create_parent: bool = False,
) -> Path:
    """Refuse an output *file* that cannot or may not be written.

    Args:
        path: the file to write.
        overwrite: allow replacing an existing file.
        inputs: the command's inputs; the output may be none of them (or inside one).
        create_parent: a missing parent folder is made when the file is written
            (:func:`s2sr.core.files.make_parents`; checked here that it can be);
            otherwise it is refused.

    Returns:
        ``path`` as a :class:`Path`.
    """
    p = check_utf8_name(Path(path))
    if p.is_dir():
        raise UsageError(f"output {p} is a folder: give a file name such as out.tif")
    check_not_input(p, inputs)
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(f"output {p} exists: pass --overwrite to replace it")
    if p.exists() and not p.is_file():
        raise UsageError(f"output {p} is not a regular file (a device, a pipe, a socket): "
                         "choose another output path")
    parent = p.parent
    if not parent.exists() and create_parent:
        check_creatable(parent)
        return p
    if not parent.exists():
        raise UsageError(f"output folder {parent} does not exist: create it first")
    if not parent.is_dir():
        raise UsageError(f"output folder {parent} is a file, not a folder: choose another "
                         "output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {parent} is not writable: choose another output path")
    return p


def check_output_dir(
    path: str | os.PathLike[str], overwrite: bool,
    inputs: Iterable[str | os.PathLike[str] | None] = (), *, allow_existing_empty: bool = True,
) -> Path:
    """Refuse an output *folder* (a report, a run) that cannot or may not be written.

    A non-empty existing folder needs ``overwrite``; an existing file of that name is
    refused either way. The parent folder is created by the caller when the work begins.

    Returns:
        ``path`` as a :class:`Path`.
    """
    p = check_utf8_name(Path(path))
    if p.exists() and not p.is_dir():
        raise UsageError(f"output {p} is a file, not a folder: give a folder name, or "
                         "remove the file")
    check_not_input(p, inputs)
    if p.is_dir() and not overwrite and (not allow_existing_empty or any(p.iterdir())):
        raise OutputExistsError(f"output folder {p} exists and is not empty: pass --overwrite "
                                "to replace what it holds, or choose a new folder")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"output folder {parent} is a file, not a folder: choose another "
                         "output path")
    return p
