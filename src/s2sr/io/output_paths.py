"""Output folders made when needed, and the permissions of the files s2sr writes.

* :func:`check_creatable` / :func:`make_parents` / :func:`remove_made`: an output whose
  folder is missing gets it (``s2sr export -o new/model.onnx``, as ``predict -o new/``),
  made only when the file is written and taken away again if that fails;
* :func:`normal_permissions`: a written file gets the permissions any new file gets here
  (0o666 less the umask), whatever the library that wrote it chose.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from s2sr.core.errors import UsageError

_UMASK_LOCK = threading.Lock()


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


def make_parents(path: str | os.PathLike[str]) -> list[Path]:
    """Make the missing folders above the output file ``path``.

    Returns:
        The folders made, outermost first: :func:`remove_made` takes them away again if
        the write fails, so that a failed command leaves nothing.
    """
    missing: list[Path] = []
    folder = Path(path).parent
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for f in reversed(missing):
            f.mkdir()
            made.append(f)
    except BaseException:
        remove_made(made)
        raise
    return made


def remove_made(folders: Iterable[Path]) -> None:
    """Remove folders :func:`make_parents` made, innermost first, if they are empty."""
    for f in reversed(list(folders)):
        with contextlib.suppress(OSError):
            f.rmdir()


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # read by setting it: the stricter 0o077 for that instant
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def normal_permissions(path: str | os.PathLike[str]) -> None:
    """Give a file s2sr wrote the permissions of any new file here (0o666 less the umask).

    Some writers (safetensors) create their files 0o600, readable by their owner alone; a
    weights file, like every other output, is meant to be shared as the umask allows.
    """
    os.chmod(path, 0o666 & ~_umask())
